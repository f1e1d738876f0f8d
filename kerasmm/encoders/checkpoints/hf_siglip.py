"""Convert a transformers SigLIP checkpoint directory (`SiglipModel`) into keras-hub models, without torch.

Reads `config.json` (`"model_type": "siglip"`), `model.safetensors`,
`spiece.model`, and the image-processor settings from either
`preprocessor_config.json` (transformers 4 layout) or the `"image_processor"`
entry of `processor_config.json` (transformers 5 layout). Returns a
`Pretrained("siglip", SigLIPBackbone, SigLIPTokenizer, ImageConverter)`.

Token ids that match transformers' `SiglipTokenizer` come from
`keras_hub.models.SigLIPPreprocessor(tokenizer, sequence_length=...)`, which
canonicalises text (lower case, no punctuation, single spaces) the same way;
the bare tokenizer does not. Pad token ids to exactly
`text_config.max_position_embeddings` (as transformers does for SigLIP):
keras-hub's text encoder adds every position embedding.

Example:
```python
from kerasmm.encoders.checkpoints import hf_siglip
siglip = hf_siglip.convert("example", "/data/checkpoints/siglip-base-patch16-224")
siglip.backbone.get_vision_embeddings(siglip.image_converter(images))
```
"""

import json
import os

import keras_hub
import numpy as np

from kerasmm.encoders.checkpoints import Pretrained
from kerasmm.encoders.checkpoints.tensors import CheckpointTensors

# transformers writes config.json as a diff against these defaults (SiglipTextConfig /
# SiglipVisionConfig), so hub checkpoints such as google/siglip-base-patch16-224 omit them.
_TEXT_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 64,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "projection_size": None,
}
_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "vision_use_head": True,
}
# transformers activation name -> keras-hub `intermediate_activation`.
_ACTIVATIONS = {
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_new": "gelu_approximate",
    "gelu": "gelu",
    "relu": "relu",
}
# PIL resample codes transformers stores -> keras interpolation.
_RESAMPLE = {3: "bicubic", 2: "bilinear"}
_PROCESSOR_KEYS = ("size", "image_mean", "image_std", "rescale_factor", "resample")


def convert(owner, path, dtype=None):
    """The `Pretrained` SigLIP model in the transformers checkpoint directory `path`."""
    config = _json(owner, path, "config.json")
    text, vision = _text_config(owner, config), _vision_config(owner, config)
    if text["projection_size"] != vision["hidden_size"]:
        raise ValueError(
            f"{owner}: text_config.projection_size {text['projection_size']} differs from vision_config.hidden_size "
            f"{vision['hidden_size']}; SigLIP compares the image and text embeddings directly."
        )
    image_converter = _image_converter(owner, path, vision["image_size"])
    tokenizer = _tokenizer(owner, path)
    backbone = _backbone(text, vision, dtype)
    tensors = CheckpointTensors(owner, os.path.join(path, "model.safetensors"))
    _load_vision(tensors, backbone.vision_encoder, vision)
    _load_text(tensors, backbone.text_encoder, text)
    head = backbone.siglip_head
    head.logit_scale.assign(tensors.take("logit_scale", (1,))[0])  # both store the log of the scale
    head.logit_bias.assign(tensors.take("logit_bias", (1,))[0])
    tensors.skip("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids")
    tensors.finish()
    return Pretrained("siglip", backbone, tokenizer, image_converter)


# --- configuration ---------------------------------------------------------------------------------------------


def _json(owner, path, name):
    file = os.path.join(path, name)
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except OSError as err:
        raise ValueError(f"{owner}: cannot read {file!r} ({err.strerror}).") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{owner}: {file!r} is not valid JSON ({err}).") from None


def _section(owner, config, key, defaults):
    section = config.get(key)
    if not isinstance(section, dict):
        raise ValueError(f"{owner}: the SigLIP config.json has no {key!r} section.")
    return {name: section.get(name, default) for name, default in defaults.items()}


def _text_config(owner, config):
    text = _section(owner, config, "text_config", _TEXT_DEFAULTS)
    _check_common(owner, "text_config", text)
    for key in ("vocab_size", "max_position_embeddings"):
        _check_int(owner, "text_config", key, text[key])
    if text["projection_size"] is None:
        text["projection_size"] = text["hidden_size"]
    _check_int(owner, "text_config", "projection_size", text["projection_size"])
    return text


def _vision_config(owner, config):
    vision = _section(owner, config, "vision_config", _VISION_DEFAULTS)
    vision["image_size"] = _square(owner, "image_size", vision["image_size"])
    vision["patch_size"] = _square(owner, "patch_size", vision["patch_size"])
    _check_common(owner, "vision_config", vision)
    for key in ("num_channels", "image_size", "patch_size"):
        _check_int(owner, "vision_config", key, vision[key])
    if vision["vision_use_head"] is not True:
        raise ValueError(
            f"{owner}: vision_config.vision_use_head is {vision['vision_use_head']!r}; keras-hub's "
            "SigLIPVisionEncoder always ends in the attention-pooling head."
        )
    # keras-hub hard-codes epsilon 1e-6 for the vision post_layer_norm.
    if vision["layer_norm_eps"] != 1e-6:
        raise ValueError(
            f"{owner}: vision_config.layer_norm_eps is {vision['layer_norm_eps']}; keras-hub's "
            "SigLIPVisionEncoder fixes its post layer norm epsilon at 1e-6."
        )
    return vision


def _check_common(owner, section, values):
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        _check_int(owner, section, key, values[key])
    if values["hidden_size"] % values["num_attention_heads"]:
        raise ValueError(
            f"{owner}: {section}.hidden_size {values['hidden_size']} is not divisible by "
            f"num_attention_heads {values['num_attention_heads']}."
        )
    if values["hidden_act"] not in _ACTIVATIONS:
        raise ValueError(
            f"{owner}: {section}.hidden_act {values['hidden_act']!r} is not supported; "
            f"kerasmm converts {', '.join(sorted(_ACTIVATIONS))}."
        )
    eps = values["layer_norm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
        raise ValueError(f"{owner}: {section}.layer_norm_eps must be a positive number, not {eps!r}.")


def _check_int(owner, section, key, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{owner}: {section}.{key} must be a positive integer, not {value!r}.")


def _square(owner, key, value):
    """transformers 5 allows `[h, w]`; keras-hub's SigLIP vision encoder is square only."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{owner}: vision_config.{key} {value!r} is not square; keras-hub's SigLIP needs h == w.")
        return value[0]
    return value


# --- tokenizer and image preprocessing --------------------------------------------------------------------------


def _tokenizer(owner, path):
    proto = os.path.join(path, "spiece.model")
    if not os.path.isfile(proto):
        raise ValueError(f"{owner}: {path!r} has no spiece.model, the SigLIP sentencepiece vocabulary.")
    try:
        return keras_hub.tokenizers.SigLIPTokenizer(proto=proto)
    except (ValueError, RuntimeError, OSError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"{owner}: {proto!r} is not a SigLIP sentencepiece model ({reason}).") from None


def _processor_config(owner, path):
    """The image-processor settings: flat `preprocessor_config.json` or nested in `processor_config.json`."""
    if os.path.isfile(os.path.join(path, "preprocessor_config.json")):
        return _json(owner, path, "preprocessor_config.json")
    if os.path.isfile(os.path.join(path, "processor_config.json")):
        settings = _json(owner, path, "processor_config.json").get("image_processor")
        if not isinstance(settings, dict):
            raise ValueError(f"{owner}: processor_config.json in {path!r} has no 'image_processor' settings.")
        return settings
    raise ValueError(f"{owner}: {path!r} has neither preprocessor_config.json nor processor_config.json.")


def _image_converter(owner, path, image_size):
    settings = _processor_config(owner, path)
    missing = [key for key in _PROCESSOR_KEYS if key not in settings]
    if missing:
        raise ValueError(f"{owner}: the image processor config in {path!r} lacks {', '.join(missing)}.")
    if settings.get("do_resize", True) is False:
        raise ValueError(f"{owner}: the image processor has do_resize false; keras-hub's SigLIP takes one image size.")
    size = settings["size"]
    if not (isinstance(size, dict) and {"height", "width"} <= set(size)):
        raise ValueError(f"{owner}: image processor size {size!r} is not {{'height': H, 'width': W}} (SigLIP resizes).")
    if (size["height"], size["width"]) != (image_size, image_size):
        raise ValueError(
            f"{owner}: the image processor resizes to {size['height']}x{size['width']} but the vision encoder "
            f"takes {image_size}x{image_size}."
        )
    if settings["resample"] not in _RESAMPLE:
        raise ValueError(
            f"{owner}: image processor resample {settings['resample']!r} is not supported (2 bilinear, 3 bicubic)."
        )
    rescale = settings["rescale_factor"] if settings.get("do_rescale", True) else 1.0
    mean, std = settings["image_mean"], settings["image_std"]
    if not settings.get("do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{owner}: image_mean {mean!r} and image_std {std!r} must have 3 values each.")
    return keras_hub.layers.ImageConverter(
        image_size=(size["height"], size["width"]),
        scale=[rescale / s for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
        crop_to_aspect_ratio=False,
        interpolation=_RESAMPLE[settings["resample"]],
        antialias=True,
    )


# --- model and weights -----------------------------------------------------------------------------------------


def _backbone(text, vision, dtype):
    vision_encoder = keras_hub.models.SigLIPVisionEncoder(
        patch_size=vision["patch_size"],
        hidden_dim=vision["hidden_size"],
        num_layers=vision["num_hidden_layers"],
        num_heads=vision["num_attention_heads"],
        intermediate_dim=vision["intermediate_size"],
        intermediate_activation=_ACTIVATIONS[vision["hidden_act"]],
        layer_norm_epsilon=vision["layer_norm_eps"],
        image_shape=(vision["image_size"], vision["image_size"], vision["num_channels"]),
        data_format="channels_last",
        dtype=dtype,
    )
    text_encoder = keras_hub.models.SigLIPTextEncoder(
        vocabulary_size=text["vocab_size"],
        embedding_dim=text["hidden_size"],
        hidden_dim=text["hidden_size"],
        num_layers=text["num_hidden_layers"],
        num_heads=text["num_attention_heads"],
        intermediate_dim=text["intermediate_size"],
        intermediate_activation=_ACTIVATIONS[text["hidden_act"]],
        layer_norm_epsilon=text["layer_norm_eps"],
        max_sequence_length=text["max_position_embeddings"],
        projection_dim=text["projection_size"],
        dtype=dtype,
    )
    return keras_hub.models.SigLIPBackbone(vision_encoder, text_encoder, dtype=dtype)


def _load_vision(tensors, encoder, vision):
    width, channels, patch = vision["hidden_size"], vision["num_channels"], vision["patch_size"]
    prefix = "vision_model"
    embedding = encoder.embedding
    conv = tensors.take(f"{prefix}.embeddings.patch_embedding.weight", (width, channels, patch, patch))
    embedding.patch_embedding.kernel.assign(conv.transpose(2, 3, 1, 0))
    embedding.patch_embedding.bias.assign(tensors.take(f"{prefix}.embeddings.patch_embedding.bias", (width,)))
    positions = (vision["image_size"] // patch) ** 2
    embedding.position_embedding.embeddings.assign(
        tensors.take(f"{prefix}.embeddings.position_embedding.weight", (positions, width))
    )
    for i, block in enumerate(encoder.encoder_layers):
        _load_block(tensors, block, f"{prefix}.encoder.layers.{i}", vision)
    _load_layer_norm(tensors, encoder.post_layer_norm, f"{prefix}.post_layernorm", width)

    head, name = encoder.head, f"{prefix}.head"
    head.probe.assign(tensors.take(f"{name}.probe", (1, 1, width)))
    packed = tensors.take(f"{name}.attention.in_proj_weight", (3 * width, width))
    packed_bias = tensors.take(f"{name}.attention.in_proj_bias", (3 * width,))
    qkv = list(zip(np.split(packed, 3), np.split(packed_bias, 3)))  # rows are q, k, v
    out = _linear(tensors, f"{name}.attention.out_proj", width, width)
    _load_attention(head.attention, *qkv, out, vision["num_attention_heads"])
    _load_layer_norm(tensors, head.layer_norm, f"{name}.layernorm", width)
    _load_mlp(tensors, head.mlp, f"{name}.mlp", vision)


def _load_text(tensors, encoder, text):
    width, prefix = text["hidden_size"], "text_model"
    embedding = encoder.embedding
    embedding.token_embedding.embeddings.assign(
        tensors.take(f"{prefix}.embeddings.token_embedding.weight", (text["vocab_size"], width))
    )
    embedding.position_embedding.embeddings.assign(
        tensors.take(f"{prefix}.embeddings.position_embedding.weight", (text["max_position_embeddings"], width))
    )
    for i, block in enumerate(encoder.encoder_layers):
        _load_block(tensors, block, f"{prefix}.encoder.layers.{i}", text)
    _load_layer_norm(tensors, encoder.post_layer_norm, f"{prefix}.final_layer_norm", width)
    _load_dense(encoder.head, _linear(tensors, f"{prefix}.head", width, text["projection_size"]))


def _load_block(tensors, block, name, config):
    width = config["hidden_size"]
    _load_layer_norm(tensors, block.layer_norm1, f"{name}.layer_norm1", width)
    q, k, v, out = (_linear(tensors, f"{name}.self_attn.{p}_proj", width, width) for p in ("q", "k", "v", "out"))
    _load_attention(block.self_attn, q, k, v, out, config["num_attention_heads"])
    _load_layer_norm(tensors, block.layer_norm2, f"{name}.layer_norm2", width)
    _load_mlp(tensors, block.mlp, f"{name}.mlp", config)


def _load_mlp(tensors, mlp, name, config):
    width, inner = config["hidden_size"], config["intermediate_size"]
    _load_dense(mlp.fc1, _linear(tensors, f"{name}.fc1", width, inner))
    _load_dense(mlp.fc2, _linear(tensors, f"{name}.fc2", inner, width))


def _linear(tensors, name, units_in, units_out):
    """A torch `Linear` as (weight `[out, in]`, bias `[out]`)."""
    return tensors.take(f"{name}.weight", (units_out, units_in)), tensors.take(f"{name}.bias", (units_out,))


def _load_dense(dense, linear):
    weight, bias = linear
    dense.kernel.assign(weight.T)
    dense.bias.assign(bias)


def _load_layer_norm(tensors, norm, name, width):
    norm.gamma.assign(tensors.take(f"{name}.weight", (width,)))
    norm.beta.assign(tensors.take(f"{name}.bias", (width,)))


def _load_attention(attention, q, k, v, out, heads):
    """Torch q/k/v/out `Linear`s into a keras `MultiHeadAttention`, whose kernels split the width into heads."""
    width = out[0].shape[0]
    per_head = (heads, width // heads)
    for dense, (weight, bias) in zip((attention.query_dense, attention.key_dense, attention.value_dense), (q, k, v)):
        dense.kernel.assign(weight.T.reshape((width, *per_head)))
        dense.bias.assign(bias.reshape(per_head))
    attention.output_dense.kernel.assign(out[0].T.reshape((*per_head, width)))
    attention.output_dense.bias.assign(out[1])
