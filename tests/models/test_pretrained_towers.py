"""Classifier and captioner entries with a pretrained (CLIP) image tower: `clip_classifier`, `clip_captioner`.

On the tiny twins (a small random keras-hub `CLIPVisionEncoder`, never downloaded): the tower is frozen
by default, `unfreeze_last` trains its top blocks, and fit, evaluate, generate, `.keras` round trips,
`image_preset=` and raw-bytes export work as on the from-scratch entries.
"""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm import testing
from kerasmm.data import image_ops
from kerasmm.export import warmup
from kerasmm.models.preset_parts import random_clip_vision

TASKS = {"tiny_clip_classifier": "classification", "tiny_clip_captioner": "captioning"}


def shapes(task, num_examples=2):
    return kerasmm.data.shapes(num_examples=num_examples, batch_size=2, task=task)


def tower_of(model):
    return model.backbone.encoder_layers["image"].backbone


def values(weights):
    return [np.array(w.numpy()) for w in weights]


def fitted(name):
    """A tiny entry fitted one step on 2 examples, with its weights from before the step."""
    keras.utils.set_random_seed(0)
    model = kerasmm.zoo.get(name)
    rest = list(model.trainable_weights)
    before = {"tower": values(tower_of(model).weights), "rest": values(rest)}
    data = shapes(TASKS[name])
    model.fit(data, epochs=1, verbose=0)
    return {"model": model, "data": data, "before": before, "rest": rest, "task": TASKS[name]}


@pytest.fixture(scope="module")
def classifier():
    return fitted("tiny_clip_classifier")


@pytest.fixture(scope="module")
def captioner():
    return fitted("tiny_clip_captioner")


@pytest.fixture(params=["classifier", "captioner"])
def trained(request):
    return request.getfixturevalue(request.param)


def test_the_tower_is_frozen_by_default_and_the_rest_trains(trained):
    model = trained["model"]
    tower = tower_of(model)
    assert {id(w) for w in tower.weights}.isdisjoint(id(w) for w in model.trainable_weights)
    for before, after in zip(trained["before"]["tower"], values(tower.weights)):
        np.testing.assert_array_equal(before, after)
    assert any(not np.allclose(b, a) for b, a in zip(trained["before"]["rest"], values(trained["rest"])))


def test_evaluate_and_a_keras_round_trip(trained):
    model, data = trained["model"], trained["data"]
    scores = model.evaluate(data, verbose=0, return_dict=True)
    captioning = trained["task"] == "captioning"
    metrics = {"loss", "token_accuracy", "bleu_4", "cider_d"} if captioning else {"loss", "accuracy"}
    assert metrics <= set(scores) and all(np.isfinite(v) for v in scores.values())
    x = next(iter(data.map(lambda x, y: model.preprocessor(x, y))))[0]
    loaded = testing.run_model_saving_test(model, x)
    encoder = loaded.backbone.encoder_layers["image"]
    assert not encoder.trainable_backbone and encoder.unfreeze_last is None
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def test_captioner_generates_strings_and_tokens(captioner):
    model = captioner["model"]
    images = next(iter(captioner["data"]))[0]["image"]
    captions = model.generate(images, max_length=6)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    tokens = np.asarray(model.generate(images, max_length=6, return_tokens=True))
    assert tokens.shape[0] == 2 and np.issubdtype(tokens.dtype, np.integer)
    assert model.detokenize(tokens) == captions


def test_captioner_exports_for_raw_jpeg_bytes(captioner, tmp_path):
    model = captioner["model"]
    path = kerasmm.export.saved_model(model, tmp_path / "clip_captioner", scores=False)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image_bytes = warmup.read_requests(path)[1][2]["image_bytes"]
    assert tf.io.is_jpeg(image_bytes[0]).numpy()
    captions = serve(image_bytes=tf.constant(image_bytes))["captions"].numpy()
    pixels = np.stack([image_ops.decode_image(b).numpy() for b in image_bytes])
    assert [c.decode() for c in captions] == model.generate(pixels)


def test_unfreeze_last_trains_exactly_the_last_block_and_what_follows():
    model = kerasmm.zoo.get("tiny_clip_captioner", unfreeze_last=1)
    tower = tower_of(model)
    trainable = {id(w) for w in model.trainable_weights}
    trained = sorted({w.path.split("/")[0] for w in tower.weights if id(w) in trainable})
    assert trained == ["encoder_block_1", "layer_norm"]  # the last block and the final layer norm


@pytest.mark.parametrize("entry, settings, message", [
    ("tiny_clip_captioner", {"unfreeze_last": 3}, "unfreeze_last=3 but CLIPVisionEncoder has 2 blocks"),
    ("tiny_captioner", {"unfreeze_last": 1}, "only for a 'keras_hub_image' image encoder; this entry has the image "
                                             "encoder 'cnn'"),
    ("tiny_clip_classifier", {"encoders": {"image": None}, "image_preset": "x"}, "this entry has no image encoder"),
    ("tiny_clip_classifier", {"image_architecture": {"depth": 2}}, r"image_architecture: unknown keys \['depth'\]"),
])
def test_bad_tower_settings_are_named(entry, settings, message):
    with pytest.raises(ValueError, match=message):
        kerasmm.zoo.get(entry, **settings)


def test_image_preset_reads_a_local_clip_preset(tmp_path):
    tower, converter = random_clip_vision({"image_size": 48})
    text = keras_hub.models.CLIPTextEncoder(vocabulary_size=10, embedding_dim=8, hidden_dim=8, num_layers=1,
                                            num_heads=2, intermediate_dim=16, max_sequence_length=8)
    keras_hub.models.CLIPBackbone(tower, text, projection_dim=8).save_to_preset(str(tmp_path))
    keras_hub.layers.CLIPImageConverter(**converter.get_config()).save_to_preset(str(tmp_path))
    model = kerasmm.zoo.get("tiny_clip_classifier", image_preset=str(tmp_path), unfreeze_last=2)
    encoder = model.backbone.encoder_layers["image"]
    assert encoder.preset == str(tmp_path) and encoder.unfreeze_last == 2
    assert tuple(tower_of(model).image_shape) == (48, 48, 3)  # the preset's vision tower, not image_architecture's
    for saved, loaded in zip(values(tower.weights), values(tower_of(model).weights)):
        np.testing.assert_array_equal(saved, loaded)
    assert model.predict(shapes("classification"), verbose=0).shape == (2, model.num_classes)


def test_the_tiny_tower_normalises_as_clip_does():
    _, converter = random_clip_vision({})
    pixels = np.full((1, 32, 32, 3), 255.0 * np.array([0.48145466, 0.4578275, 0.40821073]), "float32")
    np.testing.assert_allclose(converter(pixels), 0.0, atol=1e-5)  # the mean maps to 0
    assert isinstance(converter, keras_hub.layers.ImageConverter)


def test_image_preset_reads_a_vision_tower_saved_alone_with_its_converter(tmp_path):
    tower, converter = random_clip_vision({})
    tower.save_to_preset(str(tmp_path))
    keras_hub.layers.CLIPImageConverter(**converter.get_config()).save_to_preset(str(tmp_path))
    model = kerasmm.zoo.get("tiny_clip_classifier", image_preset=str(tmp_path))
    encoder = model.backbone.encoder_layers["image"]
    assert encoder.image_converter.get_config()["scale"] == converter.get_config()["scale"]
    for saved, loaded in zip(values(tower.weights), values(tower_of(model).weights)):
        np.testing.assert_array_equal(saved, loaded)
