"""Every private or version-fragile Keras / TensorFlow API kerasmm uses, each with why, in one place.

Nothing else in the package imports `keras.src`, `tensorflow.python` or calls
a private method of Keras. Each item has a canary in
`tests/test_backend_compat.py` that fails loudly when an upgrade renames or
removes what it relies on (checked with Keras 3.15.1, TensorFlow 2.21.0).

Example:
```python
import tensorflow as tf
from kerasmm import backend_compat
backend_compat.in_multi_worker_mode(tf.distribute.get_strategy())   # False: one process
```
"""

import contextlib
import threading

import keras
import tensorflow as tf

# Keras' `DataAdapter`: `fit(x=...)` accepts an instance in place of data. kerasmm's exactly-once
# resume hands `fit` batches it owns and checkpoints itself (kerasmm.distribute.owned_input), which
# no public input type allows: a `tf.data` iterator's own checkpoint does not restore per-pass
# reshuffle seeds in TF 2.21 (see the closing note of issue 14), and Keras has no public adapter API.
from keras.src.trainers.data_adapters.data_adapter import DataAdapter  # noqa: F401  (re-exported)
# Keras' printer for training messages: it honours `keras.config.disable_interactive_logging()`,
# so kerasmm's resume messages go where Keras' own progress output goes (no public equivalent).
from keras.src.utils.io_utils import print_msg  # noqa: F401  (re-exported)
# What `tf.train.CheckpointManager` writes its `checkpoint` list with. Quarantining a damaged
# checkpoint must drop it from that list while keeping the others' timestamps, which the public
# `tf.train.update_checkpoint_state` (TF1 only) cannot: it is not exported in TF 2.
from tensorflow.python.checkpoint import checkpoint_management as _checkpoint_management


def in_multi_worker_mode(strategy):
    """True under a `MultiWorkerMirroredStrategy` spanning several workers (the case keras#20585 breaks).

    `extended._in_multi_worker_mode()` is the strategy's own test; a one-worker MWMS is a plain
    mirrored strategy, which Keras handles, and a public attribute says nothing of the workers.
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


class MultiWorkerFitFix:
    """Mixin for a `keras.Model` that makes `fit` / `evaluate` work under multi-worker MWMS (keras#20585).

    Keras 3.15's TensorFlow trainer has two branches taken only when a
    `MultiWorkerMirroredStrategy` spans several workers, and both fail:
    1. `fit`/`evaluate` build the model from the first batch, reduced with
       `strategy.reduce("MEAN", batch, axis=None)`. MWMS's reduce takes one
       tensor, not a nest, hence "Attempt to convert a value ({'image':
       PerReplica:{...}}) ... to a Tensor". The build needs only shapes and
       dtypes: this replica's local batch has them. The build hook,
       `_maybe_symbolic_build`, is private.
    2. `reduce_per_replica` reduces each step's logs with
       `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar
       loss and metrics. Given a leading axis of 1, that reduce is the mean
       over replicas, which is what Keras computes for one worker.
    Outside multi-worker mode both overrides change nothing.
    """

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


def flatten_layers(layer, include_self=True, recursive=True):
    """`layer` and its sublayers, however deeply nested (Keras' private `_flatten_layers`).

    Keras' public `Model.layers` lists only a model's direct layers; layers
    inside a subclassed layer (a keras-hub backbone's blocks, a
    preprocessor's image converter) are reachable only through this walk.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def preset_task_class(preset):
    """The task class a keras-hub preset's `task.json` names, or None (no task config in the preset).

    keras-hub's `Task.from_preset` on a base class picks "the first
    registered" subclass whose `backbone_cls` matches the preset's, in the
    order of a set: with two tasks on one backbone class (`Captioner`,
    `GenerativeVQA`) that is either. The task config says which; keras-hub's
    preset file helpers (`check_file_exists`, `load_json`, `check_config_class`,
    private) read it from a directory or download it, as `from_preset` does.
    """
    from keras_hub.src.utils import preset_utils

    if not preset_utils.check_file_exists(preset, preset_utils.TASK_CONFIG_FILE):
        return None
    return preset_utils.check_config_class(preset_utils.load_json(preset, preset_utils.TASK_CONFIG_FILE))


def update_checkpoint_list(directory, latest, paths, timestamps, last_preserved_timestamp):
    """Rewrite `directory`'s `checkpoint` list as `tf.train.CheckpointManager` would (see the import's why)."""
    _checkpoint_management.update_checkpoint_state_internal(
        directory, latest, paths, save_relative_paths=True, all_model_checkpoint_timestamps=timestamps,
        last_preserved_timestamp=last_preserved_timestamp)


# --- Portable slice updates while tracing an export ---------------------------------------------
# Keras' TensorFlow backend updates slices (the KV cache, a sampler's token buffer) with the XLA op
# `XlaDynamicUpdateSlice`, which outside an XLA cluster runs only through XLA's compile-on-demand
# path: stock TF Serving refuses it on GPU and on CPU needs `--xla_cpu_compilation_enabled`.
# `TensorStridedSliceUpdate` is a core op with CPU and GPU kernels and the same result for in-range
# starts (the only ones decoding loops use). `keras.ops.slice_update` dispatches to the backend
# module's `slice_update` with no public hook, so the backend function is wrapped once; the wrapper
# writes the portable op only in a thread inside `portable_slice_updates()`, so other threads
# (and this one outside the block) keep Keras' own op.

_PORTABLE = threading.local()
_INSTALL_LOCK = threading.Lock()


def _backend_core():
    from keras.src.backend.tensorflow import core

    if not callable(getattr(core, "slice_update", None)):
        raise RuntimeError(
            "kerasmm cannot make exported graphs portable: keras.src.backend.tensorflow.core.slice_update is "
            f"gone in Keras {keras.__version__}. Export with jit_compile=True or pin keras<=3.15.")
    return core


def _strided_slice_update(inputs, start_indices, updates):
    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(tf.convert_to_tensor(updates), inputs.dtype)
    if isinstance(start_indices, (list, tuple)):
        begin = tf.stack([tf.cast(i, tf.int32) for i in start_indices])
    else:
        begin = tf.cast(start_indices, tf.int32)
    end = begin + tf.shape(updates, out_type=tf.int32)
    return tf.raw_ops.TensorStridedSliceUpdate(input=inputs, begin=begin, end=end, strides=tf.ones_like(begin),
                                               value=updates)


def _install_wrapper():
    core = _backend_core()
    with _INSTALL_LOCK:
        if getattr(core.slice_update, "_kerasmm_portable", False):
            return
        keras_slice_update = core.slice_update

        def slice_update(inputs, start_indices, updates):
            if getattr(_PORTABLE, "depth", 0):
                return _strided_slice_update(inputs, start_indices, updates)
            return keras_slice_update(inputs, start_indices, updates)

        slice_update._kerasmm_portable = True
        core.slice_update = slice_update


@contextlib.contextmanager
def portable_slice_updates(enabled=True):
    """Inside the block, in this thread, `keras.ops.slice_update` traces `TensorStridedSliceUpdate`.

    Raises RuntimeError if this Keras no longer has the function it wraps
    (rather than exporting graphs TF Serving cannot run).
    """
    if not enabled:
        yield
        return
    _install_wrapper()
    _PORTABLE.depth = getattr(_PORTABLE, "depth", 0) + 1
    try:
        yield
    finally:
        _PORTABLE.depth -= 1
