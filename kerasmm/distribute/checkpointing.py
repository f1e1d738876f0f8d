"""`CheckpointStore`: numbered checkpoints that restore the newest one that reads back intact.

TensorFlow writes each checkpoint's files under temporary names and renames
them when complete, and rewrites the `checkpoint` state file (which lists the
checkpoints) atomically afterwards, so a process killed mid-save leaves the
previous checkpoints listed and intact. What that does not cover is a file
damaged after it was written (a truncated copy, a bad disk): `restore()`
reads every tensor of the newest checkpoint back first, which checks each
one's CRC32C checksum, and when that fails it logs a warning naming the
checkpoint, moves its files into `corrupt/` and tries the one before.

Example:
```python
import tempfile
import tensorflow as tf
from kerasmm.distribute.checkpointing import CheckpointStore
step = tf.Variable(0, dtype=tf.int64)
store = CheckpointStore(tempfile.mkdtemp(), keep=2, step=step)
step.assign(5)
store.save(5)
step.assign(0)
assert store.restore() == 5 and int(step) == 5
```
"""

import logging
import os
import time
import uuid

import tensorflow as tf

from kerasmm.backend_compat import update_checkpoint_list

logger = logging.getLogger("kerasmm.distribute")

PREFIX = "ckpt"
CORRUPT_DIR = "corrupt"
# Raised whenever what a checkpoint holds, or how it is read, changes (2: input position as pass and batch
# counts, not tf.data iterator state); a checkpoint of another format is refused, never half-restored.
FORMAT = 2
_FORMAT_KEY = "kerasmm_checkpoint_format/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointStore:
    """Checkpoints of `trackables` in `directory` as `ckpt-<step>`, the newest `keep` of them.

    Under a multi-worker strategy (pass it as `strategy`) every worker saves,
    since saving can take part in collectives, but only the chief writes to
    `directory`; the others write to a temporary `directory/.worker-<i>`
    and delete it, and every worker restores from `directory`, which must
    therefore be shared (as for Keras's `BackupAndRestore`). That suits
    state that is the same on every worker.
    """

    def __init__(self, directory, keep=3, strategy=None, **trackables):
        self.directory = os.fspath(directory)
        self.is_chief = is_chief(strategy)
        self._write_directory = self.directory if self.is_chief else os.path.join(
            self.directory, f".worker-{_task(strategy)[1]}")
        check_writable(self._write_directory)
        if self.is_chief:
            _remove_partial_writes(self.directory)
        self.checkpoint = tf.train.Checkpoint(
            kerasmm_checkpoint_format=tf.Variable(FORMAT, dtype=tf.int64, trainable=False), **trackables)
        self.keep = keep

    @property
    def paths(self):
        """The checkpoint prefixes `directory` lists, oldest first."""
        state = tf.train.get_checkpoint_state(self.directory)
        return list(state.all_model_checkpoint_paths) if state else []

    @property
    def latest(self):
        """The newest checkpoint prefix `directory` lists, or None."""
        paths = self.paths
        return paths[-1] if paths else None

    def save(self, step):
        """Write `ckpt-<step>` (the chief: into `directory`, dropping those past the newest `keep`)."""
        manager = tf.train.CheckpointManager(self.checkpoint, self._write_directory,
                                             max_to_keep=self.keep if self.is_chief else 1, checkpoint_name=PREFIX)
        path = manager.save(checkpoint_number=int(step))
        if not self.is_chief:
            tf.io.gfile.rmtree(self._write_directory)
        return path

    def restore(self):
        """Restore the newest checkpoint that reads back intact; its step, or None when there is none.

        A checkpoint that fails the read-back is skipped with a warning (and
        moved to `corrupt/` by the chief) and the one before is tried. One
        that reads back but does not fit the objects (another model or
        dataset) is a ValueError.
        """
        paths = self.paths
        for path in reversed(paths):
            problem = verify(path)
            if problem is None:
                self._restore(path)
                return step_of(path)
            logger.warning("Checkpoint %s is corrupt (%s); falling back to the one before it.", path, problem)
            if self.is_chief:
                self._quarantine(path)
        if paths:
            logger.warning("No checkpoint in %s is intact; starting from the beginning.", self.directory)
        return None

    def _restore(self, path):
        reader = tf.train.load_checkpoint(path)
        found = int(reader.get_tensor(_FORMAT_KEY)) if reader.has_tensor(_FORMAT_KEY) else 1
        if found != FORMAT:
            raise ValueError(
                f"Checkpoint {path} was written by another kerasmm version (checkpoint format {found}; this "
                f"version reads format {FORMAT}), so it cannot resume exactly: start afresh in another directory."
            )
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise ValueError(
                f"Checkpoint {path} does not fit this model, optimizer or dataset ({e}). "
                "Resume with the same model and dataset, or start afresh in another directory."
            ) from None

    def _quarantine(self, path):
        """Move `path`'s files into `corrupt/` and drop it from the checkpoint list."""
        target = os.path.join(self.directory, CORRUPT_DIR)
        tf.io.gfile.makedirs(target)
        for name in tf.io.gfile.glob(path + ".*"):
            tf.io.gfile.rename(name, os.path.join(target, os.path.basename(name)), overwrite=True)
        state = tf.train.get_checkpoint_state(self.directory)
        paths, stamps = state.all_model_checkpoint_paths, list(state.all_model_checkpoint_timestamps)
        if len(stamps) != len(paths):
            stamps = [time.time()] * len(paths)  # CheckpointManager forgets a listed checkpoint with no timestamp
        kept = [(p, t) for p, t in zip(paths, stamps) if p != path]
        if kept:
            update_checkpoint_list(self.directory, kept[-1][0], [p for p, _ in kept], [t for _, t in kept],
                                   state.last_preserved_timestamp)
        else:
            tf.io.gfile.remove(os.path.join(self.directory, "checkpoint"))


def verify(path):
    """None when every tensor of checkpoint `path` reads back with a matching checksum, else why not."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name, dtype in reader.get_variable_to_dtype_map().items():
            try:
                reader.get_tensor(name)
            except tf.errors.InternalError:
                # An iterator's state is a variant tensor: the reader checks it
                # and only then fails to turn it into numpy.
                if dtype != tf.variant:
                    raise
    except (tf.errors.OpError, IndexError, ValueError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return None


def step_of(path):
    """The step in a `ckpt-<step>` prefix."""
    return int(path.rsplit("-", 1)[1])


def is_chief(strategy=None):
    """Whether this process writes the checkpoints: a single process, or the chief of a cluster."""
    task = _task(strategy)
    if task is None:
        return True
    task_type, task_id = task
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)


def _task(strategy):
    """`(task_type, task_id)` in a cluster of more than one task, else None."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    if sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) <= 1:
        return None
    return resolver.task_type, resolver.task_id


def check_writable(directory):
    """Create `directory` and write a file there, or raise ValueError saying why not."""
    probe = os.path.join(directory, f".write-test-{uuid.uuid4().hex}")
    try:
        tf.io.gfile.makedirs(directory)
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as e:
        reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
        raise ValueError(f"Cannot write checkpoints to directory {directory!r}: {reason}.") from None


def _remove_partial_writes(directory):
    """Delete what a save killed half way left behind (never listed, never read)."""
    for name in tf.io.gfile.glob(os.path.join(directory, f"{PREFIX}-*_temp*")):
        if tf.io.gfile.isdir(name):
            tf.io.gfile.rmtree(name)
        else:
            tf.io.gfile.remove(name)
    for name in tf.io.gfile.glob(os.path.join(directory, f"{PREFIX}-*.tempstate*")):
        tf.io.gfile.remove(name)
