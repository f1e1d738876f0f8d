"""Image encoders: `"cnn"`, `"vit"`, `"resnet"` and `"efficientnet"`.

Every image encoder takes float `[B, H, W, 3]` RGB images with values in
`[0, 1]` (the preprocessor decodes and resizes them) and applies the
normalisation its backbone expects inside the layer. It returns the final
feature grid flattened to `"sequence"` `[B, h*w, D]`, its mean over positions
as `"pooled"` `[B, D]`, and an all-True `"sequence_mask"` `[B, h*w]`.

Example:
```python
import numpy as np
import kerasmm
encoder = kerasmm.encoders.get("cnn", output_dim=16, filters=[8, 16])
out = encoder(np.random.rand(2, 32, 32, 3).astype("float32"))
out["sequence"].shape  # (2, 64, 16)
```
"""

import math
import os

import keras
from keras import ops
from keras_hub.layers import PositionEmbedding, TransformerEncoder

from kerasmm import validation
from kerasmm.encoders import register
from kerasmm.encoders.base import Encoder

_IMAGE_DESCRIPTION = "float images [batch, height, width, 3] with values in [0, 1]"


POOLINGS = ("avg", "max")


def _grid_outputs(grid, pooling="avg"):
    """`{"sequence", "pooled", "sequence_mask"}` from a `[B, h, w, D]` feature grid."""
    _, height, width, channels = grid.shape
    if height is not None and width is not None:
        sequence = ops.reshape(grid, (-1, height * width, channels))
    else:
        sequence = ops.reshape(grid, (ops.shape(grid)[0], -1, channels))
    return {
        "sequence": sequence,
        "pooled": ops.max(sequence, axis=1) if pooling == "max" else ops.mean(sequence, axis=1),
        "sequence_mask": ops.ones_like(sequence[:, :, 0], dtype="bool"),
    }


class _ImageEncoder(Encoder):
    modality = "image"
    input_rank = 4
    input_kind = "float"
    input_description = _IMAGE_DESCRIPTION

    def _check_channels(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(
                f"{type(self).__name__} (image encoder) expects {_IMAGE_DESCRIPTION}, "
                f"got {input_shape[-1]} channels (input shape {tuple(input_shape)})."
            )


@register("cnn")
class CNNImageEncoder(_ImageEncoder):
    """A small convolutional image encoder, trained from scratch.

    Scales the `[0, 1]` images to `[-1, 1]`, then for each entry of `filters`
    runs a stage of two 3x3 convolutions (the first with stride 2), each
    followed by group normalisation and ReLU, then an optional dropout and a
    1x1 convolution to `output_dim`. Group rather than batch normalisation:
    on images that are mostly flat background (like the shapes data), batch
    statistics differ so much between batches that the moving averages used at
    inference broke held-out accuracy (0.99 train, 0.27 held out in a
    side-by-side run), and group norm does not depend on the batch at all. An `H x W` image gives a grid of
    `ceil(H / 2**n) x ceil(W / 2**n)` positions (`n = len(filters)`); any
    image size works, including a dynamic one (`keras.Input((None, None, 3))`).

    Args:
        output_dim: int. D, the width of the outputs.
        filters: list of ints. Channels of each stride-2 stage.
            Defaults to `[32, 64, 128]`.
        dropout: float. Dropout rate before the final 1x1 projection.
        pooling: "max" (default) or "avg": how `pooled` summarises the grid.
            Max pooling keeps small objects from being averaged away.
        detail_grid: bool. Also return `"detail_sequence"`: the grid before
            the last stage (twice as fine each way, the previous stage's
            channels), which a dual encoder's matching head reads for shape
            details the last grid has lost. Needs two stages or more.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.image import CNNImageEncoder
    encoder = CNNImageEncoder(output_dim=16, filters=[8, 16])
    out = encoder(np.random.rand(2, 32, 32, 3).astype("float32"))
    out["sequence"].shape, out["pooled"].shape  # (2, 64, 16), (2, 16)
    ```
    """

    def __init__(self, output_dim, filters=(32, 64, 128), dropout=0.0, pooling="max", detail_grid=False, **kwargs):
        super().__init__(output_dim=output_dim, **kwargs)
        name = type(self).__name__
        self.pooling = validation.one_of(f"{name}: pooling", pooling, POOLINGS)
        self.filters = filters = validation.positive_ints(f"{name}: filters", filters)
        self.dropout = validation.rate(f"{name}: dropout", dropout)
        self.detail_grid = validation.boolean(f"{name}: detail_grid", detail_grid)
        if self.detail_grid and len(filters) < 2:
            raise ValueError(f"{name}: detail_grid needs at least two stages (filters), got filters={list(filters)}.")

        self.convs = []
        self.norms = []
        for stage, width in enumerate(filters):
            for index, stride in enumerate((2, 1)):
                self.convs.append(keras.layers.Conv2D(
                    width, 3, strides=stride, padding="same", use_bias=False,
                    dtype=self.dtype_policy, name=f"stage{stage}_conv{index}",
                ))
                self.norms.append(keras.layers.GroupNormalization(
                    groups=math.gcd(width, 8), dtype=self.dtype_policy, name=f"stage{stage}_norm{index}",
                ))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
        self.projection = keras.layers.Conv2D(
            output_dim, 1, dtype=self.dtype_policy, name="projection"
        )

    def build(self, input_shape):
        self._check_channels(input_shape)
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        self.projection.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs * 2.0 - 1.0
        detail = None
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = ops.relu(norm(conv(x), training=training))
            if self.detail_grid and index == len(self.convs) - 3:  # the end of the stage before the last
                detail = x
        x = self.dropout_layer(x, training=training)
        outputs = _grid_outputs(self.projection(x), self.pooling)
        if detail is not None:
            outputs["detail_sequence"] = _grid_outputs(detail)["sequence"]
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update({"filters": list(self.filters), "dropout": self.dropout, "pooling": self.pooling,
                       "detail_grid": self.detail_grid})
        return config


@register("vit")
class ViTImageEncoder(_ImageEncoder):
    """A Vision Transformer trained from scratch, for one fixed image size.

    Scales the `[0, 1]` images to `[-1, 1]`, cuts them into
    `patch_size x patch_size` patches embedded by a strided convolution, adds
    a learned position embedding, and runs `num_layers` pre-norm Transformer
    blocks and a final layer normalisation. The sequence has one position
    per patch (no class token); `pooled` is their mean.

    Args:
        output_dim: int. D, the model width; must be divisible by `num_heads`.
        image_size: int or `(height, width)`. The input image size, each side
            divisible by `patch_size`. Images of another size are refused
            when the encoder is built.
        patch_size: int. Side of the square patches.
        num_layers: int. Number of Transformer blocks.
        num_heads: int. Attention heads per block.
        intermediate_dim: int or None. Width of the feed-forward layers;
            None means `4 * output_dim`.
        dropout: float. Dropout rate after the position embedding and inside
            the Transformer blocks.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.image import ViTImageEncoder
    encoder = ViTImageEncoder(output_dim=16, image_size=32, patch_size=8, num_heads=2)
    out = encoder(np.random.rand(2, 32, 32, 3).astype("float32"))
    out["sequence"].shape, out["pooled"].shape  # (2, 16, 16), (2, 16)
    ```
    """

    def __init__(
        self,
        output_dim,
        image_size,
        patch_size=8,
        num_layers=2,
        num_heads=4,
        intermediate_dim=None,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(output_dim=output_dim, **kwargs)
        name = type(self).__name__
        if isinstance(image_size, (list, tuple)):
            if len(image_size) != 2:
                raise ValueError(f"{name}: image_size must be an int or (height, width), got {image_size!r}.")
            height, width = (validation.positive_int(f"{name}: image_size", s) for s in image_size)
            image_size = (height, width)
        else:
            height = width = validation.positive_int(f"{name}: image_size", image_size)
        patch_size = validation.positive_int(f"{name}: patch_size", patch_size)
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"{name}: image_size {height}x{width} is not divisible by patch_size={patch_size}; "
                f"choose a patch_size that divides both sides (or resize the images)."
            )
        num_layers = validation.positive_int(f"{name}: num_layers", num_layers)
        num_heads = validation.positive_int(f"{name}: num_heads", num_heads)
        if output_dim % num_heads:
            raise ValueError(
                f"{name}: output_dim={output_dim} must be divisible by num_heads={num_heads}."
            )
        intermediate_dim = validation.positive_int(f"{name}: intermediate_dim", intermediate_dim, allow_none=True)
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = validation.rate(f"{name}: dropout", dropout)
        self._grid = (height // patch_size, width // patch_size)

        self.patch_embedding = keras.layers.Conv2D(
            output_dim, patch_size, strides=patch_size, padding="valid",
            dtype=self.dtype_policy, name="patch_embedding",
        )
        self.position_embedding = PositionEmbedding(
            sequence_length=self._grid[0] * self._grid[1], dtype=self.dtype_policy, name="position_embedding"
        )
        self.embedding_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="embedding_dropout")
        self.blocks = [
            TransformerEncoder(
                intermediate_dim=intermediate_dim or 4 * output_dim,
                num_heads=num_heads,
                dropout=self.dropout,
                activation="gelu",
                layer_norm_epsilon=1e-6,
                normalize_first=True,
                dtype=self.dtype_policy,
                name=f"block{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=1e-6, dtype=self.dtype_policy, name="final_norm"
        )

    def build(self, input_shape):
        self._check_channels(input_shape)
        expected = (self._grid[0] * self.patch_size, self._grid[1] * self.patch_size)
        got = tuple(input_shape[1:3])
        if got != expected:
            raise ValueError(
                f"{type(self).__name__} was configured for image_size={self.image_size!r} "
                f"({expected[0]}x{expected[1]}) but got images of size "
                f"{'x'.join('?' if s is None else str(s) for s in got)} (input shape {tuple(input_shape)}). "
                f"A ViT needs a fixed image size: resize the images to {expected[0]}x{expected[1]} "
                f"(and use keras.Input(({expected[0]}, {expected[1]}, 3))) or set image_size."
            )
        self.patch_embedding.build(input_shape)
        sequence_shape = (input_shape[0], self._grid[0] * self._grid[1], self.output_dim)
        self.position_embedding.build(sequence_shape)
        for block in self.blocks:
            block.build(sequence_shape)
        self.final_norm.build(sequence_shape)
        self.built = True

    def call(self, inputs, training=None):
        x = self.patch_embedding(inputs * 2.0 - 1.0)
        x = ops.reshape(x, (-1, self._grid[0] * self._grid[1], self.output_dim))
        x = x + self.position_embedding(x)
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.final_norm(x)
        return _grid_outputs(ops.reshape(x, (-1, self._grid[0], self._grid[1], self.output_dim)))

    def get_config(self):
        config = super().get_config()
        config.update({
            "image_size": list(self.image_size) if isinstance(self.image_size, tuple) else self.image_size,
            "patch_size": self.patch_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
        })
        return config


class _ApplicationImageEncoder(_ImageEncoder):
    """Shared code of the encoders built on a `keras.applications` backbone."""

    _family = None
    _variants = ()  # names of keras.applications constructors
    _default_variant = None

    def __init__(self, output_dim=None, variant=None, weights_path=None, trainable_backbone=True, **kwargs):
        name = type(self).__name__
        variant = self._default_variant if variant is None else variant
        if variant not in self._variants:
            raise ValueError(
                f"{name}: unknown {self._family} variant {variant!r}. Valid variants: {', '.join(self._variants)}."
            )
        validation.positive_int(f"{name}: output_dim", output_dim, allow_none=True)
        if weights_path is not None:
            weights_path = self._check_weights_path(weights_path)
        validation.boolean(f"{name}: trainable_backbone", trainable_backbone)

        # Random initialisation only; weights come from a local file, if any.
        backbone = getattr(keras.applications, variant)(include_top=False, weights=None)
        if weights_path is not None:
            try:
                backbone.load_weights(weights_path)
            except (ValueError, KeyError) as err:
                raise ValueError(
                    f"{name}: could not load {weights_path!r} into keras.applications.{variant}"
                    f"(include_top=False): {err}"
                ) from err
        backbone_dim = backbone.output.shape[-1]

        super().__init__(output_dim=backbone_dim if output_dim is None else output_dim, **kwargs)
        self.variant = variant
        self.weights_path = weights_path
        self.backbone_dim = backbone_dim
        self.backbone = backbone
        self.trainable_backbone = trainable_backbone
        self.projection = None
        if self.output_dim != backbone_dim:
            self.projection = keras.layers.Dense(self.output_dim, dtype=self.dtype_policy, name="projection")

    @property
    def trainable_backbone(self):
        """Whether the backbone trains; settable, e.g. to unfreeze it for fine-tuning."""
        return self.backbone.trainable

    @trainable_backbone.setter
    def trainable_backbone(self, value):
        self.backbone.trainable = bool(value)

    def _check_weights_path(self, weights_path):
        name = type(self).__name__
        if not isinstance(weights_path, (str, os.PathLike)):
            raise ValueError(f"{name}: weights_path must be a file path or None, got {weights_path!r}.")
        weights_path = os.fspath(weights_path)
        if not os.path.isfile(weights_path):
            raise ValueError(
                f"{name}: weights_path={weights_path!r} is not an existing file. kerasmm never downloads "
                f"weights: download the {self._family} weights file yourself (e.g. the `include_top=False` "
                f"'notop' file of keras.applications.{self._default_variant}) and pass its local path."
            )
        return weights_path

    def _preprocess(self, images):
        raise NotImplementedError

    def build(self, input_shape):
        self._check_channels(input_shape)
        if self.projection is not None:
            self.projection.build((input_shape[0], None, None, self.backbone_dim))
        self.built = True

    def call(self, inputs, training=None):
        grid = self.backbone(self._preprocess(inputs), training=training)
        if self.projection is not None:
            grid = self.projection(grid)
        return _grid_outputs(grid)

    def get_config(self):
        config = super().get_config()
        # A `.keras` file carries the weights itself, so the config describes
        # the architecture only and never needs the original weights file.
        config.update({
            "variant": self.variant,
            "weights_path": None,
            "trainable_backbone": self.trainable_backbone,
        })
        return config


@register("resnet")
class ResNetImageEncoder(_ApplicationImageEncoder):
    """A `keras.applications` ResNet backbone, randomly initialised or loaded from a local file.

    The `[0, 1]` images get the preprocessing the variant was trained with:
    caffe-style (RGB to BGR, 0-255, ImageNet mean subtracted) for ResNet v1,
    `[-1, 1]` for the V2 variants. The sequence is the final feature grid
    (1/32 of the image size, e.g. 7x7 for 224x224 images), projected to
    `output_dim` by a Dense layer unless `output_dim` is the backbone width
    (2048). Any image size of at least 32x32 works.

    Args:
        output_dim: int or None. D, the width of the outputs; None keeps the
            backbone width, 2048 (the config then records 2048).
        variant: str. One of "ResNet50", "ResNet101", "ResNet152",
            "ResNet50V2", "ResNet101V2", "ResNet152V2".
        weights_path: str or None. A local weights file for the
            `include_top=False` backbone of `variant` (a Keras 3
            `.weights.h5` file, or a legacy `.h5` such as
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`). kerasmm
            never downloads; "imagenet" is refused. `get_config` records None:
            a saved `.keras` model carries the weights itself.
        trainable_backbone: bool. False freezes the backbone (its batch
            normalisation then always runs in inference mode); the
            projection stays trainable. Also an attribute you can set later,
            e.g. to unfreeze the backbone for fine-tuning.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.image import ResNetImageEncoder
    encoder = ResNetImageEncoder(output_dim=32, trainable_backbone=False)
    out = encoder(np.random.rand(2, 64, 64, 3).astype("float32"))
    out["sequence"].shape, out["pooled"].shape  # (2, 4, 32), (2, 32)
    ```
    """

    _family = "ResNet"
    _variants = ("ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2")
    _default_variant = "ResNet50"
    # keras.applications.resnet.preprocess_input ("caffe" mode) means, BGR order.
    _CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, output_dim=None, variant="ResNet50", weights_path=None, trainable_backbone=True, **kwargs):
        super().__init__(
            output_dim=output_dim, variant=variant, weights_path=weights_path,
            trainable_backbone=trainable_backbone, **kwargs,
        )

    def _preprocess(self, images):
        if self.variant.endswith("V2"):
            return images * 2.0 - 1.0
        mean = ops.convert_to_tensor(self._CAFFE_MEAN_BGR, dtype=images.dtype)
        return ops.flip(images, axis=-1) * 255.0 - mean


@register("efficientnet")
class EfficientNetImageEncoder(_ApplicationImageEncoder):
    """A `keras.applications` EfficientNet backbone, randomly initialised or loaded from a local file.

    The backbone rescales and normalises internally, so the `[0, 1]` images
    are only scaled to the 0-255 range it expects. The sequence is the final
    feature grid (1/32 of the image size), projected to `output_dim` by a
    Dense layer unless `output_dim` is the backbone width (1280 for B0, B1
    and the V2 variants but V2B2/V2B3, up to 2560 for B7). Any image size of
    at least 32x32 works.

    Note: `keras.applications.EfficientNetB0`..`B7` add an extra per-channel
    rescaling only when built with `weights="imagenet"`; a model built with
    `weights=None` (as here, and as keras.applications itself does for a
    weights *file*) lacks it, so the official ImageNet B0..B7 weights loaded
    from a file see inputs scaled slightly differently from training. The
    V2 variants are not affected.

    Args:
        output_dim: int or None. D, the width of the outputs; None keeps the
            backbone width (the config then records it).
        variant: str. "EfficientNetB0".."EfficientNetB7",
            "EfficientNetV2B0".."EfficientNetV2B3", "EfficientNetV2S",
            "EfficientNetV2M" or "EfficientNetV2L".
        weights_path: str or None. As for `ResNetImageEncoder` (a legacy
            file here is e.g. `efficientnetb0_notop.h5`).
        trainable_backbone: bool. As for `ResNetImageEncoder`.

    Example:
    ```python
    import numpy as np
    from kerasmm.encoders.image import EfficientNetImageEncoder
    encoder = EfficientNetImageEncoder(output_dim=32, variant="EfficientNetB0")
    out = encoder(np.random.rand(2, 64, 64, 3).astype("float32"))
    out["sequence"].shape, out["pooled"].shape  # (2, 4, 32), (2, 32)
    ```
    """

    _family = "EfficientNet"
    _variants = tuple(f"EfficientNetB{i}" for i in range(8)) + tuple(
        f"EfficientNetV2{s}" for s in ("B0", "B1", "B2", "B3", "S", "M", "L")
    )
    _default_variant = "EfficientNetB0"

    def __init__(
        self, output_dim=None, variant="EfficientNetB0", weights_path=None, trainable_backbone=True, **kwargs
    ):
        super().__init__(
            output_dim=output_dim, variant=variant, weights_path=weights_path,
            trainable_backbone=trainable_backbone, **kwargs,
        )

    def _preprocess(self, images):
        return images * 255.0
