import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.models import DualEncoderBackbone


@pytest.fixture(scope="module")
def model():
    return kerasmm.zoo.get("tiny_dual_encoder")


def test_temperature_starts_at_clip_value(model):
    assert float(model.logit_scale_variable.numpy()) == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    assert not model.logit_bias_variable.trainable
    siglip = kerasmm.zoo.get("tiny_siglip_dual_encoder")
    assert siglip.logit_bias_variable.trainable and float(siglip.logit_bias_variable.numpy()) == -10.0


def test_encoders_give_unit_embeddings(model):
    features, _ = kerasmm.data.shapes_arrays(num_examples=3)
    images = model.encode_image(features["image"])
    texts = model.encode_text(list(features["text"]))
    assert images.shape == texts.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)


def test_encoding_shows_keras_progress_bar_only_past_one_batch(model, capsys):
    features, _ = kerasmm.data.shapes_arrays(num_examples=3)
    model.encode_image(features["image"])  # "auto": one batch, no bar
    assert capsys.readouterr().out == ""
    bars = model.encode_text(list(features["text"]), batch_size=2)  # "auto": two batches
    assert "2/2" in capsys.readouterr().out
    np.testing.assert_allclose(bars, model.encode_text(list(features["text"]), verbose=0), atol=1e-6)
    assert capsys.readouterr().out == ""
    for verbose in (2, True, "yes"):
        with pytest.raises(ValueError, match="verbose must be one of \\(0, 1, 'auto'\\)"):
            model.encode_text(["a circle"], verbose=verbose)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode_text(["a circle"], batch_size=0)


def test_zero_shot_classification(model):
    features, _ = kerasmm.data.shapes_arrays(num_examples=4)
    probs = model.classify(features["image"], list(kerasmm.data.SHAPES), templates=("a {}", "a small {}"))
    assert probs.shape == (4, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    classes = model.class_embeddings(["circle", "square"], templates=("a {}",))
    np.testing.assert_allclose(np.linalg.norm(classes, axis=1), 1.0, atol=1e-5)


def test_empty_queries_and_bad_prompts_are_refused(model):
    with pytest.raises(ValueError, match="Nothing to encode: the text batch is empty"):
        model.encode_text([])
    with pytest.raises(ValueError, match="Nothing to encode: the image batch is empty"):
        model.encode_image(np.zeros((0, 32, 32, 3), "uint8"))
    with pytest.raises(ValueError, match="class_names is empty"):
        model.classify(np.zeros((1, 32, 32, 3), "uint8"), [])
    with pytest.raises(ValueError, match="needs a '\\{\\}'"):
        model.class_embeddings(["circle"], templates=("a photo",))


def test_trains_from_a_captioning_reader():
    model = kerasmm.zoo.get("tiny_dual_encoder")
    captions = kerasmm.data.shapes(num_examples=8, batch_size=4, task="captioning")
    history = model.fit(captions, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_diverged_temperature_stops_training_with_a_clear_error():
    model = kerasmm.zoo.get("tiny_dual_encoder")
    model.logit_scale_variable.assign(float("nan"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature \\(logit_scale\\) is not finite"):
        model.fit(kerasmm.data.shapes(num_examples=4, batch_size=4), epochs=1, verbose=0)


def test_bad_configurations():
    image = {"name": "cnn", "output_dim": 8, "filters": [8]}
    text = {"name": "bow", "vocabulary_size": 20, "output_dim": 8}
    with pytest.raises(ValueError, match="needs encoders for 'text' and one of 'image' or 'audio'"):
        DualEncoderBackbone(encoders={"image": image}, embedding_dim=4, image_size=16)
    with pytest.raises(ValueError, match="works on image, but was given for the 'text' tower"):
        DualEncoderBackbone(encoders={"image": image, "text": image}, embedding_dim=4, image_size=16,
                            sequence_length=4)
    with pytest.raises(ValueError, match="embedding_dim must be a positive int"):
        DualEncoderBackbone(encoders={"image": image, "text": text}, embedding_dim=0, image_size=16,
                            sequence_length=4)
    with pytest.raises(ValueError, match="loss must be one of"):
        kerasmm.zoo.get("tiny_dual_encoder", loss="triplet")


def test_evaluate_reports_recall_over_the_whole_set(model):
    from kerasmm.metrics import paired_retrieval_scores

    held_out = kerasmm.data.shapes(num_examples=12, batch_size=4, task="captioning", split="test")
    logs = model.evaluate(held_out, verbose=0, return_dict=True)
    features, captions = kerasmm.data.shapes_arrays(num_examples=12, task="captioning", split="test")
    expected = paired_retrieval_scores(model.encode_image(features["image"]), model.encode_text(list(captions)))
    assert "text_to_image_recall@1" in expected
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, abs=1e-5), key


@pytest.fixture(scope="module")
def matcher():
    return kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1)


def test_matching_loss_trains_the_head_on_hard_negatives_that_skip_duplicate_captions(matcher, monkeypatch):
    from kerasmm.losses import contrastive

    features, captions = kerasmm.data.shapes_arrays(num_examples=4, task="captioning")
    captions = [captions[0], captions[0], *captions[2:]]  # rows 0 and 1: one caption, no negatives of each other
    x = {"image": matcher.preprocessor.prepare("image", features["image"]),
         "text": matcher.preprocessor.prepare("text", np.array(captions))}
    excluded = []
    mine = contrastive.hard_negatives
    monkeypatch.setattr(contrastive, "hard_negatives",
                        lambda a, b, exclude, count: excluded.append(exclude) or mine(a, b, exclude, count))
    head = matcher.backbone.matching_head
    with tf.GradientTape() as tape:
        y_pred = matcher(x, training=True)
        loss = matcher.compute_loss(x, None, y_pred)
    grads = tape.gradient(loss, head.trainable_variables + matcher.tower("image").trainable_variables)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    plain = contrastive.info_nce(y_pred["image_embedding"], y_pred["text_embedding"], matcher.logit_scale_variable)
    assert float(loss) > float(plain) + 0.1  # the matching term
    assert np.asarray(excluded[0]).tolist() == [[True, True, False, False], [True, True, False, False],
                                                [False, False, True, False], [False, False, False, True]]


def test_swap_negatives_add_the_captions_with_two_tokens_swapped(monkeypatch):
    from kerasmm.losses import contrastive

    model = kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1, matching_swaps=2)
    assert type(model).from_config(model.get_config()).matching_swaps == 2
    features, captions = kerasmm.data.shapes_arrays(num_examples=4, task="captioning")
    x = {"image": model.preprocessor.prepare("image", features["image"]),
         "text": model.preprocessor.prepare("text", captions)}
    swaps, negatives = [], []
    swap, loss = contrastive.swap_two_tokens, contrastive.matching_loss
    monkeypatch.setattr(contrastive, "swap_two_tokens", lambda ids, seed: swaps.append(swap(ids, seed)) or swaps[-1])
    monkeypatch.setattr(contrastive, "matching_loss", lambda p, n, v: negatives.append((n, v)) or loss(p, n, v))
    model.compute_loss(x, None, model(x, training=True))
    logits, valid = negatives[0]
    assert len(swaps) == 2 and len(logits) == 2 * 3 + 2  # hard negatives both ways, then the swaps
    for (swapped, flags), given in zip(swaps, valid[-2:]):
        np.testing.assert_array_equal(np.asarray(given), np.asarray(flags))
        np.testing.assert_array_equal(np.asarray(flags), (np.asarray(swapped) != np.asarray(x["text"])).any(axis=1))


def test_evaluate_reports_reranked_recall_and_the_head_round_trips(matcher, tmp_path):
    from kerasmm.metrics import reranked_retrieval_scores

    held_out = kerasmm.data.shapes(num_examples=8, batch_size=4, task="captioning", split="test")
    logs = matcher.evaluate(held_out, verbose=0, return_dict=True)
    features, captions = kerasmm.data.shapes_arrays(num_examples=8, task="captioning", split="test")
    out = matcher({"image": matcher.preprocessor.prepare("image", features["image"]),
                   "text": matcher.preprocessor.prepare("text", captions)})
    t, i = np.repeat(np.arange(8), 8), np.tile(np.arange(8), 8)  # every (text, image) pair
    texts, images = np.asarray(out["text_embedding"]), np.asarray(out["image_embedding"])
    logits = np.asarray(matcher.matching_head(
        np.asarray(out["text_tokens"])[t], np.asarray(out["text_token_mask"])[t],
        np.asarray(out["image_tokens"])[i], np.sum(texts[t] * images[i], axis=-1))).reshape(8, 8)
    expected = reranked_retrieval_scores(texts, images, lambda t, i: logits[t, i], candidates=10)
    for k in (1, 5, 10):
        assert logs[f"reranked_text_to_image_recall@{k}"] == pytest.approx(expected[f"recall@{k}"]), k
    as_list = matcher.evaluate(held_out, verbose=0)
    assert len(as_list) == len(logs) and as_list[0] == pytest.approx(logs["loss"])

    path = str(tmp_path / "matcher.keras")
    matcher.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.matching_layers == 1 and loaded.rerank_candidates == 10
    # The head reads the CNN's 16x16 detail grid before its 8x8 grid (32 px images, 2 stages).
    assert out["image_tokens"].shape[1] == 16 * 16 + 8 * 8
    np.testing.assert_array_equal(loaded.backbone.detail_projection.kernel.numpy(),
                                  matcher.backbone.detail_projection.kernel.numpy())
    head, reloaded = matcher.matching_head, loaded.matching_head
    assert len(head.weights) == len(reloaded.weights) == 34  # 26 in the decoder block, 8 around it
    for weight, again in zip(head.weights, reloaded.weights):
        np.testing.assert_array_equal(weight.numpy(), again.numpy())


def test_matching_mistakes_are_clear_errors(model, matcher):
    images = kerasmm.data.shapes_arrays(num_examples=2)[0]["image"]
    with pytest.raises(ValueError, match="no image–text matching head .* matching_layers > 0"):
        model.match(["a red circle"], images[:1])
    with pytest.raises(ValueError, match="Got 1 texts and 2 images"):
        matcher.match(["a red circle"], images)
    with pytest.raises(ValueError, match="pairs index past the 1 texts or 2 images"):
        matcher.match(["a red circle"], images, pairs=[[0, 2]])
    with pytest.raises(ValueError, match="heads must divide the text tokens' width 16"):
        kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1, matching_heads=3)
    with pytest.raises(ValueError, match="matching_weight"):
        kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1, matching_weight=-1.0)
    with pytest.raises(ValueError, match="matching_swaps"):
        kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1, matching_swaps=-1)
    with pytest.raises(ValueError, match="matching head needs an image tower"):
        kerasmm.zoo.get("tiny_audio_text_dual_encoder", matching_layers=1)
