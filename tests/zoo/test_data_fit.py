"""`kerasmm.zoo.get(name, data=train_ds)`: the model takes its classes, vocabulary and length from the data."""

import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.zoo import data_fit

WORDS = ["harbour", "lantern", "violin", "glacier", "meadow", "compass", "orchard", "quarry", "tundra", "walrus"]


def labelled(num_classes, class_names=None, texts=None, batch_size=4, image_size=(32, 32)):
    """A reader-like batched dataset: 32×32 images, a caption each, labels 0 .. num_classes - 1."""
    n = 2 * num_classes
    texts = texts or [f"a {WORDS[i % len(WORDS)]} picture" for i in range(n)]
    features = {"image": np.zeros((n, *image_size, 3), "uint8"), "text": texts[:n]}
    dataset = tf.data.Dataset.from_tensor_slices((features, np.arange(n, dtype="int32") % num_classes))
    dataset = dataset.batch(batch_size)
    if class_names is not None:
        dataset.class_names = class_names
    return dataset


def test_a_classifier_takes_the_data_classes_vocabulary_and_length(capsys):
    names = [f"kind_{i}" for i in range(6)]
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(6, names))
    assert model.num_classes == 6 and model.class_names == names
    tokenizer, length = model.preprocessor.tokenizer, model.preprocessor.sequence_length
    tokens = [np.asarray(tokenizer.tokenize(t)).tolist() for t in ("a harbour picture", "a walrus picture")]
    assert tokenizer.token_to_id("[UNK]") not in tokens[0] + tokens[1]
    assert length % 8 == 0 and max(len(t) for t in tokens) + 2 <= length < 64
    out = capsys.readouterr().out
    assert "6 classes from the data (kind_0, kind_1, kind_2, kind_3, kind_4, ... (6 in all))" in out
    assert "WordPiece tokens trained on the data's 12 texts" in out and f"sequence_length={length}:" in out
    logits = model.predict(labelled(6, names), verbose=0)
    assert logits.shape == (12, 6)


def test_unnamed_labels_give_the_class_count_and_given_settings_are_kept(capsys):
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(5), sequence_length=12)
    assert model.num_classes == 5 and model.class_names is None
    assert model.preprocessor.sequence_length == 12
    assert "5 classes from the data's labels (0 to 4, no names)" in capsys.readouterr().out


def test_labels_beyond_the_head_are_refused_before_building():
    with pytest.raises(ValueError, match="The data have labels up to 14 but num_classes=4: .*num_classes=15"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(15), num_classes=4)
    with pytest.raises(ValueError, match="The data have 6 classes \\(a, b, c, d, e, ... \\(6 in all\\)\\) but num_classes=3"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(6, list("abcdef")), num_classes=3)
    with pytest.raises(ValueError, match="The data's classes are a, b but class_names is x, y"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(2, ["a", "b"]), class_names=["x", "y"])
    with pytest.raises(ValueError, match="The data name 2 classes \\(a, b\\) but have labels up to 3"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(4, ["a", "b"]))
    with pytest.raises(ValueError, match="data must be a tf.data.Dataset"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", data=[1, 2])


def test_fit_refuses_data_with_more_classes_than_the_head():
    # The issue's case: a folder of 15 class subfolders fed to a model built for the shapes' 4.
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    with pytest.raises(ValueError, match="The training data have 15 classes .* this model's head has 4: "
                                         "build the model for the data, kerasmm.zoo.get\\(name, data=train_ds\\)"):
        model.fit(labelled(15, [f"c{i}" for i in range(15)]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="The validation data have 6 classes"):
        model.fit(labelled(4, list("abcd")), validation_data=labelled(6, list("abcdef")), epochs=1, verbose=0)


def test_a_vocabulary_that_leaves_most_words_unknown_is_warned_about():
    with pytest.warns(UserWarning, match="The vocabulary given leaves [0-9]+% of the data's tokens unknown"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(4), vocabulary=kerasmm.data.shapes_vocabulary())


def test_a_captioner_fits_its_vocabulary_and_positions_to_the_captions(capsys):
    # Each word ten times: frequent enough for keras-hub's WordPiece learner to keep it whole.
    captions = 10 * [f"a {w} beside the {WORDS[-1 - i]} under a grey sky at dusk" for i, w in enumerate(WORDS)]
    features = {"image": np.zeros((len(captions), 32, 32, 3), "uint8")}
    train = tf.data.Dataset.from_tensor_slices((features, captions)).batch(8)
    model = kerasmm.zoo.get("tiny_captioner", data=train)
    assert {"glacier", "dusk"} <= set(model.preprocessor.tokenizer.get_vocabulary())
    assert model.backbone.sequence_length == 16  # 11 words + start and end = 13, rounded up to 16
    assert "sequence_length=16: 95% of the texts fit" in capsys.readouterr().out


def test_a_captioner_spells_words_it_saw_fewer_than_four_times_in_pieces():
    captions = ["a walrus on the ice"] * 4 + ["a heron on the ice"] * 3
    features = {"image": np.zeros((len(captions), 32, 32, 3), "uint8")}
    train = tf.data.Dataset.from_tensor_slices((features, captions)).batch(4)
    fitted, _ = data_fit.fit_settings(kerasmm.zoo.entry("tiny_captioner"), train, {})
    assert "walrus" in fitted["vocabulary"] and "heron" not in fitted["vocabulary"]
    assert "heron" in data_fit.data_vocabulary(captions)  # a model that only reads the texts keeps it whole


def test_shapes_data_keep_the_shapes_settings():
    train = kerasmm.data.shapes(num_examples=16, batch_size=8)
    assert train.class_names == list(kerasmm.data.SHAPES)
    fitted, notes = data_fit.fit_settings(kerasmm.zoo.entry("tiny_weighted_sum_classifier"), train, {})
    assert "vocabulary" not in fitted  # the shapes vocabulary covers the shapes captions
    assert fitted["class_names"] == list(kerasmm.data.SHAPES) and fitted["num_classes"] == 4


def test_a_cnn_takes_the_data_image_size_up_to_the_largest_it_trains_on(capsys):
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(2, image_size=(24, 24)))
    assert model.backbone.image_size == (24, 24)
    assert "image_size=24x24: the data's 24x24 images" in capsys.readouterr().out
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(2, image_size=(192, 128)))
    assert model.backbone.image_size == (data_fit.MAX_IMAGE_SIZE, round(data_fit.MAX_IMAGE_SIZE * 2 / 3))
    assert f"at most {data_fit.MAX_IMAGE_SIZE} pixels a side" in capsys.readouterr().out
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", data=labelled(2, image_size=(24, 24)), image_size=16)
    assert model.backbone.image_size == (16, 16)
