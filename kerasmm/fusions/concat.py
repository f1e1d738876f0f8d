"""Concatenation fusion."""

import keras
from keras import ops

from kerasmm.fusions import register
from kerasmm.fusions.base import Fusion


@register("concat")
class ConcatFusion(Fusion):
    """Concatenates the pooled features of the present modalities.

    Absent modalities (mask 0) contribute zeros in their slot, so the output
    width is fixed: the sum of the input widths, or `M * projection_dim` when
    `projection_dim` is set (each modality first goes through its own
    `Dense(projection_dim)`). Modalities are concatenated in sorted-name order
    (or the order of `modalities` when given). The returned weights are equal
    over the present modalities.

    Args:
        projection_dim: optional positive int; width of a per-modality
            `Dense` projection applied before concatenating.
        modalities, modality_dropout, seed: see `kerasmm.fusions.Fusion`.

    Example:
    ```python
    import numpy as np
    from kerasmm.fusions.concat import ConcatFusion
    fusion = ConcatFusion(projection_dim=4)
    fused = fusion({
        "image": np.ones((2, 8), "float32"),
        "text": np.ones((2, 6), "float32"),
        "text_mask": np.array([1.0, 0.0], "float32"),
    })
    fused.shape  # (2, 8)
    ```
    """

    def __init__(self, projection_dim=None, **kwargs):
        super().__init__(**kwargs)
        if projection_dim is not None and (
            isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim <= 0
        ):
            raise ValueError(
                f"ConcatFusion: projection_dim must be None or a positive int, got {projection_dim!r}."
            )
        self.projection_dim = projection_dim

    def build(self, input_shape):
        features, _, _ = self.split_inputs(input_shape)
        self._fused_modalities = list(features)
        self.projections = []
        if self.projection_dim is not None:
            for m, shape in features.items():
                dense = keras.layers.Dense(
                    self.projection_dim, name=f"{m}_projection", dtype=self.dtype_policy
                )
                dense.build(tuple(shape))
                self.projections.append(dense)

    def fuse(self, features, present, padding_masks, training=None):
        _check_modalities(self, features)
        parts = []
        for i, x in enumerate(features.values()):
            if self.projections:
                x = self.projections[i](x)
            keep = present[:, i : i + 1] > 0
            parts.append(ops.where(keep, x, ops.zeros_like(x)))
        fused = ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        return fused, self.normalized(present)

    def get_config(self):
        config = super().get_config()
        config.update({"projection_dim": self.projection_dim})
        return config


def _check_modalities(layer, features):
    """Refuse a call whose modalities differ from those the layer was built for."""
    built = getattr(layer, "_fused_modalities", None)
    if built is not None and list(features) != built:
        raise ValueError(
            f"{type(layer).__name__} was built for modalities {built} but was called with "
            f"{list(features)}; call it on the same modalities every time."
        )
