"""Token-level losses for sequence outputs."""

import keras
from keras import ops

from kerasmm import validation


@keras.saving.register_keras_serializable(package="kerasmm")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer targets against logits, with optional label smoothing.

    Keras' `SparseCategoricalCrossentropy` has no `label_smoothing` and the
    dense one would need `[B, L, V]` one-hot targets; this computes
    `(1 - ε)·(-log p[y]) + ε·mean_v(-log p[v])` from the logits directly,
    in float32 whatever the compute dtype. Padding is masked with the
    sample weights the captioner's preprocessor emits.

    Example:
    ```python
    import numpy as np
    from kerasmm.losses.sequence import SmoothedSparseCrossentropy
    loss = SmoothedSparseCrossentropy(label_smoothing=0.1)
    loss(np.array([[1, 2]]), np.zeros((1, 2, 5), "float32"), sample_weight=np.array([[1.0, 0.0]]))
    ```
    """

    def __init__(self, label_smoothing=0.0, name="smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = validation.rate("label_smoothing", label_smoothing)

    def call(self, y_true, y_pred):
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        y_true = ops.cast(y_true, "int32")
        target = -ops.take_along_axis(log_probs, y_true[..., None], axis=-1)[..., 0]
        if not self.label_smoothing:
            return target
        uniform = -ops.mean(log_probs, axis=-1)
        return (1.0 - self.label_smoothing) * target + self.label_smoothing * uniform

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
