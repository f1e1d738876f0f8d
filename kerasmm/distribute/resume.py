"""`fit_resumable`: `model.fit` that, killed at any step and started again, trains each step exactly once.

Keras's `BackupAndRestore` reruns an interrupted epoch from its first batch.
`fit_resumable` instead checkpoints, every `save_every` steps and at the end
of every epoch, the model's variables (dropout seed states included), the
optimizer's (its `iterations` is the global step) and the position in the
input (passes and batches read, replayed on resume: see
`kerasmm.distribute.owned_input`). Run again with the same arguments it restores the newest
checkpoint that reads back intact (falling back past a corrupt one with a
warning), finishes the interrupted epoch with the batches that were left and
goes on, so the run ends after exactly `epochs × steps_per_epoch` optimizer
updates with the weights of an uninterrupted run (bit for bit on CPU, or
with `tf.config.experimental.enable_op_determinism()`).

It stops at the first NaN or Inf loss (or non-finite weights at a save)
with a `NonFiniteLossError` naming the step, and saves nothing after the last
good step, so the newest checkpoint is the last good one.

Example:
```python
import tempfile
import kerasmm
directory = tempfile.mkdtemp()
model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
dataset = kerasmm.data.shapes(num_examples=64, batch_size=8, shuffle=True)
kerasmm.distribute.fit_resumable(model, dataset, epochs=2, directory=directory, save_every=4, verbose=0)
assert int(model.optimizer.iterations) == 2 * 8
# Killed part way, the same call would have resumed; finished, it returns at once:
kerasmm.distribute.fit_resumable(model, dataset, epochs=2, directory=directory, save_every=4)
```
"""

import functools
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from kerasmm import validation
from kerasmm.backend_compat import print_msg
from kerasmm.distribute.checkpointing import CheckpointStore
from kerasmm.distribute.owned_input import OwnedBatches, OwnedBatchesAdapter

logger = logging.getLogger("kerasmm.distribute")

# `fit` arguments that describe the data, which `fit_resumable` owns.
_DATA_ARGUMENTS = ("x", "y", "batch_size", "sample_weight", "shuffle", "class_weight", "validation_split",
                   "initial_epoch")


class NonFiniteLossError(FloatingPointError):
    """Training hit a NaN or Inf loss (or non-finite weights) at global step `step`.

    `checkpoint` is the newest checkpoint, the last good one (None if none
    was written yet), which the same `fit_resumable` call resumes from; the
    model in memory keeps the non-finite weights. `history` is the
    `History` of the stopped `fit`.
    """

    def __init__(self, message, step, value, checkpoint, history=None):
        super().__init__(message)
        self.step = step
        self.value = value
        self.checkpoint = checkpoint
        self.history = history


def fit_resumable(model, dataset, epochs=1, *, directory, steps_per_epoch=None, save_every=100, keep=3,
                  callbacks=None, verbose="auto", **fit_kwargs):
    """Fit `model` on `dataset` for `epochs`, resumable after a kill at any step; returns the `History`.

    - `model`: compiled and built, with a fresh optimizer (`iterations` 0)
      unless `directory` holds its checkpoints. keras_hub tasks get their
      preprocessor mapped over `dataset`, as their `fit` does.
    - `dataset`: a batched `tf.data.Dataset` of `(x, y)`; an epoch is
      `steps_per_epoch` batches (default: the dataset's length) and runs
      across the end of the data into the next pass where it must.
    - `directory`: where the `ckpt-<step>` checkpoints go, written every
      `save_every` steps and at the end of each epoch; the newest `keep`
      stay (None: all). The same call later resumes from there; a run that
      had finished returns at once with an empty `History`.
    - `callbacks`, `verbose` and other `fit` arguments (`validation_data`,
      ...) go to `fit`. After a resume the `History` starts at the resumed
      epoch, whose logs cover the steps run since; `CSVLogger`s are switched
      to append.

    Any strategy: build the model in its scope. A batch is split over the
    replicas as `fit` splits it. Under a multi-worker strategy every worker
    runs the whole input pipeline (so that all are at the same position),
    the chief writes the checkpoints and all restore from `directory`,
    which must be shared storage.

    Raises `NonFiniteLossError` at the first NaN/Inf loss (the checkpoints
    stop at the last good step), ValueError for bad arguments or for
    checkpoints that do not fit the model.

    Example:
    ```python
    import tempfile
    import kerasmm
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    dataset = kerasmm.data.shapes(num_examples=48, batch_size=8)
    try:
        history = kerasmm.distribute.fit_resumable(
            model, dataset, epochs=2, directory=tempfile.mkdtemp(), save_every=2
        )
    except kerasmm.distribute.NonFiniteLossError as e:
        print(e.step, e.checkpoint)  # run again to resume from e.checkpoint
    ```
    """
    _check_arguments(model, dataset, epochs, steps_per_epoch, save_every, keep, directory, fit_kwargs)
    steps_per_epoch = _steps_per_epoch(dataset, steps_per_epoch, model)
    strategy = model.distribute_strategy
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        saved_steps_per_epoch = tf.Variable(steps_per_epoch, dtype=tf.int64, trainable=False)
    batches = OwnedBatches(_training_batches(model, dataset), strategy)
    store = CheckpointStore(
        directory, keep, strategy,
        model_variables=list(model.variables),
        optimizer_variables=list(model.optimizer.variables),
        input=batches.position,
        steps_per_epoch=saved_steps_per_epoch,
    )
    step = _restore(model, store, saved_steps_per_epoch, steps_per_epoch)
    total = epochs * steps_per_epoch
    if step >= total:
        _say(verbose, f"Training in {store.directory} is complete: step {step} of {total}.")
        return _empty_history(model)
    if step:
        _say(verbose, f"Resuming from {store.latest} at step {step} of {total} "
                      f"(epoch {step // steps_per_epoch + 1}, batch {step % steps_per_epoch + 1}).")
        _append_csv_logs(callbacks)
    saver = _Checkpointer(store, batches, save_every, steps_per_epoch)
    history = _fit_method(model)(
        OwnedBatchesAdapter(batches),
        epochs=epochs,
        initial_epoch=step // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=[_ReopenCutEpoch(saver), *(callbacks or []), saver],
        verbose=verbose,
        **_preprocessed_validation(model, fit_kwargs),
    )
    if saver.failure is not None:
        raise NonFiniteLossError(*saver.failure, history=history)
    return history


def _check_arguments(model, dataset, epochs, steps_per_epoch, save_every, keep, directory, fit_kwargs):
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("model must be compiled (model.compile(optimizer=..., loss=...)) before fit_resumable.")
    if not model.built:
        raise ValueError("model must be built (call it on a batch, or give it an Input) before fit_resumable.")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset, got {type(dataset).__name__}: its passes are what "
                         "a checkpoint resumes from.")
    validation.int_at_least("epochs", epochs, 1)
    validation.int_at_least("save_every", save_every, 1)
    for name, value in (("steps_per_epoch", steps_per_epoch), ("keep", keep)):
        if value is not None:
            validation.int_at_least(name, value, 1)
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise ValueError(f"directory must be a path, got {directory!r}.")
    given = [name for name in _DATA_ARGUMENTS if name in fit_kwargs]
    if given:
        raise ValueError(f"fit_resumable owns the data and the epoch count; drop {', '.join(given)} "
                         "(shuffle, batch and weight inside the dataset).")


def _steps_per_epoch(dataset, steps_per_epoch, model):
    if steps_per_epoch is None:
        length = int(dataset.cardinality())
        if length == 0:
            raise ValueError("dataset is empty.")
        if length < 0:
            kind = "infinite" if length == tf.data.INFINITE_CARDINALITY else "unknown"
            raise ValueError(f"dataset has {kind} length: pass steps_per_epoch.")
        steps_per_epoch = length
    per_execution = int(getattr(model, "steps_per_execution", 1) or 1)
    if steps_per_epoch % per_execution:
        raise ValueError(f"steps_per_epoch ({steps_per_epoch}) must be a multiple of the model's "
                         f"steps_per_execution ({per_execution}) for epochs to end where they should.")
    return int(steps_per_epoch)


def _is_pipeline_model(model):
    """A keras_hub `Task` (a `PipelineModel`): its `fit` maps `preprocess_samples` over the data."""
    return callable(getattr(model, "preprocess_samples", None))


def _training_batches(model, dataset):
    """One pass of model-ready batches (`OwnedBatches` makes an iterator of it per pass)."""
    if _is_pipeline_model(model):
        dataset = dataset.map(model.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _preprocessed_validation(model, fit_kwargs):
    validation = fit_kwargs.get("validation_data")
    if validation is None or not _is_pipeline_model(model):
        return fit_kwargs
    if not isinstance(validation, tf.data.Dataset):
        raise ValueError(f"validation_data must be a tf.data.Dataset for {type(model).__name__}, "
                         f"got {type(validation).__name__}.")
    mapped = validation.map(model.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE)
    return {**fit_kwargs, "validation_data": mapped.prefetch(tf.data.AUTOTUNE)}


def _fit_method(model):
    if _is_pipeline_model(model):
        # PipelineModel.fit would map preprocessing over `x`, which is no
        # dataset here; `_training_batches` has mapped it already.
        return functools.partial(keras.Model.fit, model)
    return model.fit


def _restore(model, store, saved_steps_per_epoch, steps_per_epoch):
    """Restore the newest good checkpoint; the global step to go on from."""
    fresh_iterations = _global_step(model)
    if store.restore() is None:
        if fresh_iterations:
            raise ValueError(
                f"The optimizer has already taken {fresh_iterations} steps and {store.directory} holds no "
                "checkpoint; fit_resumable counts steps with optimizer.iterations, so compile a fresh optimizer."
            )
        return 0
    saved = int(saved_steps_per_epoch.numpy())
    if saved != steps_per_epoch:
        raise ValueError(f"The checkpoints in {store.directory} were written with steps_per_epoch={saved}, "
                         f"not {steps_per_epoch}: resume with the same value.")
    return _global_step(model)


def _global_step(model):
    """`model.optimizer.iterations` as an int (also for a distributed variable)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _append_csv_logs(callbacks):
    for callback in callbacks or []:
        if isinstance(callback, keras.callbacks.CSVLogger):
            callback.append = True


def _empty_history(model):
    history = keras.callbacks.History()
    history.set_model(model)
    history.on_train_begin()
    return history


def _say(verbose, message):
    if verbose != 0:
        print_msg(message)
    logger.info(message)


def _all_finite(variables):
    return all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in variables)


class _Checkpointer(keras.callbacks.TerminateOnNaN):
    """Saves every `save_every` steps and at epoch ends; stops, saving nothing, at a non-finite loss.

    Also ends a resumed epoch early, when the global step reaches the end of
    the epoch it resumed in (`fit` itself runs `steps_per_epoch` batches).
    Keep it last among the callbacks so that it sees the others' stops.
    """

    def __init__(self, store, batches, save_every, steps_per_epoch):
        super().__init__()
        self.store = store
        self.batches = batches
        self.save_every = save_every
        self.steps_per_epoch = steps_per_epoch
        self.last_saved = 0
        self.cut_epoch = False
        self.failure = None

    @property
    def step(self):
        return _global_step(self.model)

    def on_train_begin(self, logs=None):
        self.batches.begin_training()
        self.last_saved = self.step

    def on_batch_end(self, batch, logs=None):
        step = self.step
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self._stop(step, f"Non-finite loss {loss}", loss)
            return
        if step % self.steps_per_epoch == 0:
            if batch + 1 < self.steps_per_epoch and not self.model.stop_training:
                self.model.stop_training = self.cut_epoch = True
            return  # `on_epoch_end` saves
        if step // self.save_every > self.last_saved // self.save_every:
            self._save(step)

    def on_epoch_end(self, epoch, logs=None):
        self._save_if_new()

    def on_train_end(self, logs=None):
        self._save_if_new()

    def _save_if_new(self):
        if self.failure is None and self.step > self.last_saved:
            self._save(self.step)

    def _save(self, step):
        if not _all_finite(self.model.trainable_variables):
            self._stop(step, "Non-finite weights (found when saving)", float("nan"))
            return
        assert not self.batches.ahead_of_training, "a checkpoint would skip batches read ahead"
        self.store.save(step)
        self.last_saved = step

    def _stop(self, step, what, value):
        latest = self.store.latest
        kept = f"the newest checkpoint, {latest}, is the last good one" if latest else "no checkpoint was written"
        message = (f"{what} at step {step} (epoch {(step - 1) // self.steps_per_epoch + 1}, batch "
                   f"{(step - 1) % self.steps_per_epoch + 1} of {self.steps_per_epoch}); training stopped and "
                   f"{kept}.")
        print_msg(message)
        self.failure = (message, step, value, latest)
        self.model.stop_training = True


class _ReopenCutEpoch(keras.callbacks.Callback):
    """The first callback: lifts the stop that ended a resumed epoch early, before the others' `on_epoch_end`."""

    def __init__(self, checkpointer):
        super().__init__()
        self.checkpointer = checkpointer

    def on_epoch_end(self, epoch, logs=None):
        if self.checkpointer.cut_epoch:
            self.checkpointer.cut_epoch = False
            self.model.stop_training = False
