"""The mark on a dataset whose batches are already model inputs.

The pipelines of `kerasmm.distribute` map the preprocessor themselves, so a
task's `fit` / `evaluate` / `predict` must not run it a second time.
"""

import tensorflow as tf

MODEL_READY_ATTRIBUTE = "_kerasmm_model_ready"


def is_model_ready(data):
    """Whether `data`'s batches go to the model as they are: a distributed dataset, or one marked ready."""
    return isinstance(data, tf.distribute.DistributedDataset) or getattr(data, MODEL_READY_ATTRIBUTE, False) is True


def mark_model_ready(dataset):
    """`dataset`, marked as holding model inputs (see `is_model_ready`)."""
    setattr(dataset, MODEL_READY_ATTRIBUTE, True)
    return dataset
