"""Pretrained encoders from keras-hub presets: `"keras_hub_image"` and `"keras_hub_text"`.

Each wraps a keras-hub backbone (ViT, ResNet, CLIP / SigLIP vision or text
towers, BERT, ...) loaded with `keras_hub.models.Backbone.from_preset` from a
local preset directory (`config.json` + `model.weights.h5`, as written by
`backbone.save_to_preset(dir)`), or from a preset name or `kaggle://` /
`hf://` handle, downloaded once into keras-hub's cache when named (see
`kerasmm.encoders.presets`), or converted from a transformers CLIP / SigLIP
or open_clip checkpoint directory (see `kerasmm.encoders.checkpoints`).
A full CLIP or SigLIP preset (a `CLIPBackbone` / `SigLIPBackbone`) gives its
vision tower to `"keras_hub_image"` and its text tower to `"keras_hub_text"`.

The backbone is an ordinary sub-layer: its weights are part of the kerasmm
model's weights, and `get_config` records the backbone's own config, so a
`.keras` file rebuilds and restores it without the preset directory.

Example:
```python
import kerasmm
model = kerasmm.zoo.get(
    "tiny_weighted_sum_classifier",
    encoders={"image": {"name": "keras_hub_image", "preset": "/data/presets/vit_tiny", "output_dim": 16}},
)
```
"""

import os
import re
import types

import keras
import keras_hub
import numpy as np
from keras import ops

from kerasmm import validation
from kerasmm.backend_compat import flatten_layers
from kerasmm.encoders import register
from kerasmm.encoders.base import Encoder
from kerasmm.encoders.checkpoints import load_pretrained
from kerasmm.layers.masked_ops import masked_mean

# Image towers whose sequence starts with a class token ("auto" pooling takes it).
_CLASS_TOKEN_IMAGE = ("CLIPVisionEncoder",)
# Causal text towers: the last real token (the end token) summarises the text.
_CAUSAL_TEXT = ("CLIPTextEncoder",)
# Text towers whose position table has a fixed length: inputs are padded to it.
_FIXED_LENGTH_TEXT = ("SigLIPTextEncoder",)
_TEXT_INPUTS = ("token_ids", "padding_mask", "segment_ids")
# Full two-tower presets: the attribute holding each modality's tower.
_TOWERS = {"image": "vision_encoder", "text": "text_encoder"}


def preset_tokenizer(preset):
    """The tokenizer saved in a keras-hub preset (a directory, or a name or handle fetched once; see
    `kerasmm.encoders.presets`).

    Use it (or `vocabulary=<preset dir>` in `kerasmm.zoo.get`) to tokenise text
    for a `"keras_hub_text"` encoder: a pretrained text backbone only makes
    sense on ids from its own vocabulary.

    Example:
    ```python
    from kerasmm.encoders.pretrained import preset_tokenizer
    tokenizer = preset_tokenizer("/data/presets/bert_tiny_en_uncased")
    tokenizer(["a red circle"])
    ```
    """
    tokenizer = load_pretrained("preset_tokenizer", preset).tokenizer
    if tokenizer is None:
        raise ValueError(
            f"preset_tokenizer: the preset {os.fspath(preset)!r} has no tokenizer.json; save one with "
            "`tokenizer.save_to_preset(DIR)`."
        )
    return tokenizer


def _load(owner, preset, backbone, dtype):
    """The `Pretrained` model in `preset` (see `kerasmm.encoders.checkpoints`), or None when `backbone` is given."""
    if backbone is not None or preset is None:
        return None
    return load_pretrained(owner, preset, dtype)


def _preset_component(owner, name, value, cls, pretrained):
    """`value` (an instance or its config), else the loaded preset's own component, else None."""
    value = _deserialize(owner, name, value, cls)
    return getattr(pretrained, name) if value is None and pretrained is not None else value


def _deserialize(owner, what, value, base_cls):
    """`value` as a `base_cls` instance: an instance, or a `keras.layers.serialize` dict."""
    if value is None or isinstance(value, base_cls):
        return value
    if isinstance(value, dict):
        value = keras.layers.deserialize(value)
        if isinstance(value, base_cls):
            return value
    raise ValueError(
        f"{owner}: {what} must be a keras_hub {base_cls.__name__} or its serialized config, got {value!r}."
    )


def _serialize(layer):
    return None if layer is None else keras.layers.serialize(layer)


def _backbone_blocks(backbone):
    """Ordered units `[(layers, is_block)]` covering the backbone's weighted layers.

    Blocks are the Transformer layers (a `transformer_layers` or
    `encoder_layers` list on the backbone or on one of its layers, expanded
    in place) or, for CNNs, the weighted layers grouped by a `...block<N>`
    name prefix (e.g. `stack0_block1_*`).
    """
    top = [layer for layer in backbone.layers if layer.weights]
    for owner in [backbone] + top:
        for attr in ("transformer_layers", "encoder_layers"):
            blocks = getattr(owner, attr, None)
            if isinstance(blocks, (list, tuple)) and blocks and all(isinstance(b, keras.layers.Layer) for b in blocks):
                ids = {id(b) for b in blocks}
                units = []
                for layer in top:
                    # The layer holding the blocks (e.g. ViT's encoder) is expanded into its sublayers.
                    inner = [layer]
                    if layer is owner:
                        inner = [s for s in flatten_layers(layer, include_self=False, recursive=False) if s.weights]
                    units.extend(([sub], id(sub) in ids) for sub in inner)
                return units
    groups = {}
    for layer in top:
        match = re.match(r"^(.*?block_?\d+)", layer.name)
        groups.setdefault(match.group(1) if match else layer.name, (match is not None, []))[1].append(layer)
    units = [(layers, is_block) for is_block, layers in groups.values()]
    if not any(is_block for _, is_block in units):
        units = [(layers, True) for layers, _ in units]
    return units


def _set_trainable(layer, value):
    """`layer.trainable = value` for the layer and every sublayer.

    Setting each one explicitly: on the TensorFlow backend, assigning the
    value an attribute already has is skipped (`AutoTrackable.__setattr__`),
    so `backbone.trainable = True` would not reach sublayers frozen one by one.
    """
    for sub in flatten_layers(layer):
        sub.trainable = value


def _feature_model(owner, backbone, sequence_rank):
    """A functional model sharing the backbone's layers: inputs → {"sequence", optional "pooled"}."""
    output = backbone.output
    pooled = None
    if isinstance(output, dict):
        if "sequence_output" not in output:
            raise ValueError(
                f"{owner}: cannot find a sequence output in {type(backbone).__name__}'s outputs "
                f"{sorted(output)} (expected 'sequence_output')."
            )
        sequence, pooled = output["sequence_output"], output.get("pooled_output")
    elif len(output.shape) == 2:
        # A pooled-only backbone (SigLIP): the sequence is the last rank-3/4
        # output before its head.
        pooled, sequence = output, None
        for layer in reversed(backbone.layers):
            try:
                candidate = layer.output
            except (AttributeError, ValueError):
                continue
            if not isinstance(candidate, (list, tuple, dict)) and len(candidate.shape) in sequence_rank:
                sequence = candidate
                break
        if sequence is None:
            raise ValueError(f"{owner}: cannot find a sequence output inside {type(backbone).__name__}.")
    else:
        sequence = output
    if len(sequence.shape) not in sequence_rank:
        raise ValueError(
            f"{owner}: {type(backbone).__name__}'s sequence output has shape {sequence.shape}; "
            f"expected rank {' or '.join(map(str, sequence_rank))}."
        )
    outputs = {"sequence": sequence}
    if pooled is not None:
        outputs["pooled"] = pooled
    return keras.Model(backbone.input, outputs, name=f"{backbone.name}_features")


class _KerasHubEncoder(Encoder):
    """Shared code of the keras-hub wrappers (see the registered subclasses)."""

    _poolings = ()
    _sequence_rank = ()

    def __init__(
        self,
        preset=None,
        output_dim=None,
        pooling="auto",
        trainable_backbone=True,
        unfreeze_last=None,
        backbone=None,
        **kwargs,
    ):
        owner = type(self).__name__
        validation.one_of(f"{owner}: pooling", pooling, self._poolings)
        validation.boolean(f"{owner}: trainable_backbone", trainable_backbone)
        validation.positive_int(f"{owner}: unfreeze_last", unfreeze_last, allow_none=True)
        validation.positive_int(f"{owner}: output_dim", output_dim, allow_none=True)
        if backbone is None:
            raise ValueError(f"{owner}: give `preset`, a keras-hub preset directory, name or handle, or a "
                             "transformers / open_clip checkpoint directory.")
        if preset is not None and not isinstance(preset, (str, os.PathLike)):
            raise ValueError(f"{owner}: preset must be a path or None, got {preset!r}.")
        # Recorded as given (a name or handle, not this machine's cache); read by the subclass, or not at all.
        preset = None if preset is None else os.fspath(preset)
        backbone = _deserialize(owner, "backbone", backbone, keras_hub.models.Backbone)
        backbone = self._tower(owner, backbone)
        features = _feature_model(owner, backbone, self._sequence_rank)

        sequence_dim = features.output["sequence"].shape[-1]
        pooled_dim = features.output["pooled"].shape[-1] if "pooled" in features.output else sequence_dim
        if output_dim is None and pooled_dim != sequence_dim:
            raise ValueError(
                f"{owner}: {type(backbone).__name__} gives {sequence_dim}-wide sequences but "
                f"{pooled_dim}-wide pooled features; set output_dim to project both to one width."
            )
        super().__init__(output_dim=sequence_dim if output_dim is None else output_dim, **kwargs)
        self.preset = preset
        self.pooling = pooling
        self.backbone = backbone
        # Untracked holder: the feature model shares the backbone's layers.
        self._graph = types.SimpleNamespace(features=features)
        self.sequence_dim = sequence_dim
        self.pooled_dim = pooled_dim
        self._units = _backbone_blocks(backbone)
        num_blocks = sum(is_block for _, is_block in self._units)
        if unfreeze_last is not None and unfreeze_last > num_blocks:
            raise ValueError(
                f"{owner}: unfreeze_last={unfreeze_last} but {type(backbone).__name__} has {num_blocks} blocks."
            )
        self._trainable_backbone = trainable_backbone
        self._unfreeze_last = unfreeze_last
        self._apply_trainable()
        self.projection = self.pooled_projection = None
        if self.output_dim != sequence_dim:
            self.projection = keras.layers.Dense(self.output_dim, dtype=self.dtype_policy, name="projection")
        if pooled_dim != sequence_dim and self.output_dim != pooled_dim:
            self.pooled_projection = keras.layers.Dense(
                self.output_dim, dtype=self.dtype_policy, name="pooled_projection"
            )

    # --- loading ---------------------------------------------------------------

    def _tower(self, owner, backbone):
        """The backbone, or this modality's tower of a two-tower backbone; checked."""
        tower = getattr(backbone, _TOWERS[self.modality], None)
        if isinstance(tower, keras_hub.models.Backbone):
            backbone = tower
        if not self._accepts(backbone):
            other = "keras_hub_text" if self.modality == "image" else "keras_hub_image"
            raise ValueError(
                f"{owner}: {type(backbone).__name__} is not a{'n' if self.modality == 'image' else ''} "
                f"{self.modality} backbone kerasmm can feed (its inputs: {self._input_names(backbone)}; an image "
                f"backbone takes one image tensor, a text backbone 'token_ids' and optionally 'padding_mask' "
                f"and 'segment_ids'). For the other modality, use the {other!r} encoder."
            )
        return backbone

    @staticmethod
    def _input_names(backbone):
        return sorted(backbone.input) if isinstance(backbone.input, dict) else [backbone.input.name]

    # --- freezing --------------------------------------------------------------

    @property
    def trainable_backbone(self):
        """Whether the whole backbone trains; settable, e.g. to unfreeze it for fine-tuning."""
        return self._trainable_backbone

    @trainable_backbone.setter
    def trainable_backbone(self, value):
        self._trainable_backbone = validation.boolean("trainable_backbone", value)
        self._apply_trainable()

    @property
    def unfreeze_last(self):
        """With a frozen backbone, how many of its last blocks still train (None: none)."""
        return self._unfreeze_last

    @unfreeze_last.setter
    def unfreeze_last(self, value):
        value = validation.positive_int(f"{type(self).__name__}: unfreeze_last", value, allow_none=True)
        num_blocks = sum(is_block for _, is_block in self._units)
        if value is not None and value > num_blocks:
            raise ValueError(f"unfreeze_last={value} but the backbone has {num_blocks} blocks.")
        self._unfreeze_last = value
        self._apply_trainable()

    def _apply_trainable(self):
        backbone = self.backbone
        if self._trainable_backbone or not self._unfreeze_last:
            _set_trainable(backbone, self._trainable_backbone)
            return
        _set_trainable(backbone, True)
        block_positions = [i for i, (_, is_block) in enumerate(self._units) if is_block]
        first_trained = block_positions[-self._unfreeze_last]
        for layers, _ in self._units[:first_trained]:
            for layer in layers:
                _set_trainable(layer, False)

    # --- call ------------------------------------------------------------------

    def _project(self, sequence, pooled, pooled_is_sequence_wide):
        if self.projection is not None:
            sequence = self.projection(sequence)
            if pooled_is_sequence_wide:
                pooled = self.projection(pooled)
        if not pooled_is_sequence_wide and self.pooled_projection is not None:
            pooled = self.pooled_projection(pooled)
        return sequence, pooled

    def _build_projections(self, batch):
        if self.projection is not None:
            self.projection.build((batch, None, self.sequence_dim))
        if self.pooled_projection is not None:
            self.pooled_projection.build((batch, self.pooled_dim))

    def get_config(self):
        config = super().get_config()
        config.update({
            "preset": self.preset,
            "pooling": self.pooling,
            "trainable_backbone": self.trainable_backbone,
            "unfreeze_last": self.unfreeze_last,
            "backbone": keras.layers.serialize(self.backbone),
        })
        return config


@register("keras_hub_image")
class KerasHubImageEncoder(_KerasHubEncoder):
    """A pretrained keras-hub image backbone from a local preset directory.

    Loads the backbone (ViT, ResNet, CLIP / SigLIP vision towers, ...; from a
    full `CLIPBackbone` / `SigLIPBackbone` preset, its vision tower) and, when
    the preset has an `image_converter.json`, its `ImageConverter`: the `[0, 1]`
    images are resized to the converter's `image_size` (so any input size
    works) and scaled as the converter scales 0-255 pixels. Without a
    converter the images go in unchanged, in `[0, 1]`.

    `sequence` is the backbone's last feature map flattened (`[B, h*w, C]`)
    or its token sequence (class token included); for a pooled-only backbone
    (SigLIP) the sequence before its pooling head. `pooled` with
    `pooling="auto"` is the backbone's own pooled output (SigLIP), else the
    class token (ViT with a class token, CLIP), else the mean over positions.
    Both are projected by a Dense layer to `output_dim` when given and
    different from the backbone width.

    Args:
        preset: str. A local keras-hub preset directory. Not read when
            `backbone` is given (then only recorded).
        output_dim: int or None. D; None keeps the backbone width.
        pooling: "auto", "mean" or "first" (the first token, e.g. a class token).
        trainable_backbone: bool. False freezes the backbone (its batch
            normalisation then runs in inference mode); the projection still
            trains. Settable later, e.g. to fine-tune.
        unfreeze_last: int or None. With `trainable_backbone=False`, the last
            N blocks (Transformer layers; for CNNs the `...blockN` layer
            groups) and every layer after them still train.
        backbone: a keras-hub `Backbone` or its `keras.layers.serialize`
            config, instead of loading `preset` (what `from_config` uses).
        image_converter: a keras-hub `ImageConverter` or its serialized
            config; by default the preset's, if it has one.

    Example:
    ```python
    import numpy as np, tempfile, keras_hub
    from kerasmm.encoders.pretrained import KerasHubImageEncoder
    preset = tempfile.mkdtemp()
    keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=1, num_heads=2,
                                 hidden_dim=8, mlp_dim=16).save_to_preset(preset)
    keras_hub.layers.ImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1.0).save_to_preset(preset)
    encoder = KerasHubImageEncoder(preset, output_dim=16, trainable_backbone=False)
    out = encoder(np.random.rand(2, 48, 48, 3).astype("float32"))
    out["sequence"].shape, out["pooled"].shape  # (2, 17, 16), (2, 16)
    ```
    """

    modality = "image"
    input_rank = 4
    input_kind = "float"
    input_description = "float images [batch, height, width, 3] with values in [0, 1]"
    _poolings = ("auto", "mean", "first")
    _sequence_rank = (3, 4)

    def __init__(
        self,
        preset=None,
        output_dim=None,
        pooling="auto",
        trainable_backbone=True,
        unfreeze_last=None,
        backbone=None,
        image_converter=None,
        **kwargs,
    ):
        owner = type(self).__name__
        pretrained = _load(owner, preset, backbone, kwargs.get("dtype"))
        image_converter = _preset_component(
            owner, "image_converter", image_converter, keras_hub.layers.ImageConverter, pretrained
        )
        super().__init__(
            preset=preset, output_dim=output_dim, pooling=pooling, trainable_backbone=trainable_backbone,
            unfreeze_last=unfreeze_last, backbone=backbone if pretrained is None else pretrained.backbone, **kwargs,
        )
        self.image_converter = image_converter
        sequence = self._graph.features.output["sequence"]
        self._grid = len(sequence.shape) == 4
        if self._grid and pooling == "first":
            raise ValueError(
                f"{owner}: pooling='first' needs a token sequence, but {type(self.backbone).__name__} "
                f"gives a feature map; use 'auto' or 'mean'."
            )
        self._class_token = bool(getattr(self.backbone, "use_class_token", False)) or (
            type(self.backbone).__name__ in _CLASS_TOKEN_IMAGE
        )
        self._input_name = next(iter(self.backbone.input)) if isinstance(self.backbone.input, dict) else None
        self.resizing = None
        self._scale = self._offset = None
        if image_converter is not None:
            if image_converter.image_size is not None:
                height, width = image_converter.image_size
                self.resizing = keras.layers.Resizing(
                    height, width, interpolation=image_converter.interpolation,
                    crop_to_aspect_ratio=image_converter.crop_to_aspect_ratio,
                    pad_to_aspect_ratio=image_converter.pad_to_aspect_ratio,
                    antialias=image_converter.antialias, dtype=self.dtype_policy, name="resizing",
                )
            # The converter maps 0-255 pixels; kerasmm images are in [0, 1].
            scale = 1.0 if image_converter.scale is None else np.asarray(image_converter.scale, "float32")
            self._scale = (255.0 * np.asarray(scale, "float32")).tolist()
            if image_converter.offset is not None:
                self._offset = np.asarray(image_converter.offset, "float32").tolist()

    def _accepts(self, backbone):
        inputs = list(backbone.input.values()) if isinstance(backbone.input, dict) else [backbone.input]
        return len(inputs) == 1 and len(inputs[0].shape) == 4

    def build(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(
                f"{type(self).__name__} (image encoder) expects {self.input_description}, "
                f"got {input_shape[-1]} channels (input shape {tuple(input_shape)})."
            )
        inputs = self.backbone.input
        expected = tuple((inputs[self._input_name] if self._input_name else inputs).shape[1:3])
        got = tuple(input_shape[1:3])
        if self.resizing is None and any(e is not None and e != g for e, g in zip(expected, got)):
            raise ValueError(
                f"{type(self).__name__}: {type(self.backbone).__name__} takes {expected[0]}x{expected[1]} "
                f"images, got {'x'.join(str(s) for s in got)} (input shape {tuple(input_shape)}) and the preset "
                f"has no image converter to resize them; resize the images (image_size) or pass image_converter."
            )
        self._build_projections(input_shape[0])
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        if self.resizing is not None:
            x = self.resizing(x)
        if self._scale is not None:
            x = x * ops.convert_to_tensor(self._scale, dtype=x.dtype)
        if self._offset is not None:
            x = x + ops.convert_to_tensor(self._offset, dtype=x.dtype)
        features = self._graph.features({self._input_name: x} if self._input_name else x, training=training)
        sequence = features["sequence"]
        if self._grid:
            _, height, width, channels = sequence.shape
            if height is not None and width is not None:
                sequence = ops.reshape(sequence, (-1, height * width, channels))
            else:
                sequence = ops.reshape(sequence, (ops.shape(sequence)[0], -1, channels))
        if self.pooling == "auto" and "pooled" in features:
            pooled, pooled_is_sequence_wide = features["pooled"], False
        elif self.pooling == "first" or (self.pooling == "auto" and self._class_token):
            pooled, pooled_is_sequence_wide = sequence[:, 0, :], True
        else:
            pooled, pooled_is_sequence_wide = ops.mean(sequence, axis=1), True
        sequence, pooled = self._project(
            sequence, pooled, pooled_is_sequence_wide or self.pooled_dim == self.sequence_dim
        )
        return {"sequence": sequence, "pooled": pooled, "sequence_mask": ops.ones_like(sequence[:, :, 0], dtype="bool")}

    def get_config(self):
        config = super().get_config()
        config["image_converter"] = _serialize(self.image_converter)
        return config


@register("keras_hub_text")
class KerasHubTextEncoder(_KerasHubEncoder):
    """A pretrained keras-hub text backbone from a local preset directory.

    Loads the backbone (BERT, CLIP / SigLIP text towers, RoBERTa, ...; from a
    full `CLIPBackbone` / `SigLIPBackbone` preset, its text tower) and the
    preset's tokenizer (`encoder.tokenizer`, saved with the model). The input
    is kerasmm's int32 ids `[B, T]` with 0 as padding, **which must come from
    the preset's tokenizer**: use `preset_tokenizer(dir)`, or
    `vocabulary=<preset dir>` in the zoo. Given `vocabulary_size` (the zoo
    fills it from its tokenizer), a size other than the preset tokenizer's is
    refused.

    Each text becomes what the preset's own preprocessor packs: the start
    token, the ids, the end token right after the last real id, then the pad
    token (`add_special_tokens=True`, token ids read from the tokenizer), so
    `T` grows by up to 2; SigLIP's fixed-length text tower gets the ids padded
    to its `max_sequence_length`. The backbone gets `token_ids`, and where it
    takes them `padding_mask` (True at real tokens and special tokens) and
    all-zero `segment_ids`.

    `pooled` with `pooling="auto"` is the backbone's own pooled output (BERT's
    `pooled_output`, SigLIP's head), else the end token for CLIP's causal
    tower, else the start token when one is added, else the masked mean.

    Args:
        preset: str. A local keras-hub preset directory. Not read when
            `backbone` is given (then only recorded).
        output_dim: int or None. D; None keeps the backbone width.
        pooling: "auto", "mean", "first" or "last" (the last real token).
        trainable_backbone: bool. False freezes the backbone; settable later.
        unfreeze_last: int or None. With `trainable_backbone=False`, the last
            N Transformer layers and every layer after them still train.
        backbone: a keras-hub `Backbone` or its serialized config, instead of
            loading `preset` (what `from_config` uses).
        tokenizer: a keras-hub `Tokenizer` or its serialized config; by
            default the preset's, if it has a `tokenizer.json`.
        vocabulary_size: int or None. The size of the vocabulary the input
            ids come from, checked against the tokenizer (or the backbone).
        add_special_tokens: bool. Whether to add the start and end tokens.
        start_token_id, end_token_id: int or None. Default: the tokenizer's.
        pad_token_id: int or None. The id given to padding; default the
            tokenizer's, else 0.

    Example:
    ```python
    import numpy as np, tempfile, keras_hub
    from kerasmm.encoders.pretrained import KerasHubTextEncoder
    preset = tempfile.mkdtemp()
    keras_hub.models.BertBackbone(vocabulary_size=8, num_layers=1, num_heads=2, hidden_dim=8,
                                  intermediate_dim=16, max_sequence_length=16).save_to_preset(preset)
    keras_hub.models.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle"]).save_to_preset(preset)
    encoder = KerasHubTextEncoder(preset)
    encoder.tokenizer(["a red circle"])  # [[5, 6, 7]]
    out = encoder(np.array([[5, 6, 7, 0, 0, 0]], "int32"))
    out["sequence"].shape, out["pooled"].shape  # (1, 8, 8), (1, 8): [CLS] ... [SEP] added
    ```
    """

    modality = "text"
    input_rank = 2
    input_kind = "int"
    input_description = "int token ids [batch, tokens] with 0 as padding"
    _poolings = ("auto", "mean", "first", "last")
    _sequence_rank = (3,)

    def __init__(
        self,
        preset=None,
        output_dim=None,
        pooling="auto",
        trainable_backbone=True,
        unfreeze_last=None,
        backbone=None,
        tokenizer=None,
        vocabulary_size=None,
        add_special_tokens=True,
        start_token_id=None,
        end_token_id=None,
        pad_token_id=None,
        **kwargs,
    ):
        owner = type(self).__name__
        pretrained = _load(owner, preset, backbone, kwargs.get("dtype"))
        tokenizer = _preset_component(owner, "tokenizer", tokenizer, keras_hub.tokenizers.Tokenizer, pretrained)
        validation.boolean(f"{owner}: add_special_tokens", add_special_tokens)
        for arg, value in (("start_token_id", start_token_id), ("end_token_id", end_token_id),
                           ("pad_token_id", pad_token_id)):
            validation.non_negative_int(f"{owner}: {arg}", value, allow_none=True)
        validation.positive_int(f"{owner}: vocabulary_size", vocabulary_size, allow_none=True)
        super().__init__(
            preset=preset, output_dim=output_dim, pooling=pooling, trainable_backbone=trainable_backbone,
            unfreeze_last=unfreeze_last, backbone=backbone if pretrained is None else pretrained.backbone, **kwargs,
        )
        self.tokenizer = tokenizer
        if tokenizer is not None:
            start_token_id = _token_id(tokenizer, "start_token_id") if start_token_id is None else start_token_id
            end_token_id = _token_id(tokenizer, "end_token_id") if end_token_id is None else end_token_id
            pad_token_id = _token_id(tokenizer, "pad_token_id") if pad_token_id is None else pad_token_id
        self.add_special_tokens = add_special_tokens
        self.start_token_id = start_token_id
        self.end_token_id = end_token_id
        self.pad_token_id = 0 if pad_token_id is None else pad_token_id
        self.vocabulary_size = vocabulary_size
        self._check_vocabulary(owner)
        self._backbone_inputs = self._input_names(self.backbone)
        kind = type(self.backbone).__name__
        self._causal = kind in _CAUSAL_TEXT
        self._fixed_length = self.backbone.max_sequence_length if kind in _FIXED_LENGTH_TEXT else None
        self._max_length = getattr(self.backbone, "max_sequence_length", None)

    def _accepts(self, backbone):
        names = self._input_names(backbone) if isinstance(backbone.input, dict) else []
        return "token_ids" in names and set(names) <= set(_TEXT_INPUTS)

    def _check_vocabulary(self, owner):
        if self.vocabulary_size is None:
            return
        expected, source = None, None
        if self.tokenizer is not None:
            try:
                expected, source = self.tokenizer.vocabulary_size(), "the preset's tokenizer"
            except Exception:  # noqa: BLE001 - a tokenizer from a config has no vocabulary until its assets load
                expected = None
        if expected is not None and self.vocabulary_size != expected:
            problem = f"{source} has {expected}"
        elif expected is None and self.vocabulary_size > getattr(self.backbone, "vocabulary_size", np.inf):
            problem = f"the backbone embeds only {self.backbone.vocabulary_size}"
        else:
            return
        raise ValueError(
            f"{owner}: the input ids come from a vocabulary of {self.vocabulary_size} tokens but {problem}. "
            f"A pretrained text backbone needs ids from its own tokenizer: tokenize with "
            f"kerasmm.encoders.pretrained.preset_tokenizer(<preset dir>) (in kerasmm.zoo.get, "
            f"vocabulary=<preset dir>)."
        )

    @property
    def _num_special(self):
        if not self.add_special_tokens:
            return 0
        return (self.start_token_id is not None) + (self.end_token_id is not None)

    def build(self, input_shape):
        length = input_shape[1]
        if length is not None:
            packed = length + self._num_special
            limit = self._fixed_length or self._max_length
            if limit is not None and packed > limit:
                raise ValueError(
                    f"{type(self).__name__}: {length} token ids + {self._num_special} special tokens = {packed} "
                    f"positions, but {type(self.backbone).__name__} takes at most {limit}; "
                    f"use a sequence_length of at most {limit - self._num_special}."
                )
        self._build_projections(input_shape[0])
        self.built = True

    def _pack(self, token_ids):
        """`(ids, mask)`: special tokens added, padding set to the pad id, fixed length if needed."""
        mask = ops.not_equal(token_ids, 0)
        ids = ops.where(mask, token_ids, self.pad_token_id)
        batch = ops.shape(ids)[0]

        def column(value, dtype="int32"):
            return ops.full((batch, 1), value, dtype=dtype)

        if self.add_special_tokens and self.start_token_id is not None:
            ids = ops.concatenate([column(self.start_token_id), ids], axis=1)
            mask = ops.concatenate([column(True, "bool"), mask], axis=1)
        if self.add_special_tokens and self.end_token_id is not None:
            positions = ops.arange(ops.shape(ids)[1] + 1, dtype="int32")[None, :]
            after_last = ops.max(ops.where(mask, positions[:, :-1] + 1, 0), axis=1, keepdims=True)
            ids = ops.concatenate([ids, column(self.pad_token_id)], axis=1)
            mask = ops.concatenate([mask, column(False, "bool")], axis=1)
            at_end = ops.equal(positions, after_last)
            ids = ops.where(at_end, self.end_token_id, ids)
            mask = ops.logical_or(mask, at_end)
        if self._fixed_length is not None:
            missing = self._fixed_length - ops.shape(ids)[1]
            ids = ops.pad(ids, [[0, 0], [0, missing]], constant_values=self.pad_token_id)
            mask = ops.pad(mask, [[0, 0], [0, missing]], constant_values=False)
            ids = ops.reshape(ids, (-1, self._fixed_length))
            mask = ops.reshape(mask, (-1, self._fixed_length))
        return ids, mask

    def call(self, inputs, training=None):
        ids, mask = self._pack(ops.cast(inputs, "int32"))
        available = {"token_ids": ids, "padding_mask": mask, "segment_ids": ops.zeros_like(ids)}
        backbone_inputs = {}
        for name in self._backbone_inputs:
            spec = self.backbone.input[name]
            backbone_inputs[name] = ops.cast(available[name], spec.dtype)
        features = self._graph.features(backbone_inputs, training=training)
        sequence = features["sequence"]
        pooling = self.pooling
        if pooling == "auto":
            if "pooled" in features:
                pooling = "backbone"
            elif self._causal:
                pooling = "last"
            elif self.add_special_tokens and self.start_token_id is not None:
                pooling = "first"
            else:
                pooling = "mean"
        if pooling == "backbone":
            pooled = features["pooled"]
        elif pooling == "first":
            pooled = sequence[:, 0, :]
        elif pooling == "last":
            positions = ops.arange(ops.shape(mask)[1], dtype="int32")[None, :]
            last = ops.max(ops.where(mask, positions, 0), axis=1)
            pooled = ops.take_along_axis(sequence, ops.reshape(last, (-1, 1, 1)), axis=1)[:, 0, :]
        else:
            pooled = masked_mean(sequence, mask)
        sequence, pooled = self._project(
            sequence, pooled, pooling != "backbone" or self.pooled_dim == self.sequence_dim
        )
        return {"sequence": sequence, "pooled": pooled, "sequence_mask": mask}

    def get_config(self):
        config = super().get_config()
        config.update({
            "tokenizer": _serialize(self.tokenizer),
            "vocabulary_size": self.vocabulary_size,
            "add_special_tokens": self.add_special_tokens,
            "start_token_id": self.start_token_id,
            "end_token_id": self.end_token_id,
            "pad_token_id": self.pad_token_id,
        })
        return config


def _token_id(tokenizer, attr):
    value = getattr(tokenizer, attr, None)
    return None if value is None else int(value)
