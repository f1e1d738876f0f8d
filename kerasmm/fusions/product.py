"""Element-wise product fusion."""

import keras
from keras import ops

from kerasmm.fusions import register
from kerasmm.fusions.base import Fusion
from kerasmm.fusions.concat import _check_modalities


@register("product")
class ProductFusion(Fusion):
    """The element-wise product of the present modalities' features.

    Absent modalities act as 1 (they leave the product unchanged); an example
    with no modality present gives zeros. Element-wise combination needs every
    modality to have the same width; set `projection_dim` to project each
    modality with its own `Dense` first. The returned weights are equal over
    the present modalities.

    Args:
        projection_dim: optional positive int; width of a per-modality
            `Dense` projection applied before the product.
        modalities, modality_dropout, seed: see `kerasmm.fusions.Fusion`.

    Example:
    ```python
    import numpy as np
    from kerasmm.fusions.product import ProductFusion
    fusion = ProductFusion()
    fused = fusion({
        "image": np.full((2, 8), 2.0, "float32"),
        "text": np.full((2, 8), 3.0, "float32"),
        "text_mask": np.array([1.0, 0.0], "float32"),
    })
    # fused[0] is all 6.0, fused[1] all 2.0 (text absent)
    ```
    """

    def __init__(self, projection_dim=None, **kwargs):
        super().__init__(**kwargs)
        if projection_dim is not None and (
            isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim <= 0
        ):
            raise ValueError(
                f"ProductFusion: projection_dim must be None or a positive int, got {projection_dim!r}."
            )
        self.projection_dim = projection_dim

    def build(self, input_shape):
        features, _, _ = self.split_inputs(input_shape)
        self._fused_modalities = list(features)
        self.projections = []
        if self.projection_dim is None:
            self.check_same_width(
                type(self).__name__, features
            )
        else:
            for m, shape in features.items():
                dense = keras.layers.Dense(
                    self.projection_dim, name=f"{m}_projection", dtype=self.dtype_policy
                )
                dense.build(tuple(shape))
                self.projections.append(dense)

    def fuse(self, features, present, padding_masks, training=None):
        _check_modalities(self, features)
        fused = None
        for i, x in enumerate(features.values()):
            if self.projections:
                x = self.projections[i](x)
            keep = present[:, i : i + 1] > 0
            term = ops.where(keep, x, ops.ones_like(x))
            fused = term if fused is None else fused * term
        any_present = ops.sum(present, axis=1, keepdims=True) > 0
        fused = ops.where(any_present, fused, ops.zeros_like(fused))
        return fused, self.normalized(present)

    def get_config(self):
        config = super().get_config()
        config.update({"projection_dim": self.projection_dim})
        return config
