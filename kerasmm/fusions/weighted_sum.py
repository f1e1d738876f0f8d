"""Learned weighted-sum fusion."""

from keras import ops

from kerasmm.fusions import register
from kerasmm.fusions.base import ProjectedFusion
from kerasmm.layers.masked_ops import masked_softmax


@register("weighted_sum")
class WeightedSumFusion(ProjectedFusion):
    """A learned convex combination of the modalities: `sum_m alpha_m * x_m`.

    Generalises `X = alpha * X_image + beta * X_text` to N modalities. Each
    modality has one learnable logit (initialised to 0, so all modalities
    start with equal weight); per example, `alpha` is the softmax of the
    logits over the *present* modalities only, so absent modalities get
    weight 0 and the rest are renormalised. The returned weights are these
    per-example `alpha`.

    Element-wise combination needs every modality to have the same width;
    set `projection_dim` to project each modality with its own `Dense` first.

    Args:
        projection_dim: optional positive int; width of a per-modality
            `Dense` projection applied before the sum.
        modalities, modality_dropout, seed: see `kerasmm.fusions.Fusion`.

    Example:
    ```python
    import numpy as np
    from kerasmm.fusions.weighted_sum import WeightedSumFusion
    fusion = WeightedSumFusion()
    fused, weights = fusion(
        {
            "image": np.ones((2, 8), "float32"),
            "text": np.zeros((2, 8), "float32"),
            "text_mask": np.array([1.0, 0.0], "float32"),
        },
        return_weights=True,
    )
    # weights["image"] == [0.5, 1.0]; weights["text"] == [0.5, 0.0]
    ```
    """

    same_width = True

    def build(self, input_shape):
        super().build(input_shape)
        self.modality_logits = self.add_weight(
            shape=(len(self._fused_modalities),), initializer="zeros", name="modality_logits"
        )

    def fuse(self, features, present, padding_masks, training=None):
        logits = ops.cast(self.modality_logits, present.dtype)[None, :]
        alpha = masked_softmax(logits, present > 0)
        fused = None
        for i, x in enumerate(self.projected(features)):
            keep = present[:, i : i + 1] > 0
            term = ops.where(keep, x, ops.zeros_like(x)) * ops.cast(alpha[:, i : i + 1], x.dtype)
            fused = term if fused is None else fused + term
        return fused, alpha

    def modality_weights(self):
        """The learned α per modality when every modality is present, as floats."""
        alpha = ops.convert_to_numpy(ops.softmax(ops.cast(self.modality_logits, "float32")))
        return {m: float(a) for m, a in zip(self._fused_modalities, alpha)}
