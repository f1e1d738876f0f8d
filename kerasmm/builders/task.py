"""Shared base of kerasmm's task models (keras_hub `Task` + restorable compile + multi-worker fit)."""

import keras
import keras_hub
import tensorflow as tf

# Set (to True) on a dataset whose batches are already model inputs: the
# pipelines of `kerasmm.distribute` map the preprocessor themselves, so
# `fit`/`evaluate`/`predict` must not run it a second time.
MODEL_READY_ATTRIBUTE = "_kerasmm_model_ready"


def is_model_ready(data):
    """Whether `data`'s batches go to the model as they are: a distributed dataset, or one marked ready."""
    return isinstance(data, tf.distribute.DistributedDataset) or getattr(data, MODEL_READY_ATTRIBUTE, False) is True


def in_multi_worker_mode(strategy):
    """True under a `MultiWorkerMirroredStrategy` spanning several workers (the case keras#20585 breaks).

    Example:
    ```python
    import tensorflow as tf
    from kerasmm.distribute import in_multi_worker_mode
    in_multi_worker_mode(tf.distribute.get_strategy())   # False: one process
    ```
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


class ZooTask(keras_hub.models.Task):
    """A keras_hub `Task` whose custom `compile` defaults survive a `.keras` round trip.

    keras_hub tasks override `compile` to supply defaults, which makes Keras
    skip restoring the saved compile settings (and the optimizer state) when a
    `.keras` file is loaded. This base restores them.

    It also makes `fit`, `evaluate` and `predict` work under
    `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585, see
    below) and take a `tf.distribute.DistributedDataset` (e.g. from
    `kerasmm.distribute.distribute_dataset`), whose batches go to the model
    as they are: preprocess inside the dataset function.
    """

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    # --- Model-ready input: skip keras_hub's preprocessing pipeline ---------
    # keras_hub's `fit` maps the preprocessor over `x`, which a distributed
    # dataset cannot take (it is not a `tf.data.Dataset`) and which a
    # pipeline that already preprocessed must not get twice. Those go
    # straight to `keras.Model`'s methods; everything else is unchanged.

    def fit(self, x=None, *args, **kwargs):
        if isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            # Keras warns that its default shuffle=True does not apply to datasets (they shuffle themselves).
            kwargs.setdefault("shuffle", False)
        if not is_model_ready(x):
            return super().fit(x, *args, **kwargs)
        validation_data = kwargs.get("validation_data")
        if validation_data is not None and not is_model_ready(validation_data):
            if not isinstance(validation_data, tf.data.Dataset):
                raise ValueError(
                    "With model-ready training data (a distributed or kerasmm.distribute dataset), pass "
                    "validation_data as a tf.data.Dataset of raw (features, targets) or as model-ready data "
                    f"too; got {type(validation_data).__name__}."
                )
            kwargs["validation_data"] = validation_data.map(
                self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE
            ).prefetch(tf.data.AUTOTUNE)
        return keras.Model.fit(self, x, *args, **kwargs)

    @property
    def evaluating(self):
        """True while `evaluate` runs (and traces its test step): for evaluation-only metric work."""
        return getattr(self, "_evaluating", False)

    def evaluate(self, x=None, *args, **kwargs):
        self._evaluating = True
        try:
            if is_model_ready(x):
                return keras.Model.evaluate(self, x, *args, **kwargs)
            return super().evaluate(x, *args, **kwargs)
        finally:
            self._evaluating = False

    def predict(self, x=None, *args, **kwargs):
        if is_model_ready(x):
            return keras.Model.predict(self, x, *args, **kwargs)
        return super().predict(x, *args, **kwargs)

    # --- MultiWorkerMirroredStrategy: keras-team/keras#20585 ----------------
    # Keras 3.15's TensorFlow trainer has two branches taken only when a
    # MultiWorkerMirroredStrategy spans several workers, and both fail:
    # 1. `fit`/`evaluate` build the model from the first batch, reduced with
    #    `strategy.reduce("MEAN", batch, axis=None)`. MWMS's reduce takes one
    #    tensor, not a nest (MirroredStrategy's maps over nests), hence
    #    "Attempt to convert a value ({'image': PerReplica:{...}}) with an
    #    unsupported type (<class 'dict'>) to a Tensor". The build needs only
    #    shapes and dtypes: this replica's local batch has them.
    # 2. `reduce_per_replica` reduces each step's logs with
    #    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar
    #    loss and metrics ("Invalid reduction dimension 0 for input with 0
    #    dimensions"). Given a leading axis of 1, that reduce is the mean over
    #    replicas, which is what Keras computes for one worker.
    # Outside multi-worker mode both overrides change nothing.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and in_multi_worker_mode(getattr(self, "_distribute_strategy", None)):
            strategy = self._distribute_strategy
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        return self._logs_for_replica_mean(super().train_step(data))

    def test_step(self, data):
        return self._logs_for_replica_mean(super().test_step(data))

    def _logs_for_replica_mean(self, logs):
        if not in_multi_worker_mode(self.distribute_strategy):
            return logs
        return keras.tree.map_structure(lambda v: v if v is None else tf.expand_dims(v, 0), logs)
