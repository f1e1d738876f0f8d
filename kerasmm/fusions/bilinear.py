"""Low-rank bilinear (MFB) fusion."""

import keras
from keras import ops

from kerasmm import validation
from kerasmm.fusions import register
from kerasmm.fusions.base import Fusion


@register("low_rank_bilinear")
class LowRankBilinearFusion(Fusion):
    """Multi-modal factorized bilinear pooling (MFB, Yu et al., 2017) for N modalities.

    Each modality is projected by its own `Dense` to `output_dim * factor`;
    the projections of the present modalities are multiplied element-wise
    (absent modalities act as 1), dropout is applied to the product (as in
    MFB), the result is sum-pooled over consecutive groups of `factor` to
    `output_dim`, then passed through a signed square root and L2
    normalisation. An example with no modality present gives zeros. The
    returned weights are equal over the present modalities.

    Args:
        output_dim: positive int, the width of the fused output.
        factor: positive int, the rank `k` of the factorisation (default 5).
        dropout: float in [0, 1), dropout rate on the expanded product.
        modalities, modality_dropout, seed: see `kerasmm.fusions.Fusion`.

    Example:
    ```python
    import numpy as np
    from kerasmm.fusions.bilinear import LowRankBilinearFusion
    fusion = LowRankBilinearFusion(output_dim=4, factor=3)
    fused = fusion({"image": np.ones((2, 8), "float32"), "text": np.ones((2, 6), "float32")})
    fused.shape  # (2, 4), each row of unit L2 norm
    ```
    """

    def __init__(self, output_dim, factor=5, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = validation.positive_int("LowRankBilinearFusion: output_dim", output_dim)
        self.factor = validation.positive_int("LowRankBilinearFusion: factor", factor)
        self.dropout = validation.rate("LowRankBilinearFusion: dropout", dropout)

    def build(self, input_shape):
        features, _, _ = self.split_inputs(input_shape)
        self._fused_modalities = list(features)
        self.projections = []
        for m, shape in features.items():
            dense = keras.layers.Dense(
                self.output_dim * self.factor, name=f"{m}_projection", dtype=self.dtype_policy
            )
            dense.build(tuple(shape))
            self.projections.append(dense)
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=self.seed, dtype=self.dtype_policy)

    def fuse(self, features, present, padding_masks, training=None):
        product = None
        for i, x in enumerate(features.values()):
            z = self.projections[i](x)
            z = ops.where(present[:, i : i + 1] > 0, z, ops.ones_like(z))
            product = z if product is None else product * z
        any_present = ops.sum(present, axis=1, keepdims=True) > 0
        product = ops.where(any_present, product, ops.zeros_like(product))
        product = self.dropout_layer(product, training=training)
        pooled = ops.sum(ops.reshape(product, (-1, self.output_dim, self.factor)), axis=-1)
        # Signed square root and L2 normalisation in float32, where the
        # epsilons (which keep values and gradients finite at 0) are representable.
        pooled = ops.cast(pooled, "float32")
        pooled = ops.sign(pooled) * ops.sqrt(ops.abs(pooled) + 1e-12)
        norm = ops.sqrt(ops.maximum(ops.sum(ops.square(pooled), axis=-1, keepdims=True), 1e-12))
        return ops.cast(pooled / norm, self.compute_dtype), self.normalized(present)

    def get_config(self):
        config = super().get_config()
        config.update({"output_dim": self.output_dim, "factor": self.factor, "dropout": self.dropout})
        return config
