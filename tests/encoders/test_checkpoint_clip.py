"""transformers CLIP and open_clip checkpoints converted to keras-hub, against the reference outputs in the fixtures."""

import json
import os
import shutil

import keras
import keras_hub
import numpy as np
import pytest
import safetensors.numpy

from kerasmm.encoders.checkpoints import checkpoint_format, hf_clip, load_pretrained, open_clip

FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "clip_references")
CONVERTERS = {"hf_clip": hf_clip.convert, "open_clip": open_clip.convert}
WEIGHTS = {"hf_clip": "model.safetensors", "open_clip": "open_clip_model.safetensors"}
EOS = 610


def _fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope="module", params=sorted(CONVERTERS))
def case(request):
    """(format, Pretrained, expected outputs), converted once per format."""
    name = request.param
    pretrained = CONVERTERS[name]("test", _fixture(name))
    return name, pretrained, np.load(os.path.join(_fixture(name), "expected.npz"))


def _normalized(x):
    x = keras.ops.convert_to_numpy(x).astype("float32")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _assert_parity(got, want):
    cosine = np.sum(got * want, axis=-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    assert cosine.min() >= 0.9999, cosine
    assert np.abs(got - want).max() <= 1e-4


def _image_embeddings(pretrained, expected):
    images = np.transpose(expected["pixel_values"], (0, 2, 3, 1))  # NCHW -> NHWC
    return _normalized(pretrained.backbone.get_vision_embeddings(images))


def _token_ids(pretrained, expected):
    preprocessor = keras_hub.models.CLIPPreprocessor(pretrained.tokenizer, sequence_length=16)
    out = preprocessor({"images": None, "prompts": [str(text) for text in expected["texts"]]})
    return keras.ops.convert_to_numpy(out["token_ids"])


def test_image_embeddings_match_reference(case):
    _, pretrained, expected = case
    _assert_parity(_image_embeddings(pretrained, expected), expected["image_embeds_normalized"])


def test_token_ids_match_reference(case):
    _, pretrained, expected = case
    ids = _token_ids(pretrained, expected)
    # The reference tokenizer pads with EOS (610), keras-hub's CLIPTokenizer with its pad id 0; the causal
    # text encoder pools at the first EOS, so only the ids up to and including it matter.
    for row, want in zip(ids, expected["input_ids"]):
        end = int(np.argmax(want == EOS)) + 1
        np.testing.assert_array_equal(row[:end], want[:end])


def test_text_embeddings_match_reference(case):
    _, pretrained, expected = case
    text = _normalized(pretrained.backbone.get_text_embeddings(_token_ids(pretrained, expected)))
    _assert_parity(text, expected["text_embeds_normalized"])


def test_logit_scale_and_zero_shot(case):
    _, pretrained, expected = case
    log_scale = keras.ops.convert_to_numpy(pretrained.backbone.get_layer("clip_head").logit_scale)
    np.testing.assert_allclose(np.exp(log_scale), expected["logit_scale"], rtol=1e-6)
    image = _image_embeddings(pretrained, expected)
    text = _normalized(pretrained.backbone.get_text_embeddings(_token_ids(pretrained, expected)))
    logits = np.exp(log_scale) * image @ text.T
    np.testing.assert_allclose(logits, expected["logits_per_image"], atol=1e-3)
    np.testing.assert_array_equal(logits.argmax(-1), expected["logits_per_image"].argmax(-1))


def test_activation_and_image_converter(case):
    name, pretrained, _ = case
    # transformers CLIP uses quick GELU; this open_clip model has quick_gelu false, i.e. exact GELU.
    want = {"hf_clip": "quick_gelu", "open_clip": "gelu"}[name]
    assert pretrained.backbone.vision_encoder.intermediate_activation == want
    assert pretrained.backbone.text_encoder.intermediate_activation == want
    config = pretrained.image_converter.get_config()
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    np.testing.assert_allclose(config["scale"], 1 / (255 * std), rtol=1e-6)
    np.testing.assert_allclose(config["offset"], -mean / std, rtol=1e-6)
    assert tuple(config["image_size"]) == (32, 32)
    assert config["crop_to_aspect_ratio"] and config["antialias"] and config["interpolation"] == "bicubic"


def test_checkpoint_format_recognises_fixtures():
    assert checkpoint_format(_fixture("hf_clip")) == "hf_clip"
    assert checkpoint_format(_fixture("open_clip")) == "open_clip"


def test_load_pretrained_and_dtype():
    pretrained = load_pretrained("test", _fixture("hf_clip"), dtype="bfloat16")
    assert pretrained.kind == "clip"
    assert pretrained.backbone.vision_encoder.embedding.patch_embedding.kernel.dtype == "bfloat16"


def test_transformers_5_processor_config(tmp_path):
    path = _copy("hf_clip", tmp_path)
    os.rename(os.path.join(path, "preprocessor_config.json"), os.path.join(path, "processor_config.json"))
    _edit_json(
        os.path.join(path, "processor_config.json"),
        lambda settings: {"image_processor": {**settings, "resample": 2}, "processor_class": "CLIPProcessor"},
    )
    config = hf_clip.convert("test", path).image_converter.get_config()
    assert config["interpolation"] == "bilinear"  # read from the nested settings
    np.testing.assert_allclose(config["offset"], [-1.79226253, -1.75209713, -1.48021977], rtol=1e-6)


# --- checkpoints that do not match their config ---


def _edit_json(path, edit):
    """Rewrite the JSON file `path` as `edit(its contents)`."""
    with open(path, encoding="utf-8") as f:
        value = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(edit(value), f)


def _copy(name, tmp_path, edit=None):
    """A copy of fixture `name` in tmp_path, its weights changed by `edit(dict)` if given."""
    path = str(tmp_path / name)
    shutil.copytree(_fixture(name), path)
    if edit is not None:
        weights = os.path.join(path, WEIGHTS[name])
        tensors = safetensors.numpy.load_file(weights)
        edit(tensors)
        safetensors.numpy.save_file(tensors, weights)
    return path


@pytest.mark.parametrize(
    "name, tensor",
    [("hf_clip", "vision_model.pre_layrnorm.bias"), ("open_clip", "transformer.resblocks.1.attn.in_proj_bias")],
)
def test_missing_tensor(tmp_path, name, tensor):
    path = _copy(name, tmp_path, lambda t: t.pop(tensor))
    with pytest.raises(ValueError, match=rf"missing: {tensor}"):
        CONVERTERS[name]("test", path)


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_unexpected_tensor(tmp_path, name):
    path = _copy(name, tmp_path, lambda t: t.update({"extra.weight": np.zeros((2,), "float32")}))
    with pytest.raises(ValueError, match=r"unexpected: extra\.weight"):
        CONVERTERS[name]("test", path)


@pytest.mark.parametrize(
    "name, tensor",
    [("hf_clip", "text_model.encoder.layers.1.mlp.fc1.weight"), ("open_clip", "visual.proj")],
)
def test_misshaped_tensor(tmp_path, name, tensor):
    path = _copy(name, tmp_path, lambda t: t.update({tensor: t[tensor][:-1]}))
    with pytest.raises(ValueError, match=rf"mis-shaped: {tensor} "):
        CONVERTERS[name]("test", path)


def test_unsupported_hidden_act(tmp_path):
    path = _copy("hf_clip", tmp_path)

    def unsupported_activation(config):
        config["vision_config"]["hidden_act"] = "gelu_new"
        return config

    _edit_json(os.path.join(path, "config.json"), unsupported_activation)
    with pytest.raises(ValueError, match=r"vision_config\.hidden_act 'gelu_new' is not one keras-hub"):
        hf_clip.convert("test", path)


def test_unsupported_open_clip_option(tmp_path):
    path = _copy("open_clip", tmp_path)

    def layer_scale(config):
        config["model_cfg"]["vision_cfg"]["ls_init_value"] = 1e-5
        return config

    _edit_json(os.path.join(path, "open_clip_config.json"), layer_scale)
    with pytest.raises(ValueError, match=r"vision_cfg\.ls_init_value=1e-05 changes the architecture"):
        open_clip.convert("test", path)


def test_open_clip_bin_only(tmp_path):
    path = _copy("open_clip", tmp_path)
    os.remove(os.path.join(path, "open_clip_model.safetensors"))
    open(os.path.join(path, "open_clip_pytorch_model.bin"), "wb").close()
    with pytest.raises(ValueError, match=r"only open_clip_pytorch_model\.bin; kerasmm reads safetensors only") as err:
        open_clip.convert("test", path)
    assert "safetensors.torch.save_file(torch.load(" in str(err.value)
    assert "\n" not in str(err.value)


def test_converted_model_round_trips_through_a_keras_hub_preset(tmp_path):
    # The exact GELU, the filled-in position ids and the tokenizer must survive save_to_preset.
    pretrained = open_clip.convert("test", _fixture("open_clip"))
    expected = np.load(os.path.join(_fixture("open_clip"), "expected.npz"))
    path = str(tmp_path / "preset")
    pretrained.backbone.save_to_preset(path)
    pretrained.tokenizer.save_to_preset(path)
    pretrained.image_converter.save_to_preset(path)
    reloaded = load_pretrained("test", path)
    assert reloaded.kind == "clip"
    _assert_parity(_image_embeddings(reloaded, expected), expected["image_embeds_normalized"])
    text = _normalized(reloaded.backbone.get_text_embeddings(_token_ids(reloaded, expected)))
    _assert_parity(text, expected["text_embeds_normalized"])
    assert reloaded.image_converter.get_config()["offset"] == pretrained.image_converter.get_config()["offset"]
