"""An open_clip checkpoint directory (as on the Hugging Face hub) as a keras-hub CLIP model, without torch.

Reads `open_clip_config.json` (`model_cfg` + `preprocess_cfg`),
`open_clip_model.safetensors` and the tokenizer files `vocab.json` +
`merges.txt`. Only the plain `open_clip.CLIP` ViT + text transformer
architecture converts; options that change it (timm or HF towers, layer
scale, attentional pooling, CoCa, ...) are refused with their name.
Keys a config leaves out take open_clip's defaults, as open_clip does.
"""

import os

from kerasmm.encoders.checkpoints import Pretrained
from kerasmm.encoders.checkpoints import clip_weights as cw
from kerasmm.encoders.checkpoints.tensors import CheckpointTensors

# open_clip's CLIPVisionCfg / CLIPTextCfg defaults for the keys that do not show in tensor shapes.
VISION_DEFAULTS = {"head_width": 64, "mlp_ratio": 4.0}
TEXT_DEFAULTS = {"heads": 8, "mlp_ratio": 4.0, "context_length": 77, "vocab_size": 49408}
# Keys that change nothing here: training-only options or tokenizer names.
IGNORED = {"patch_dropout", "hf_tokenizer_name", "tokenizer_kwargs", "output_tokens", "cast_dtype"}
# Options whose open_clip default is the only value this conversion implements.
ONLY_DEFAULT = {
    "vision_cfg": {
        "ls_init_value": None, "attentional_pool": False, "attn_pooler_queries": None, "attn_pooler_heads": None,
        "no_ln_pre": False, "pos_embed_type": "learnable", "final_ln_after_pool": False, "pool_type": "tok",
        "global_average_pool": False, "input_patchnorm": False, "timm_model_name": None, "act_kwargs": None,
        "norm_kwargs": None,
    },
    "text_cfg": {
        "ls_init_value": None, "hf_model_name": None, "embed_cls": False, "pad_id": 0, "no_causal_mask": False,
        "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False, "proj_type": "linear",
        "act_kwargs": None, "norm_kwargs": None,
    },
    "model_cfg": {
        "custom_text": False, "init_logit_bias": None, "nonscalar_logit_scale": False, "multimodal_cfg": None,
    },
}  # fmt: skip
KNOWN = {
    "vision_cfg": {"image_size", "patch_size", "width", "layers", "head_width", "mlp_ratio"},
    "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"},
    "model_cfg": {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg", "init_logit_scale"},
}
RESIZE_MODES = {"shortest": {"crop": True}, "squash": {"crop": False}, "longest": {"crop": False, "pad": True}}
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def convert(owner, path, dtype=None):
    """The `Pretrained` CLIP model in the open_clip directory `path`."""
    config = cw.read_json(owner, os.path.join(path, "open_clip_config.json"))
    if not isinstance(config.get("model_cfg"), dict):
        raise ValueError(f"{owner}: {path!r}/open_clip_config.json has no 'model_cfg'.")
    dims = _dims(owner, config["model_cfg"])
    weights = cw.safetensors_path(
        owner, path, "open_clip_model.safetensors", ["open_clip_pytorch_model.bin", "open_clip_model.bin"]
    )
    tensors = CheckpointTensors(owner, weights)
    backbone = cw.build_backbone(dims, dtype)
    _set_weights(backbone, tensors, dims)
    tensors.finish()
    converter = _image_converter(owner, config.get("preprocess_cfg") or {}, dims.image_size)
    return Pretrained("clip", backbone, cw.tokenizer(owner, path), converter)


def _dims(owner, model_cfg):
    for key in ("vision_cfg", "text_cfg"):
        if not isinstance(model_cfg.get(key), dict):
            raise ValueError(f"{owner}: open_clip model_cfg has no {key!r}.")
    _check_supported(owner, "model_cfg", model_cfg)
    vision = {**VISION_DEFAULTS, **_check_supported(owner, "vision_cfg", model_cfg["vision_cfg"])}
    text = {**TEXT_DEFAULTS, **_check_supported(owner, "text_cfg", model_cfg["text_cfg"])}
    _require(owner, "model_cfg", model_cfg, "embed_dim")
    _require(owner, "vision_cfg", vision, "image_size", "patch_size", "width", "layers")
    _require(owner, "text_cfg", text, "width", "layers")
    if isinstance(vision["layers"], (list, tuple)):
        raise ValueError(f"{owner}: open_clip vision_cfg.layers is a list (a ResNet tower); keras-hub CLIP is a ViT.")
    image_size = _square(owner, vision["image_size"], "vision_cfg.image_size")
    patch_size = _square(owner, vision["patch_size"], "vision_cfg.patch_size")
    if image_size % patch_size:
        raise ValueError(f"{owner}: open_clip vision_cfg.image_size {image_size} is not a multiple of patch_size.")
    vision_heads = vision["width"] // vision["head_width"]
    cw.check_heads(owner, vision["width"], vision_heads, "vision_cfg")
    cw.check_heads(owner, text["width"], text["heads"], "text_cfg")
    activation = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    return cw.ClipDims(
        image_size=image_size,
        patch_size=patch_size,
        vision_width=vision["width"],
        vision_layers=vision["layers"],
        vision_heads=vision_heads,
        vision_mlp=int(vision["width"] * vision["mlp_ratio"]),  # as open_clip sizes its MLPs
        vision_activation=activation,
        vocabulary_size=text["vocab_size"],
        context_length=text["context_length"],
        text_width=text["width"],
        text_layers=text["layers"],
        text_heads=text["heads"],
        text_mlp=int(text["width"] * text["mlp_ratio"]),
        text_activation=activation,
        projection_dim=model_cfg["embed_dim"],
    )


def _check_supported(owner, where, cfg):
    """`cfg`, after a one-line error for any option this conversion does not implement."""
    for key, value in cfg.items():
        if key in IGNORED or key in KNOWN[where]:
            continue
        if key not in ONLY_DEFAULT[where]:
            raise ValueError(f"{owner}: open_clip {where}.{key} is an option kerasmm does not know how to convert.")
        if value != ONLY_DEFAULT[where][key]:
            raise ValueError(
                f"{owner}: open_clip {where}.{key}={value!r} changes the architecture; keras-hub's CLIPBackbone "
                f"has only {key}={ONLY_DEFAULT[where][key]!r}."
            )
    return cfg


def _require(owner, where, cfg, *keys):
    missing = [key for key in keys if key not in cfg]
    if missing:
        raise ValueError(f"{owner}: open_clip {where} has no {', '.join(missing)}.")


def _square(owner, size, name):
    """An int size from open_clip's int-or-pair values (keras-hub CLIP takes square images and patches)."""
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"{owner}: open_clip {name} {size!r} is not square; keras-hub CLIP needs it.")
        size = size[0]
    return int(size)


def _set_weights(backbone, tensors, dims):
    vision, text = backbone.vision_encoder, backbone.text_encoder
    width, positions = dims.vision_width, (dims.image_size // dims.patch_size) ** 2 + 1
    cw.set_vision_embedding(
        vision.embedding,
        tensors.take("visual.conv1.weight", (width, 3, dims.patch_size, dims.patch_size)),
        tensors.take("visual.class_embedding", (width,)),
        tensors.take("visual.positional_embedding", (positions, width)),
    )
    cw.set_layer_norm(vision.pre_layer_norm, _norm(tensors, "visual.ln_pre", width))
    prefix = "visual.transformer.resblocks."
    blocks = [_block(tensors, f"{prefix}{i}.", width, dims.vision_mlp) for i in range(dims.vision_layers)]
    cw.set_blocks(vision, blocks, dims.vision_heads)
    cw.set_layer_norm(vision.layer_norm, _norm(tensors, "visual.ln_post", width))

    width = dims.text_width
    cw.set_text_embedding(
        text.embedding,
        tensors.take("token_embedding.weight", (dims.vocabulary_size, width)),
        tensors.take("positional_embedding", (dims.context_length, width)),
    )
    blocks = [_block(tensors, f"transformer.resblocks.{i}.", width, dims.text_mlp) for i in range(dims.text_layers)]
    cw.set_blocks(text, blocks, dims.text_heads)
    cw.set_layer_norm(text.layer_norm, _norm(tensors, "ln_final", width))

    # open_clip applies its projections as `x @ P` ([width, embed]); transposed here to torch Linear layout.
    cw.set_head(
        backbone,
        tensors.take("visual.proj", (dims.vision_width, dims.projection_dim)).T,
        tensors.take("text_projection", (dims.text_width, dims.projection_dim)).T,
        tensors.take("logit_scale", ()),
    )
    tensors.skip("attn_mask")  # the causal mask buffer, in checkpoints saved before it became non-persistent


def _norm(tensors, prefix, width):
    return tensors.take(prefix + ".weight", (width,)), tensors.take(prefix + ".bias", (width,))


def _linear(tensors, prefix, out, inp):
    return tensors.take(prefix + ".weight", (out, inp)), tensors.take(prefix + ".bias", (out,))


def _block(tensors, prefix, width, mlp):
    # nn.MultiheadAttention packs the q, k and v projections as rows of one in_proj matrix.
    packed = tensors.take(prefix + "attn.in_proj_weight", (3 * width, width))
    packed_bias = tensors.take(prefix + "attn.in_proj_bias", (3 * width,))
    q, k, v = ((packed[i * width : (i + 1) * width], packed_bias[i * width : (i + 1) * width]) for i in range(3))
    return cw.Block(
        ln_1=_norm(tensors, prefix + "ln_1", width),
        q=q,
        k=k,
        v=v,
        out=_linear(tensors, prefix + "attn.out_proj", width, width),
        ln_2=_norm(tensors, prefix + "ln_2", width),
        fc_1=_linear(tensors, prefix + "mlp.c_fc", mlp, width),
        fc_2=_linear(tensors, prefix + "mlp.c_proj", width, mlp),
    )


def _image_converter(owner, preprocess, image_size):
    size = _square(owner, preprocess.get("size", image_size), "preprocess_cfg.size")
    if size != image_size:
        raise ValueError(f"{owner}: open_clip preprocess_cfg.size {size} is not the model's image_size {image_size}.")
    mode = preprocess.get("resize_mode", "shortest")
    if mode not in RESIZE_MODES:
        modes = ", ".join(RESIZE_MODES)
        raise ValueError(f"{owner}: open_clip preprocess_cfg.resize_mode {mode!r} is not one of {modes}.")
    interpolation = preprocess.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{owner}: open_clip preprocess_cfg.interpolation {interpolation!r} is not one keras offers.")
    mean = cw.check_channels(owner, preprocess.get("mean", cw.OPENAI_MEAN), "mean")
    std = cw.check_channels(owner, preprocess.get("std", cw.OPENAI_STD), "std")
    return cw.image_converter(image_size, mean, std, interpolation=interpolation, **RESIZE_MODES[mode])
