"""What the transformers and open_clip CLIP converters share: the keras-hub model, its weights and preprocessing.

Converters read their checkpoint into a `ClipDims` and per-layer `Block`s
in PyTorch layout (Linear weights `[out, in]`, conv weights `[out, in, h, w]`);
the functions here build the keras-hub model and put those arrays where
keras-hub keeps them.
"""

import collections
import json
import os

import keras_hub
import numpy as np

# keras-hub hard-codes LayerNormalization epsilon 1e-5 in the CLIP blocks and vision norms.
LAYER_NORM_EPSILON = 1e-5

ClipDims = collections.namedtuple(
    "ClipDims",
    [
        "image_size", "patch_size", "vision_width", "vision_layers", "vision_heads", "vision_mlp",
        "vision_activation", "vocabulary_size", "context_length", "text_width", "text_layers",
        "text_heads", "text_mlp", "text_activation", "projection_dim",
    ],
)  # fmt: skip
ClipDims.__doc__ = "The sizes of a CLIP model; activations are keras-hub names (`quick_gelu`, `gelu`, ...)."

Block = collections.namedtuple(
    "Block",
    ["ln_1", "q", "k", "v", "out", "ln_2", "fc_1", "fc_2"],
)
Block.__doc__ = "One transformer block: each field a `(weight, bias)` pair, Linear weights as `[out, in]`."

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def check_heads(owner, width, heads, where):
    """Raise unless `heads` divides `width` (keras-hub's attention needs whole heads)."""
    if heads <= 0 or width % heads:
        raise ValueError(f"{owner}: {where} has width {width} that {heads} attention heads do not divide.")


def build_backbone(dims, dtype=None):
    """A randomly initialised keras-hub `CLIPBackbone` with the sizes in `dims`."""
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=dims.patch_size,
        hidden_dim=dims.vision_width,
        num_layers=dims.vision_layers,
        num_heads=dims.vision_heads,
        intermediate_dim=dims.vision_mlp,
        intermediate_activation=dims.vision_activation,
        image_shape=(dims.image_size, dims.image_size, 3),
        dtype=dtype,
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=dims.vocabulary_size,
        embedding_dim=dims.text_width,
        hidden_dim=dims.text_width,
        num_layers=dims.text_layers,
        num_heads=dims.text_heads,
        intermediate_dim=dims.text_mlp,
        intermediate_activation=dims.text_activation,
        max_sequence_length=dims.context_length,
        dtype=dtype,
    )
    return keras_hub.models.CLIPBackbone(vision, text, projection_dim=dims.projection_dim, dtype=dtype)


def set_vision_embedding(embedding, patch_weight, class_embedding, positions):
    """Patch conv `[out, in, h, w]` (no bias), class token `[width]`, position table `[1 + patches, width]`."""
    embedding.patch_embedding.kernel.assign(np.transpose(patch_weight, (2, 3, 1, 0)))
    embedding.class_embedding.assign(class_embedding)
    embedding.position_embedding.embeddings.assign(positions)
    # keras-hub initialises the position ids to zeros and expects the checkpoint to fill them in.
    count = embedding.position_ids.shape[-1]
    embedding.position_ids.assign(np.arange(count, dtype=embedding.position_ids.dtype).reshape(1, count))


def set_text_embedding(embedding, tokens, positions):
    """Token table `[vocabulary, width]` and position table `[context, width]`."""
    embedding.token_embedding.embeddings.assign(tokens)
    embedding.position_embedding.position_embeddings.assign(positions)


def set_layer_norm(layer, weight_and_bias):
    layer.gamma.assign(weight_and_bias[0])
    layer.beta.assign(weight_and_bias[1])


def set_dense(layer, weight_and_bias):
    """A keras Dense from a torch Linear `[out, in]` (bias None for a Dense without one)."""
    weight, bias = weight_and_bias
    layer.kernel.assign(weight.T)
    if bias is not None:
        layer.bias.assign(bias)


def set_block(layer, block, heads):
    """A keras-hub `CLIPEncoderLayer` from a `Block`."""
    set_layer_norm(layer.layer_norm_1, block.ln_1)
    set_layer_norm(layer.layer_norm_2, block.ln_2)
    attention = layer.attention
    width = block.q[0].shape[1]
    head_dim = width // heads
    for dense, (weight, bias) in (
        (attention.query_dense, block.q),
        (attention.key_dense, block.k),
        (attention.value_dense, block.v),
    ):
        dense.kernel.assign(weight.T.reshape(width, heads, head_dim))
        dense.bias.assign(bias.reshape(heads, head_dim))
    attention.output_dense.kernel.assign(block.out[0].T.reshape(heads, head_dim, width))
    attention.output_dense.bias.assign(block.out[1])
    set_dense(layer.dense_1, block.fc_1)
    set_dense(layer.dense_2, block.fc_2)


def set_blocks(encoder, blocks, heads):
    for layer, block in zip(encoder.encoder_layers, blocks):
        set_block(layer, block, heads)


def set_head(backbone, vision_projection, text_projection, logit_scale):
    """Projections as torch Linear weights `[projection, width]` and the log logit scale."""
    set_dense(backbone.vision_projection, (vision_projection, None))
    set_dense(backbone.text_projection, (text_projection, None))
    backbone.get_layer("clip_head").logit_scale.assign(logit_scale)


def tokenizer(owner, path):
    """A keras-hub `CLIPTokenizer` from `vocab.json` and `merges.txt` in `path`."""
    vocabulary = read_json(owner, os.path.join(path, "vocab.json"))
    merges_path = os.path.join(path, "merges.txt")
    if not os.path.isfile(merges_path):
        raise ValueError(f"{owner}: {path!r} has no merges.txt; a CLIP tokenizer needs vocab.json and merges.txt.")
    with open(merges_path, encoding="utf-8") as f:
        merges = [line.rstrip("\r\n") for line in f if line.strip() and not line.startswith("#version")]
    for token in ("<|startoftext|>", "<|endoftext|>"):
        if token not in vocabulary:
            raise ValueError(f"{owner}: {path!r}/vocab.json has no {token!r} token.")
    # keras-hub's CLIPTextPooler pools at argmax(token_ids), which is the end token only when it has the largest id.
    if vocabulary["<|endoftext|>"] != max(vocabulary.values()):
        raise ValueError(
            f"{owner}: {path!r}/vocab.json: '<|endoftext|>' is not the largest id, which keras-hub's CLIP "
            "text pooling (argmax of the ids) needs."
        )
    return keras_hub.tokenizers.CLIPTokenizer(vocabulary=vocabulary, merges=merges)


def image_converter(size, mean, std, scale=1 / 255, crop=True, pad=False, interpolation="bicubic"):
    """A keras-hub `ImageConverter` taking 0–255 pixels to `(pixel * scale - mean) / std`, resized to `size`."""
    return keras_hub.layers.ImageConverter(
        image_size=(size, size),
        scale=[scale / s for s in std],
        offset=[-m / s for m, s in zip(mean, std)],
        crop_to_aspect_ratio=crop,
        pad_to_aspect_ratio=pad,
        interpolation=interpolation,
        antialias=True,
    )


def safetensors_path(owner, path, name, torch_names):
    """`path`/`name`, or a one-line error saying how to make it when only a torch pickle (`torch_names`) is there."""
    file = os.path.join(path, name)
    if os.path.isfile(file):
        return file
    if os.path.isfile(os.path.join(path, name.replace(".safetensors", ".safetensors.index.json"))):
        raise ValueError(f"{owner}: {path!r} holds a sharded checkpoint; kerasmm reads a single {name} only.")
    for torch_name in torch_names:
        if os.path.isfile(os.path.join(path, torch_name)):
            raise ValueError(
                f"{owner}: {path!r} has only {torch_name}; kerasmm reads safetensors only (no torch). Convert it "
                f"on a machine with torch: safetensors.torch.save_file(torch.load({torch_name!r}, map_location='cpu'), "
                f"{name!r})."
            )
    raise ValueError(f"{owner}: {path!r} has no {name}.")


def check_channels(owner, values, name):
    """`values` as a tuple of three floats (a single number applies to every channel)."""
    if isinstance(values, (int, float)):
        values = [values] * 3
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ValueError(f"{owner}: the image {name} {values!r} is not three per-channel numbers.")
    return tuple(float(v) for v in values)


def read_json(owner, path):
    """The JSON object in `path`; a one-line error when it is absent or not JSON."""
    if not os.path.isfile(path):
        raise ValueError(f"{owner}: {os.path.dirname(path)!r} has no {os.path.basename(path)}.")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{owner}: {path!r} is not valid JSON ({err}).") from None

