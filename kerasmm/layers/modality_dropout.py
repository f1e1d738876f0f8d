"""Modality dropout: hide whole modalities of training examples so a model learns from any subset."""

import keras
from keras import ops


def drop_modalities(present, rate, seed_generator):
    """`present` `[B, M]` (1 = modality given) with each 1 dropped at `rate`; never drops a row's last one."""
    keep = keras.random.uniform(ops.shape(present), seed=seed_generator) >= rate
    dropped = present * ops.cast(keep, present.dtype)
    any_left = ops.sum(dropped, axis=1, keepdims=True) > 0
    return ops.where(any_left, dropped, present)


@keras.saving.register_keras_serializable(package="kerasmm")
class ModalityDropout(keras.layers.Layer):
    """Drops presence flags `[B]` of several modalities while training, keeping at least one per example.

    Args:
        rate: float in [0, 1), the chance each present modality is hidden.
        seed: int seed.

    Example:
    ```python
    import numpy as np
    from kerasmm.layers import ModalityDropout
    layer = ModalityDropout(rate=0.5, seed=1)
    masks = layer([np.ones(4, "float32"), np.ones(4, "float32")], training=True)
    ```
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"ModalityDropout: rate must be a float in [0, 1), got {rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, masks, training=None):
        present = ops.stack([ops.cast(ops.cast(m, "float32") > 0.5, "float32") for m in masks], axis=1)
        if training and self.rate > 0.0:
            present = drop_modalities(present, self.rate, self.seed_generator)
        return [present[:, i] for i in range(len(masks))]

    def compute_output_spec(self, masks, training=None):
        return [keras.KerasTensor(m.shape, dtype="float32") for m in masks]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
