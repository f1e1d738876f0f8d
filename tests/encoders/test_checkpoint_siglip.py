"""transformers SigLIP checkpoints converted by `kerasmm.encoders.checkpoints.hf_siglip`, checked against the
reference outputs transformers gave for the tiny fixture (tests/fixtures/clip_references/README.md). No torch."""

import json
import os
import shutil

import keras
import keras_hub
import numpy as np
import pytest
import safetensors.numpy

from kerasmm.encoders.checkpoints import hf_siglip

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "clip_references", "hf_siglip")


@pytest.fixture(scope="module")
def siglip():
    return hf_siglip.convert("test", FIXTURE)


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return dict(data)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _assert_parity(got, want):
    cosine = np.sum(_normalize(got) * _normalize(want), axis=-1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def _image_embeddings(siglip, expected):
    return _normalize(_np(siglip.backbone.get_vision_embeddings(expected["pixel_values"].transpose(0, 2, 3, 1))))


def _token_ids(siglip, texts):
    preprocessor = keras_hub.models.SigLIPPreprocessor(siglip.tokenizer, sequence_length=16)
    return _np(preprocessor({"prompts": list(texts), "images": np.zeros((len(texts), 1, 1, 3))})["token_ids"])


def _text_embeddings(siglip, expected):
    return _normalize(_np(siglip.backbone.get_text_embeddings(expected["input_ids"])))


def test_convert_returns_keras_hub_models(siglip):
    assert siglip.kind == "siglip"
    assert isinstance(siglip.backbone, keras_hub.models.SigLIPBackbone)
    assert isinstance(siglip.tokenizer, keras_hub.tokenizers.SigLIPTokenizer)
    assert isinstance(siglip.image_converter, keras_hub.layers.ImageConverter)


def test_vision_embeddings_match_transformers(siglip, expected):
    _assert_parity(_image_embeddings(siglip, expected), expected["image_embeds_normalized"])


def test_preprocessor_reproduces_transformers_token_ids(siglip, expected):
    np.testing.assert_array_equal(_token_ids(siglip, expected["texts"]), expected["input_ids"])


def test_bare_tokenizer_does_not_canonicalise(siglip):
    # Why the preprocessor is needed: SiglipTokenizer lower-cases and strips punctuation first.
    assert _np(siglip.tokenizer("Two blue squares!")).tolist() != _np(siglip.tokenizer("two blue squares")).tolist()


def test_text_embeddings_match_transformers(siglip, expected):
    _assert_parity(_text_embeddings(siglip, expected), expected["text_embeds_normalized"])


def test_logit_scale_and_bias(siglip, expected):
    head = siglip.backbone.siglip_head
    np.testing.assert_allclose(np.exp(_np(head.logit_scale)), expected["logit_scale"], rtol=1e-6)
    np.testing.assert_allclose(_np(head.logit_bias), expected["logit_bias"], rtol=1e-6)


def test_zero_shot_logits(siglip, expected):
    head = siglip.backbone.siglip_head
    scale, bias = np.exp(_np(head.logit_scale)), _np(head.logit_bias)
    logits = scale * _image_embeddings(siglip, expected) @ _text_embeddings(siglip, expected).T + bias
    want = expected["logits_per_image"]
    np.testing.assert_array_equal(logits.argmax(axis=1), want.argmax(axis=1))
    np.testing.assert_allclose(logits, want, atol=1e-3, rtol=0)
    images = expected["pixel_values"].transpose(0, 2, 3, 1)
    outputs = siglip.backbone({"images": images, "token_ids": expected["input_ids"]})
    np.testing.assert_allclose(_np(outputs["vision_logits"]), want, atol=1e-3, rtol=0)


def test_image_converter_matches_processor(siglip, expected):
    config = siglip.image_converter.get_config()
    assert tuple(config["image_size"]) == (32, 32)
    assert (config["interpolation"], config["antialias"], config["crop_to_aspect_ratio"]) == ("bicubic", True, False)
    pixels = _np(siglip.image_converter(expected["images"].astype("float32")))
    # transformers' torchvision and PIL backends differ by one uint8 level (0.0078 after mean = std = 0.5).
    for reference in (expected["pixel_values"], expected["pixel_values_pil"]):
        np.testing.assert_allclose(pixels, reference.transpose(0, 2, 3, 1), atol=0.016, rtol=0)


def _copy_checkpoint(tmp_path, config=None, processor=None, tensors=None):
    """A copy of the fixture with edited config / preprocessor config / weights."""
    directory = tmp_path / "hf_siglip"
    shutil.copytree(FIXTURE, directory, ignore=shutil.ignore_patterns("expected.npz"))
    for name, edit in (("config.json", config), ("preprocessor_config.json", processor)):
        if edit is not None:
            data = json.loads((directory / name).read_text())
            edit(data)
            (directory / name).write_text(json.dumps(data))
    if tensors is not None:
        weights = safetensors.numpy.load_file(os.path.join(FIXTURE, "model.safetensors"))
        tensors(weights)
        safetensors.numpy.save_file(weights, str(directory / "model.safetensors"))
    return str(directory)


def test_transformers5_processor_config(tmp_path, siglip):
    path = _copy_checkpoint(tmp_path)
    with open(os.path.join(path, "preprocessor_config.json")) as f:
        settings = json.load(f)
    os.remove(os.path.join(path, "preprocessor_config.json"))
    os.remove(os.path.join(path, "special_tokens_map.json"))
    with open(os.path.join(path, "processor_config.json"), "w") as f:
        json.dump({"image_processor": settings, "processor_class": "SiglipProcessor"}, f)
    converted = hf_siglip.convert("test", path)
    assert converted.image_converter.get_config() == siglip.image_converter.get_config()


def test_dtype(expected):
    converted = hf_siglip.convert("test", FIXTURE, dtype="bfloat16")
    assert converted.backbone.dtype_policy.name == "bfloat16"
    assert converted.backbone.siglip_head.logit_bias.dtype == "bfloat16"
    image = _image_embeddings(converted, expected)
    cosine = np.sum(image * expected["image_embeds_normalized"], axis=-1)
    assert cosine.min() >= 0.99, cosine


def test_load_pretrained_dispatches_here(expected):
    from kerasmm.encoders.checkpoints import load_pretrained

    loaded = load_pretrained("test", FIXTURE)
    assert loaded.kind == "siglip"
    _assert_parity(_text_embeddings(loaded, expected), expected["text_embeds_normalized"])


def test_omitted_config_keys_take_transformers_defaults(tmp_path, expected):
    # transformers writes config.json as a diff against its defaults, so hub configs leave these out.
    def drop_defaults(config):
        for section in ("text_config", "vision_config"):
            for key in ("hidden_act", "layer_norm_eps", "vision_use_head"):
                config[section].pop(key, None)

    converted = hf_siglip.convert("test", _copy_checkpoint(tmp_path, config=drop_defaults))
    _assert_parity(_image_embeddings(converted, expected), expected["image_embeds_normalized"])


def test_missing_tensor(tmp_path):
    path = _copy_checkpoint(tmp_path, tensors=lambda w: w.pop("vision_model.head.probe"))
    with pytest.raises(ValueError, match=r"missing: vision_model\.head\.probe"):
        hf_siglip.convert("test", path)


def test_extra_tensor(tmp_path):
    path = _copy_checkpoint(tmp_path, tensors=lambda w: w.update({"text_model.extra.weight": np.zeros(3, "float32")}))
    with pytest.raises(ValueError, match=r"unexpected: text_model\.extra\.weight"):
        hf_siglip.convert("test", path)


def test_misshaped_tensor(tmp_path):
    name = "text_model.encoder.layers.1.mlp.fc1.weight"
    path = _copy_checkpoint(tmp_path, tensors=lambda w: w.update({name: np.zeros((32, 64), "float32")}))
    with pytest.raises(ValueError, match=r"mis-shaped: text_model\.encoder\.layers\.1\.mlp\.fc1\.weight \(32, 64\)"):
        hf_siglip.convert("test", path)


def _set(section, key, value):
    return lambda config: config[section].__setitem__(key, value)


@pytest.mark.parametrize(
    "config, processor, message",
    [
        (_set("vision_config", "vision_use_head", False), None, "vision_use_head"),
        (_set("text_config", "hidden_act", "quick_gelu"), None, "hidden_act 'quick_gelu' is not supported"),
        (_set("text_config", "projection_size", 16), None, "projection_size 16 differs"),
        (_set("vision_config", "layer_norm_eps", 1e-5), None, "layer_norm_eps"),
        (lambda config: config.pop("text_config"), None, "no 'text_config' section"),
        (None, lambda settings: settings.__setitem__("resample", 0), "resample 0 is not supported"),
        (None, lambda settings: settings.pop("image_std"), "lacks image_std"),
    ],
    ids=["no_vision_head", "activation", "projection_size", "vision_eps", "no_text_config", "resample", "no_std"],
)
def test_unsupported_config(tmp_path, config, processor, message):
    path = _copy_checkpoint(tmp_path, config=config, processor=processor)
    with pytest.raises(ValueError, match=message):
        hf_siglip.convert("test", path)


def test_bilinear_resample(tmp_path):
    path = _copy_checkpoint(tmp_path, processor=lambda settings: settings.__setitem__("resample", 2))
    assert hf_siglip.convert("test", path).image_converter.get_config()["interpolation"] == "bilinear"
