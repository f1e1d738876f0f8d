"""A transformers `CLIPModel` directory as a keras-hub CLIP model, without torch.

Reads `config.json` (`"model_type": "clip"`), `model.safetensors`,
`vocab.json` + `merges.txt`, and the image processor settings from
`preprocessor_config.json` (transformers 4) or `processor_config.json`
(transformers 5, nested under `"image_processor"`). Config keys a file
leaves out take transformers' CLIP defaults, as transformers does.
"""

import os

from kerasmm.encoders.checkpoints import Pretrained
from kerasmm.encoders.checkpoints import clip_weights as cw
from kerasmm.encoders.checkpoints.tensors import CheckpointTensors

# transformers' CLIPTextConfig / CLIPVisionConfig defaults, for keys a saved config leaves out.
TEXT_DEFAULTS = {
    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
    "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}  # fmt: skip
VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "num_channels": 3, "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}  # fmt: skip
# transformers activation name -> keras-hub CLIP `intermediate_activation`.
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}
# PIL resample codes that keras' resizing can do.
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def convert(owner, path, dtype=None):
    """The `Pretrained` CLIP model in the transformers directory `path`."""
    config = cw.read_json(owner, os.path.join(path, "config.json"))
    dims = _dims(owner, config)
    tensors = CheckpointTensors(owner, cw.safetensors_path(owner, path, "model.safetensors", ["pytorch_model.bin"]))
    backbone = cw.build_backbone(dims, dtype)
    _set_weights(backbone, tensors, dims)
    tensors.finish()
    return Pretrained("clip", backbone, cw.tokenizer(owner, path), _image_converter(owner, path, dims.image_size))


def _dims(owner, config):
    if config.get("model_type") != "clip":
        raise ValueError(f"{owner}: config.json has model_type {config.get('model_type')!r}, not 'clip'.")
    for key in ("text_config", "vision_config"):
        if not isinstance(config.get(key), dict):
            raise ValueError(f"{owner}: config.json has no {key!r}.")
    text = {**TEXT_DEFAULTS, **config["text_config"]}
    vision = {**VISION_DEFAULTS, **config["vision_config"]}
    if vision["num_channels"] != 3:
        raise ValueError(f"{owner}: vision_config.num_channels is {vision['num_channels']}; keras-hub CLIP takes RGB.")
    for name, sub in (("text_config", text), ("vision_config", vision)):
        if sub["layer_norm_eps"] != cw.LAYER_NORM_EPSILON:
            raise ValueError(
                f"{owner}: {name}.layer_norm_eps is {sub['layer_norm_eps']}; keras-hub's CLIP layers use "
                f"{cw.LAYER_NORM_EPSILON}."
            )
        cw.check_heads(owner, sub["hidden_size"], sub["num_attention_heads"], name)
    dims = cw.ClipDims(
        image_size=int(vision["image_size"]),
        patch_size=int(vision["patch_size"]),
        vision_width=vision["hidden_size"],
        vision_layers=vision["num_hidden_layers"],
        vision_heads=vision["num_attention_heads"],
        vision_mlp=vision["intermediate_size"],
        vision_activation=_activation(owner, vision["hidden_act"], "vision_config"),
        vocabulary_size=text["vocab_size"],
        context_length=text["max_position_embeddings"],
        text_width=text["hidden_size"],
        text_layers=text["num_hidden_layers"],
        text_heads=text["num_attention_heads"],
        text_mlp=text["intermediate_size"],
        text_activation=_activation(owner, text["hidden_act"], "text_config"),
        projection_dim=config.get("projection_dim", 512),
    )
    if dims.image_size % dims.patch_size:
        raise ValueError(f"{owner}: vision_config.image_size {dims.image_size} is not a multiple of patch_size.")
    return dims


def _activation(owner, name, where):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{owner}: {where}.hidden_act {name!r} is not one keras-hub's CLIP layers run ({', '.join(ACTIVATIONS)})."
        )
    return ACTIVATIONS[name]


def _set_weights(backbone, tensors, dims):
    vision, text = backbone.vision_encoder, backbone.text_encoder
    v, t = "vision_model.", "text_model."
    width, positions = dims.vision_width, (dims.image_size // dims.patch_size) ** 2 + 1
    cw.set_vision_embedding(
        vision.embedding,
        tensors.take(v + "embeddings.patch_embedding.weight", (width, 3, dims.patch_size, dims.patch_size)),
        tensors.take(v + "embeddings.class_embedding", (width,)),
        tensors.take(v + "embeddings.position_embedding.weight", (positions, width)),
    )
    cw.set_layer_norm(vision.pre_layer_norm, _norm(tensors, v + "pre_layrnorm", width))
    blocks = [_block(tensors, f"{v}encoder.layers.{i}.", width, dims.vision_mlp) for i in range(dims.vision_layers)]
    cw.set_blocks(vision, blocks, dims.vision_heads)
    # HF applies post_layernorm to the pooled class token; keras-hub normalises every token, then pools.
    cw.set_layer_norm(vision.layer_norm, _norm(tensors, v + "post_layernorm", width))

    width = dims.text_width
    cw.set_text_embedding(
        text.embedding,
        tensors.take(t + "embeddings.token_embedding.weight", (dims.vocabulary_size, width)),
        tensors.take(t + "embeddings.position_embedding.weight", (dims.context_length, width)),
    )
    blocks = [_block(tensors, f"{t}encoder.layers.{i}.", width, dims.text_mlp) for i in range(dims.text_layers)]
    cw.set_blocks(text, blocks, dims.text_heads)
    cw.set_layer_norm(text.layer_norm, _norm(tensors, t + "final_layer_norm", width))

    cw.set_head(
        backbone,
        tensors.take("visual_projection.weight", (dims.projection_dim, dims.vision_width)),
        tensors.take("text_projection.weight", (dims.projection_dim, dims.text_width)),
        tensors.take("logit_scale", ()),
    )
    # Older transformers saved the position ids buffers; keras-hub makes its own.
    tensors.skip(v + "embeddings.position_ids", t + "embeddings.position_ids")


def _norm(tensors, prefix, width):
    return tensors.take(prefix + ".weight", (width,)), tensors.take(prefix + ".bias", (width,))


def _linear(tensors, prefix, out, inp):
    return tensors.take(prefix + ".weight", (out, inp)), tensors.take(prefix + ".bias", (out,))


def _block(tensors, prefix, width, mlp):
    attention = prefix + "self_attn."
    return cw.Block(
        ln_1=_norm(tensors, prefix + "layer_norm1", width),
        q=_linear(tensors, attention + "q_proj", width, width),
        k=_linear(tensors, attention + "k_proj", width, width),
        v=_linear(tensors, attention + "v_proj", width, width),
        out=_linear(tensors, attention + "out_proj", width, width),
        ln_2=_norm(tensors, prefix + "layer_norm2", width),
        fc_1=_linear(tensors, prefix + "mlp.fc1", mlp, width),
        fc_2=_linear(tensors, prefix + "mlp.fc2", width, mlp),
    )


def _image_converter(owner, path, image_size):
    settings = _image_processor(owner, path)
    crop = settings.get("crop_size", image_size)
    if isinstance(crop, dict):
        crop = (crop.get("height"), crop.get("width"))
        if crop[0] != crop[1]:
            raise ValueError(f"{owner}: the image processor crops to {crop}; keras-hub CLIP takes square images.")
        crop = crop[0]
    if crop != image_size:
        raise ValueError(f"{owner}: the image processor crops to {crop}, the model takes {image_size}.")
    resample = settings.get("resample", 3)
    if resample not in RESAMPLE:
        raise ValueError(f"{owner}: image processor resample {resample!r} is not one keras can resize with.")
    normalize = settings.get("do_normalize", True)
    mean = cw.check_channels(owner, settings.get("image_mean", cw.OPENAI_MEAN), "mean") if normalize else (0.0,) * 3
    std = cw.check_channels(owner, settings.get("image_std", cw.OPENAI_STD), "std") if normalize else (1.0,) * 3
    scale = settings.get("rescale_factor", 1 / 255) if settings.get("do_rescale", True) else 1.0
    return cw.image_converter(
        image_size, mean, std, scale=scale, crop=settings.get("do_center_crop", True), interpolation=RESAMPLE[resample]
    )


def _image_processor(owner, path):
    """The image processor settings: transformers 4's flat file or transformers 5's nested one; {} when neither."""
    flat = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(flat):
        return cw.read_json(owner, flat)
    nested = os.path.join(path, "processor_config.json")
    if os.path.isfile(nested):
        settings = cw.read_json(owner, nested)
        return settings.get("image_processor", settings)
    return {}
