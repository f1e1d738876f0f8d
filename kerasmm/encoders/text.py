"""Text encoders: int32 token ids `[B, T]` (0 = padding) to sequence + pooled features.

Registered names: `"text_transformer"`, `"bert"`, `"bow"`.
"""

import json
import os

import keras
import keras_hub
from keras import ops

from kerasmm import validation
from kerasmm.encoders import register
from kerasmm.encoders.base import Encoder
from kerasmm.encoders.presets import local_preset
from kerasmm.layers.masked_ops import masked_mean

_COMBINERS = ("mean", "sum")


def _check_heads(owner, num_heads, width, width_name="output_dim"):
    validation.positive_int(f"{owner}: num_heads", num_heads)
    if width % num_heads:
        raise ValueError(
            f"{owner}: {width_name} ({width}) must be divisible by num_heads ({num_heads})."
        )


def _check_length(owner, input_shape, max_length, arg_name):
    length = input_shape[1] if len(input_shape) > 1 else None
    if length is not None and length > max_length:
        raise ValueError(
            f"{owner}: the input has {length} tokens but {arg_name} is {max_length}; "
            f"raise {arg_name} or truncate the input."
        )


def _padding_mask(token_ids):
    """`[B, T]` bool, True at real tokens (id != 0)."""
    return ops.not_equal(token_ids, 0)


@register("text_transformer")
class TextTransformerEncoder(Encoder):
    """A small Transformer text encoder trained from scratch.

    Token + learned position embeddings (keras-hub `TokenAndPositionEmbedding`),
    `num_layers` pre-norm keras-hub `TransformerEncoder` blocks given the
    padding mask `ids != 0`, and a final `LayerNormalization`. `pooled` is the
    mean over real (non-padding) tokens; an all-padding row pools to zeros.

    The padding mask is passed explicitly rather than through
    `mask_zero=True`: in keras-hub 0.32 a Keras-attached mask makes the inner
    `PositionEmbedding` warn that it destroys the mask and every block log that
    the explicit `padding_mask` overrides it, for the same result.

    Args:
        vocabulary_size: int. Number of token ids (id 0 is padding).
        sequence_length: int. Maximum number of tokens (position table size).
        output_dim: int. D, the embedding and model width.
        num_layers: int. Number of Transformer blocks.
        num_heads: int. Attention heads; must divide `output_dim`.
        intermediate_dim: int or None. Feed-forward width; None means `4 * output_dim`.
        dropout: float in [0, 1). Dropout on embeddings and inside the blocks.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.text import TextTransformerEncoder
    encoder = TextTransformerEncoder(vocabulary_size=100, sequence_length=16, output_dim=32)
    out = encoder(np.array([[5, 6, 7, 0], [8, 0, 0, 0]], "int32"))
    out["sequence"].shape, out["pooled"].shape  # (2, 4, 32), (2, 32)
    ```
    """

    modality = "text"
    input_rank = 2
    input_kind = "int"
    input_description = "int token ids [batch, tokens] with 0 as padding"

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        output_dim,
        num_layers=2,
        num_heads=4,
        intermediate_dim=None,
        dropout=0.1,
        **kwargs,
    ):
        super().__init__(output_dim=output_dim, **kwargs)
        owner = type(self).__name__
        self.vocabulary_size = validation.positive_int(f"{owner}: vocabulary_size", vocabulary_size)
        self.sequence_length = validation.positive_int(f"{owner}: sequence_length", sequence_length)
        self.num_layers = validation.positive_int(f"{owner}: num_layers", num_layers)
        _check_heads(owner, num_heads, output_dim)
        self.num_heads = num_heads
        self.intermediate_dim = validation.positive_int(f"{owner}: intermediate_dim", intermediate_dim, allow_none=True)
        self.dropout = validation.rate(f"{owner}: dropout", dropout)

        self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size,
            sequence_length=sequence_length,
            embedding_dim=output_dim,
            # The padding mask goes to the blocks explicitly; keras-hub's
            # mask_zero=True would only add warnings (see the class docstring).
            mask_zero=False,
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.embedding_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="embedding_dropout")
        self.blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=intermediate_dim or 4 * output_dim,
                num_heads=num_heads,
                dropout=self.dropout,
                activation="gelu",
                normalize_first=True,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=self.dtype_policy, name="final_norm")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        _check_length(type(self).__name__, input_shape, self.sequence_length, "sequence_length")
        self.embedding.build(input_shape)
        hidden_shape = input_shape + (self.output_dim,)
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.built = True

    def call(self, inputs, training=None):
        mask = _padding_mask(inputs)
        x = self.embedding(inputs)
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, padding_mask=mask, training=training)
        x = self.final_norm(x)
        return {"sequence": x, "pooled": masked_mean(x, mask), "sequence_mask": mask}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
            }
        )
        return config


def _load_bert_preset(owner, path, dtype):
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    name = saved.get("registered_name") or saved.get("class_name") or saved.get("model_type")
    if "Bert" not in str(name) and str(name).lower() != "bert":
        raise ValueError(f"{owner}: the preset {path!r} holds a {name!r}, not a BertBackbone.")
    kwargs = {} if dtype is None else {"dtype": dtype}
    return keras_hub.models.BertBackbone.from_preset(path, **kwargs)


@register("bert")
class BertTextEncoder(Encoder):
    """A keras-hub `BertBackbone`, randomly initialised or loaded from a local preset.

    Token ids go in as `token_ids`, with all-zero `segment_ids` and
    `padding_mask = ids != 0`. `sequence` is the backbone's `sequence_output`
    and `pooled` its `pooled_output` (the tanh-projected first token);
    `output_dim` equals the backbone's `hidden_dim`.

    Either give the architecture (at least `vocabulary_size` and `output_dim`)
    for a random initialisation, or `preset` to load its architecture and
    weights: a local keras-hub preset directory, or a preset name or
    `kaggle://` / `hf://` handle, downloaded once into keras-hub's cache
    (see `kerasmm.encoders.presets`).
    Architecture arguments given together with `preset` must agree with it.

    `get_config()` describes the architecture read back from the backbone,
    with `preset=None`: a `.keras` file rebuilds the same architecture and
    restores the weights from the file itself, not from the preset.

    Args:
        output_dim: int. The hidden width (`hidden_dim`). Optional with `preset`.
        vocabulary_size: int. Number of token ids (id 0 is padding).
        num_layers: int. Transformer layers (default 2).
        num_heads: int. Attention heads (default 4); must divide `output_dim`.
        hidden_dim: int. Alias of `output_dim` (keras-hub's name); must agree with it.
        intermediate_dim: int. Feed-forward width (default `4 * output_dim`).
        max_sequence_length: int. Size of the position table (default 512).
        dropout: float in [0, 1) (default 0.1).
        num_segments: int. Size of the segment table (default 2); only segment 0 is used.
        preset: str or None. A local keras-hub BertBackbone preset directory.
        trainable_backbone: bool. False freezes every backbone weight.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.text import BertTextEncoder
    encoder = BertTextEncoder(vocabulary_size=100, output_dim=32, num_layers=1, num_heads=2,
                              max_sequence_length=16)
    out = encoder(np.array([[2, 5, 6, 0], [2, 7, 0, 0]], "int32"))
    out["pooled"].shape  # (2, 32)
    # Pretrained: BertTextEncoder(preset="/data/presets/bert_tiny_en_uncased")
    ```
    """

    modality = "text"
    input_rank = 2
    input_kind = "int"
    input_description = "int token ids [batch, tokens] with 0 as padding"

    _DEFAULTS = {"num_layers": 2, "num_heads": 4, "max_sequence_length": 512, "dropout": 0.1, "num_segments": 2}

    def __init__(
        self,
        output_dim=None,
        vocabulary_size=None,
        num_layers=None,
        num_heads=None,
        hidden_dim=None,
        intermediate_dim=None,
        max_sequence_length=None,
        dropout=None,
        num_segments=None,
        preset=None,
        trainable_backbone=True,
        **kwargs,
    ):
        owner = type(self).__name__
        if output_dim is not None and hidden_dim is not None and output_dim != hidden_dim:
            raise ValueError(
                f"{owner}: hidden_dim is an alias of output_dim; got output_dim={output_dim} "
                f"and hidden_dim={hidden_dim}."
            )
        width = output_dim if output_dim is not None else hidden_dim
        arch = {
            "vocabulary_size": vocabulary_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "hidden_dim": width,
            "intermediate_dim": intermediate_dim,
            "max_sequence_length": max_sequence_length,
            "dropout": dropout,
            "num_segments": num_segments,
        }
        validation.boolean(f"{owner}: trainable_backbone", trainable_backbone)

        if preset is not None:
            path = local_preset(owner, preset)
            backbone = _load_bert_preset(owner, path, kwargs.get("dtype"))
            clashes = {
                k: (v, getattr(backbone, k))
                for k, v in arch.items()
                if v is not None and v != getattr(backbone, k)
            }
            if clashes:
                detail = ", ".join(f"{k}={given!r} (preset has {have!r})" for k, (given, have) in clashes.items())
                raise ValueError(f"{owner}: arguments disagree with the preset {path!r}: {detail}.")
            super().__init__(output_dim=backbone.hidden_dim, **kwargs)
        else:
            missing = [k for k in ("vocabulary_size", "output_dim") if {**arch, "output_dim": width}[k] is None]
            if missing:
                raise ValueError(
                    f"{owner}: without a preset, give the architecture; missing {', '.join(missing)}."
                )
            super().__init__(output_dim=width, **kwargs)
            for key, default in self._DEFAULTS.items():
                if arch[key] is None:
                    arch[key] = default
            if arch["intermediate_dim"] is None:
                arch["intermediate_dim"] = 4 * width
            for key in ("vocabulary_size", "num_layers", "max_sequence_length", "num_segments", "intermediate_dim"):
                validation.positive_int(f"{owner}: {key}", arch[key])
            _check_heads(owner, arch["num_heads"], width)
            arch["dropout"] = validation.rate(f"{owner}: dropout", arch["dropout"])
            backbone = keras_hub.models.BertBackbone(**arch, dtype=self.dtype_policy, name="bert_backbone")

        backbone.trainable = trainable_backbone
        self.backbone = backbone
        # Attributes hold the architecture read back from the backbone.
        self.vocabulary_size = backbone.vocabulary_size
        self.num_layers = backbone.num_layers
        self.num_heads = backbone.num_heads
        self.hidden_dim = backbone.hidden_dim
        self.intermediate_dim = backbone.intermediate_dim
        self.max_sequence_length = backbone.max_sequence_length
        self.dropout = backbone.dropout
        self.num_segments = backbone.num_segments
        self.preset = preset
        self.trainable_backbone = trainable_backbone

    def build(self, input_shape):
        _check_length(type(self).__name__, tuple(input_shape), self.max_sequence_length, "max_sequence_length")
        self.built = True

    def call(self, inputs, training=None):
        token_ids = ops.cast(inputs, "int32")
        mask = _padding_mask(token_ids)
        outputs = self.backbone(
            {
                "token_ids": token_ids,
                "segment_ids": ops.zeros_like(token_ids),
                "padding_mask": ops.cast(mask, "int32"),
            },
            training=training,
        )
        return {
            "sequence": outputs["sequence_output"],
            "pooled": outputs["pooled_output"],
            "sequence_mask": mask,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "max_sequence_length": self.max_sequence_length,
                "dropout": self.dropout,
                "num_segments": self.num_segments,
                "preset": None,
                "trainable_backbone": self.trainable_backbone,
            }
        )
        return config


@register("bow")
class BagOfWordsEncoder(Encoder):
    """An embedding bag: token embeddings, pooled by a masked mean or sum.

    `sequence` holds the per-token embeddings (projected to `output_dim` by a
    `Dense` layer when `embedding_dim` is given), zero at padding positions;
    `pooled` combines the real (non-padding) tokens. An all-padding row pools
    to zeros.

    Args:
        vocabulary_size: int. Number of token ids (id 0 is padding).
        output_dim: int. D, the output width.
        combiner: "mean" or "sum", how real tokens are pooled.
        embedding_dim: int or None. Embedding width before a Dense projection to
            `output_dim`; None embeds straight to `output_dim` (no projection).

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.text import BagOfWordsEncoder
    encoder = BagOfWordsEncoder(vocabulary_size=100, output_dim=16, combiner="sum")
    encoder(np.array([[3, 4, 0]], "int32"))["pooled"].shape  # (1, 16)
    ```
    """

    modality = "text"
    input_rank = 2
    input_kind = "int"
    input_description = "int token ids [batch, tokens] with 0 as padding"

    def __init__(self, vocabulary_size, output_dim, combiner="mean", embedding_dim=None, **kwargs):
        super().__init__(output_dim=output_dim, **kwargs)
        owner = type(self).__name__
        self.vocabulary_size = validation.positive_int(f"{owner}: vocabulary_size", vocabulary_size)
        self.combiner = validation.one_of(f"{owner}: combiner", combiner, _COMBINERS)
        self.embedding_dim = validation.positive_int(f"{owner}: embedding_dim", embedding_dim, allow_none=True)
        self.embedding = keras.layers.Embedding(
            vocabulary_size, embedding_dim or output_dim, mask_zero=True, dtype=self.dtype_policy, name="embedding"
        )
        self.projection = (
            keras.layers.Dense(output_dim, dtype=self.dtype_policy, name="projection")
            if embedding_dim is not None
            else None
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.embedding.build(input_shape)
        if self.projection is not None:
            self.projection.build(input_shape + (self.embedding_dim,))
        self.built = True

    def call(self, inputs):
        mask = _padding_mask(inputs)
        x = self.embedding(inputs)
        if self.projection is not None:
            x = self.projection(x)
        # Zero the padding positions. This also gives a new tensor without the
        # Keras mask the embedding attached, which would otherwise reach later
        # layers in eager/graph calls but not in symbolic ones (and make
        # mask-less layers such as Flatten warn); `sequence_mask` carries it.
        x = x * ops.cast(mask, x.dtype)[..., None]
        if self.combiner == "mean":
            pooled = masked_mean(x, mask)
        else:
            pooled = ops.sum(x, axis=1)
        return {"sequence": x, "pooled": pooled, "sequence_mask": mask}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "combiner": self.combiner,
                "embedding_dim": self.embedding_dim,
            }
        )
        return config
