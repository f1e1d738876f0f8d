"""`zoo.get("clip" / "siglip", preset=<checkpoint directory>)` against the reference implementations' outputs.

The checkpoints and outputs are the committed fixtures of
tests/fixtures/clip_references (made by transformers and open_clip; no torch here).
"""

import os

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.encoders.checkpoints import load_pretrained

REFERENCES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "clip_references")
CHECKPOINTS = {"hf_clip": "clip", "open_clip": "clip", "hf_siglip": "siglip"}
END_OF_TEXT = 610  # the tiny CLIP vocabulary's <|endoftext|>, its largest id


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS))
def converted(request):
    path = os.path.join(REFERENCES, request.param)
    model = kerasmm.zoo.get(CHECKPOINTS[request.param], preset=path)
    return request.param, model, dict(np.load(os.path.join(path, "expected.npz")))


def cosines(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_token_ids_are_the_reference_tokenizers(converted):
    name, model, expected = converted
    ids = model.preprocessor.prepare("text", expected["texts"]).numpy()
    want = expected["input_ids"]
    if name != "hf_siglip":
        # The reference pads CLIP with <|endoftext|>; kerasmm pads with 0 (as open_clip's own tokenizer does) so
        # the pooled end position is the one argmax, on any device. Causal attention makes both give equal outputs.
        first_end = np.argmax(want == END_OF_TEXT, axis=1)[:, None]
        want = np.where(np.arange(want.shape[1])[None] > first_end, 0, want)
    np.testing.assert_array_equal(ids, want)


def test_on_the_same_pixels_and_strings_embeddings_match_the_reference(converted):
    _, model, expected = converted
    backbone = model.backbone
    # The backbone normalises [0, 1] pixels itself: undo the reference processor's normalisation.
    pixels = expected["pixel_values"].transpose(0, 2, 3, 1) * np.array(backbone.std) + np.array(backbone.mean)
    images = model.tower("image").predict(pixels.astype("float32"), verbose=0)
    texts = model.encode_text(expected["texts"])
    for ours, theirs in ((images, expected["image_embeds_normalized"]), (texts, expected["text_embeds_normalized"])):
        assert cosines(ours, theirs).min() >= 0.9999
        assert np.abs(ours - theirs).max() <= 1e-4


def test_raw_images_are_resized_cropped_and_normalised_as_the_reference_processor(converted):
    _, model, expected = converted
    pixels = model.preprocessor.prepare("image", expected["images"]).numpy()
    normalised = (pixels - np.array(model.backbone.mean)) / np.array(model.backbone.std)
    # One uint8 level after normalisation: what separates the reference's own PIL and torchvision backends.
    level = 1 / 255 / min(model.backbone.std)
    reference = expected.get("pixel_values_pil", expected["pixel_values"])  # open_clip's processor is PIL's
    assert np.abs(normalised - reference.transpose(0, 2, 3, 1)).max() <= level * 1.01


def test_zero_shot_from_raw_images_and_strings_agrees_with_the_reference(converted):
    _, model, expected = converted
    assert np.exp(float(model.logit_scale_variable.numpy())) == pytest.approx(float(expected["logit_scale"]), 1e-5)
    logits = np.exp(float(model.logit_scale_variable.numpy())) * (
        model.encode_image(expected["images"]) @ model.encode_text(expected["texts"]).T)
    if "logit_bias" in expected:
        assert float(model.logit_bias_variable.numpy()) == pytest.approx(float(expected["logit_bias"]))
    agree = np.mean(np.argmax(logits, axis=1) == np.argmax(expected["logits_per_image"], axis=1))
    assert agree >= 0.99


def test_a_converted_checkpoint_saved_as_a_keras_hub_preset_loads_the_same(tmp_path):
    path = os.path.join(REFERENCES, "hf_clip")
    pretrained = load_pretrained("test", path)
    preset = str(tmp_path / "clip_preset")
    pretrained.backbone.save_to_preset(preset)
    pretrained.tokenizer.save_to_preset(preset)
    pretrained.image_converter.save_to_preset(preset)
    images, texts = np.load(os.path.join(path, "expected.npz"))["images"], ["a red circle", "two blue squares"]
    direct, resaved = kerasmm.zoo.get("clip", preset=path), kerasmm.zoo.get("clip", preset=preset)
    np.testing.assert_allclose(resaved.encode_image(images), direct.encode_image(images), atol=1e-6)
    np.testing.assert_allclose(resaved.encode_text(texts), direct.encode_text(texts), atol=1e-6)
    assert isinstance(resaved.preprocessor.tokenizer, keras_hub.tokenizers.CLIPTokenizer)


def test_the_converted_clip_exports_jpeg_bytes_to_the_embeddings_it_computes(tmp_path):
    model = kerasmm.zoo.get("clip", preset=os.path.join(REFERENCES, "hf_clip"))
    version = kerasmm.export.saved_model(model, str(tmp_path / "clip"))
    images = np.load(os.path.join(REFERENCES, "hf_clip", "expected.npz"))["images"]
    jpegs = [tf.io.encode_jpeg(image).numpy() for image in images]
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
    served = tf.saved_model.load(version).signatures["encode_image"](image_bytes=tf.constant(jpegs))
    np.testing.assert_allclose(served["embedding"].numpy(), model.encode_image(decoded), atol=1e-5)
    report = kerasmm.export.verify(version)  # loads and calls it in a process where kerasmm cannot be imported
    assert report["errors"] == [] and report["blocked_modules_imported"] == []
