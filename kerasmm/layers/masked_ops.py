"""Masked reductions shared by encoders and fusions: a mean over real positions, a softmax over kept entries."""

import keras
from keras import ops


def masked_mean(sequence, mask):
    """Mean of `sequence` `[B, T, D]` over the positions where `mask` `[B, T]` is true.

    `mask` may be bool or numeric (non-zero = real position). A row with no
    real position gives zeros, never NaN.

    Example:
    ```python
    import numpy as np
    from kerasmm.layers import masked_mean
    x = np.arange(12, dtype="float32").reshape(2, 3, 2)
    masked_mean(x, np.array([[True, True, False], [False, False, False]]))
    # [[1., 2.], [0., 0.]]
    ```
    """
    weights = ops.cast(mask, sequence.dtype)[..., None]
    total = ops.sum(sequence * weights, axis=1)
    count = ops.maximum(ops.sum(weights, axis=1), ops.cast(1.0, sequence.dtype))
    return total / count


def masked_softmax(logits, keep, axis=-1):
    """Softmax of `logits` along `axis` over the entries where `keep` (bool, broadcastable) holds.

    Entries not kept get exactly 0; a slice with nothing kept gives all zeros
    (never NaN). Works in float16: the fill value for dropped entries fits it.

    Example:
    ```python
    import numpy as np
    from kerasmm.layers import masked_softmax
    logits = np.zeros((2, 3), "float32")
    masked_softmax(logits, np.array([[True, True, False], [False, False, False]]))
    # [[0.5, 0.5, 0.], [0., 0., 0.]]
    ```
    """
    very_negative = -3e4 if keras.backend.standardize_dtype(logits.dtype) == "float16" else -1e9
    masked = ops.where(keep, logits, ops.cast(very_negative, logits.dtype))
    masked = masked - ops.stop_gradient(ops.max(masked, axis=axis, keepdims=True))
    exp = ops.exp(masked) * ops.cast(keep, logits.dtype)
    total = ops.sum(exp, axis=axis, keepdims=True)  # >= 1 wherever something is kept
    return exp / ops.where(total > 0, total, ops.ones_like(total))
