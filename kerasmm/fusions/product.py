"""Element-wise product fusion."""

from keras import ops

from kerasmm.fusions import register
from kerasmm.fusions.base import ProjectedFusion


@register("product")
class ProductFusion(ProjectedFusion):
    """The element-wise product of the present modalities' features.

    Absent modalities act as 1 (they leave the product unchanged); an example
    with no modality present gives zeros. Element-wise combination needs every
    modality to have the same width; set `projection_dim` to project each
    modality with its own `Dense` first. The returned weights are equal over
    the present modalities.

    Args: as for `WeightedSumFusion` (`projection_dim` projects before the product).

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

    same_width = True

    def fuse(self, features, present, padding_masks, training=None):
        fused = None
        for i, x in enumerate(self.projected(features)):
            term = ops.where(present[:, i : i + 1] > 0, x, ops.ones_like(x))
            fused = term if fused is None else fused * term
        any_present = ops.sum(present, axis=1, keepdims=True) > 0
        fused = ops.where(any_present, fused, ops.zeros_like(fused))
        return fused, self.normalized(present)
