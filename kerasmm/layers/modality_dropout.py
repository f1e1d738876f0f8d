"""Modality dropout: hide whole modalities of training examples so a model learns from any subset."""

import keras
from keras import ops


def presence_matrix(masks, batch=None, dtype="float32", threshold=0.0):
    """`[B, M]` presence flags (1.0 = present) from one mask per modality, 1.0 where `mask > threshold`.

    A mask may be None, meaning "always present" (then `batch` is needed);
    when `batch` is given every mask is first reshaped to `[batch]`, so `[B, 1]`
    masks are accepted.

    Example:
    ```python
    import numpy as np
    from kerasmm.layers import presence_matrix
    presence_matrix([np.array([1.0, 0.0]), None], batch=2)
    # [[1., 1.], [0., 1.]]
    ```
    """
    columns = []
    for mask in masks:
        if mask is None:
            columns.append(ops.ones((batch,), dtype=dtype))
            continue
        mask = ops.cast(mask, "float32")
        if batch is not None:
            mask = ops.reshape(mask, (batch,))
        columns.append(ops.cast(mask > threshold, dtype))
    return ops.stack(columns, axis=1)


def drop_modalities(present, rate, seed_generator, training=True):
    """`present` `[B, M]` (1 = modality given) with each 1 dropped at `rate`; never drops a row's last one.

    The one modality-dropout step of kerasmm, used by `ModalityDropout` and by
    every fusion (`Fusion.presence`). Returns `present` unchanged, drawing no
    random numbers, when `training` is false or `rate` is 0. A row that would
    lose every modality keeps all it had; a row with none stays empty.

    Example:
    ```python
    import keras
    import numpy as np
    from kerasmm.layers import drop_modalities
    present = np.ones((4, 3), "float32")
    drop_modalities(present, 0.5, keras.random.SeedGenerator(1))  # >= one 1.0 per row
    ```
    """
    if not training or rate <= 0.0:
        return present
    keep = keras.random.uniform(ops.shape(present), seed=seed_generator) >= rate
    dropped = present * ops.cast(keep, present.dtype)
    any_left = ops.sum(dropped, axis=1, keepdims=True) > 0
    return ops.where(any_left, dropped, present)


@keras.saving.register_keras_serializable(package="kerasmm")
class ModalityDropout(keras.layers.Layer):
    """Drops presence flags `[B]` of several modalities while training, keeping at least one per example.

    Except with `drop_all_rate`, which also hides all of them at once.

    Args:
        rate: float in [0, 1), the chance each present modality is hidden.
        seed: int seed.
        drop_all_rate: float in [0, 1), the chance an example loses every
            modality at once (after `rate`'s draw), for a model that must
            also work with none of them (a captioner writing from its
            prompt alone).

    Example:
    ```python
    import numpy as np
    from kerasmm.layers import ModalityDropout
    layer = ModalityDropout(rate=0.5, seed=1)
    masks = layer([np.ones(4, "float32"), np.ones(4, "float32")], training=True)
    ```
    """

    def __init__(self, rate=0.0, seed=None, drop_all_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("rate", rate), ("drop_all_rate", drop_all_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"ModalityDropout: {name} must be a float in [0, 1), got {value!r}.")
        self.rate = float(rate)
        self.drop_all_rate = float(drop_all_rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, masks, training=None):
        present = presence_matrix(masks, threshold=0.5)
        present = drop_modalities(present, self.rate, self.seed_generator, training=training)
        if training and self.drop_all_rate > 0.0:
            keep_any = keras.random.uniform(ops.shape(present)[:1], seed=self.seed_generator) >= self.drop_all_rate
            present = present * ops.cast(keep_any, present.dtype)[:, None]
        return [present[:, i] for i in range(len(masks))]

    def compute_output_spec(self, masks, training=None):
        return [keras.KerasTensor(m.shape, dtype="float32") for m in masks]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "drop_all_rate": self.drop_all_rate}
