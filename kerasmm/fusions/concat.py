"""Concatenation fusion."""

from keras import ops

from kerasmm.fusions import register
from kerasmm.fusions.base import ProjectedFusion


@register("concat")
class ConcatFusion(ProjectedFusion):
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

    def fuse(self, features, present, padding_masks, training=None):
        parts = [
            ops.where(present[:, i : i + 1] > 0, x, ops.zeros_like(x))
            for i, x in enumerate(self.projected(features))
        ]
        fused = ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        return fused, self.normalized(present)
