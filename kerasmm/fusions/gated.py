"""Gated multimodal unit fusion."""

import keras
from keras import ops

from kerasmm import validation
from kerasmm.fusions import register
from kerasmm.fusions.base import Fusion
from kerasmm.layers.masked_ops import masked_softmax


@register("gated")
class GatedFusion(Fusion):
    """The gated multimodal unit (Arevalo et al., 2017) for N modalities.

    Each modality is mapped to `h_m = tanh(W_m x_m)` of width `output_dim`.
    A gate layer reads the concatenation of all inputs (absent ones zeroed)
    and produces one `output_dim`-vector of logits per modality; a softmax
    across the present modalities, per unit, gives gates `z_m` (absent
    modalities get 0), and the output is `sum_m z_m * h_m`. With two
    modalities this is the original unit, `z * h_1 + (1 - z) * h_2` with a
    sigmoid gate. The returned weight of a modality is its gate averaged over
    the `output_dim` units. An example with no modality present gives zeros.

    Args:
        output_dim: positive int, the width of the fused output.
        modalities, modality_dropout, seed: see `kerasmm.fusions.Fusion`.

    Example:
    ```python
    import numpy as np
    from kerasmm.fusions.gated import GatedFusion
    fusion = GatedFusion(output_dim=4)
    fused, weights = fusion(
        {"image": np.ones((2, 8), "float32"), "text": np.ones((2, 6), "float32")},
        return_weights=True,
    )
    fused.shape  # (2, 4); weights["image"] + weights["text"] == 1
    ```
    """

    def __init__(self, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = validation.positive_int("GatedFusion: output_dim", output_dim)

    def build(self, input_shape):
        features, _, _ = self.split_inputs(input_shape)
        self._fused_modalities = list(features)
        self.hidden = []
        total_width = 0
        for m, shape in features.items():
            dense = keras.layers.Dense(
                self.output_dim, activation="tanh", name=f"{m}_hidden", dtype=self.dtype_policy
            )
            dense.build(tuple(shape))
            self.hidden.append(dense)
            total_width += int(shape[-1])
        self.gate = keras.layers.Dense(
            self.output_dim * len(features), name="gate", dtype=self.dtype_policy
        )
        self.gate.build((None, total_width))

    def fuse(self, features, present, padding_masks, training=None):
        num = len(features)
        keep = present > 0  # [B, M]
        inputs, hidden = [], []
        for i, x in enumerate(features.values()):
            x = ops.where(keep[:, i : i + 1], x, ops.zeros_like(x))
            inputs.append(x)
            hidden.append(self.hidden[i](x))
        joint = ops.concatenate(inputs, axis=-1) if num > 1 else inputs[0]
        logits = ops.reshape(self.gate(joint), (-1, num, self.output_dim))  # [B, M, D]
        gates = masked_softmax(logits, keep[:, :, None], axis=1)
        fused = ops.sum(gates * ops.stack(hidden, axis=1), axis=1)
        return fused, ops.mean(gates, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"output_dim": self.output_dim})
        return config
