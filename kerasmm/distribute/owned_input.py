"""Input batches owned outside `fit`, so that a checkpoint can hold their position.

Keras's TensorFlow trainer makes a new iterator from the dataset at the
start of every `fit`, which a checkpoint cannot hold on to; and the
`DistributedIterator` of `strategy.experimental_distribute_dataset` cannot be
checkpointed at all. `OwnedBatches` reads plain `tf.data` iterators instead,
one per pass over the dataset, splits each (global) batch over the
strategy's replicas itself, and counts where it is: `position` (passes
finished, batches read of the current pass) is what a checkpoint keeps.
`OwnedBatchesAdapter` is the `DataAdapter` Keras accepts in place of data,
which hands `fit` those batches every time.

Resuming replays the input up to that position instead of restoring a
`tf.data` iterator checkpoint, because TensorFlow 2.21 does not restore
the per-pass randomness exactly: a reshuffling `shuffle` or a
`Dataset.random(rerandomize_each_iteration=True)` draws each pass's seeds
from a generator of the dataset when the pass starts, and after a restore
that generator is at another draw than in the uninterrupted run, whenever
a prefetch or a parallel map had run ahead, or the pass had ended, when
the checkpoint was taken (so every later pass is shuffled and augmented
differently: resumed runs ended with other weights). The replay starts
each finished pass again and reads one batch of it (which makes the same
draws), then reads the current pass up to the saved batch: it costs at
most one pass of input work, no training.

Example:
```python
import tensorflow as tf
from kerasmm.distribute.owned_input import OwnedBatches
batches = OwnedBatches(tf.data.Dataset.range(4).batch(2), tf.distribute.get_strategy())
checkpoint = tf.train.Checkpoint(input=batches.position)  # the position, with the weights
[int(next(batches)[0]) for _ in range(3)]  # [0, 2, 0]: the second pass goes on from the first
```
"""

import collections

import tensorflow as tf

from kerasmm.backend_compat import DataAdapter


class OwnedBatches:
    """Batches of `dataset`, pass after pass; restoring a checkpoint of `position` resumes them.

    With several replicas in sync each batch is split over them by rows, as
    `experimental_distribute_dataset` splits a global batch. Under a
    strategy Keras reads one batch to build the model before training;
    `begin_training()` puts what was read so far back, so that every batch
    is trained on exactly once.
    """

    def __init__(self, dataset, strategy):
        self._dataset = dataset
        self.position = _Position()
        self._iterator = None  # made at the first read, after a restore has set `position`
        self._strategy = strategy
        self._put_back = collections.deque()
        self._read_ahead = []
        self._training = False

    def __iter__(self):
        return self

    def __next__(self):
        batch = self._put_back.popleft() if self._put_back else self._distribute(self._next_of_pass())
        if not self._training:
            self._read_ahead.append(batch)
        return batch

    @property
    def element_spec(self):
        return self._dataset.element_spec

    def _next_of_pass(self):
        if self._iterator is None:
            self._iterator = self._replay()
        batch = next(self._iterator, None)
        if batch is None:
            self.position.passes.assign_add(1)
            self.position.batches.assign(0)
            self._iterator = iter(self._dataset)
            batch = next(self._iterator, None)
            if batch is None:
                raise ValueError("The dataset yielded no batch in a whole pass: it is empty.")
        self.position.batches.assign_add(1)
        return batch

    def _replay(self):
        """An iterator at `position`, reached by making the draws and reads of the run that saved it."""
        for _ in range(int(self.position.passes.numpy())):
            next(iter(self._dataset), None)
        iterator = iter(self._dataset)
        for read in range(int(self.position.batches.numpy())):
            if next(iterator, None) is None:
                raise ValueError(f"The dataset ended after {read} batches where the checkpoint was written "
                                 f"{int(self.position.batches.numpy())} batches into a pass: it is not the same data.")
        return iterator

    def begin_training(self):
        self._put_back.extend(self._read_ahead)
        self._read_ahead = []
        self._training = True

    def _distribute(self, batch):
        replicas = self._strategy.num_replicas_in_sync
        if replicas == 1:
            return batch
        return self._strategy.experimental_distribute_values_from_function(
            lambda context: _rows(batch, context.replica_id_in_sync_group, replicas)
        )

    @property
    def ahead_of_training(self):
        """Whether batches were read that training has not used yet (the position is no place to resume from)."""
        return bool(self._put_back)


class _Position(tf.Module):
    """What a checkpoint keeps of the input: passes finished and batches read of the current one."""

    def __init__(self):
        super().__init__(name="input_position")
        self.passes = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.batches = tf.Variable(0, dtype=tf.int64, trainable=False)


def _rows(batch, index, count):
    """Replica `index`'s share of every tensor in `batch`: rows [index·n/count, (index+1)·n/count)."""

    def share(tensor):
        n = tf.shape(tensor, out_type=tf.int64)[0]
        return tensor[index * n // count:(index + 1) * n // count]

    return tf.nest.map_structure(share, batch)


class _OneIterator(tf.distribute.DistributedDataset):
    """A "distributed dataset" whose every iteration continues the one `OwnedBatches`."""

    def __init__(self, batches):
        self._batches = batches

    def __iter__(self):
        return self._batches

    @property
    def element_spec(self):
        return self._batches.element_spec


class OwnedBatchesAdapter(DataAdapter):
    """What `fit(x=...)` takes to read from `batches`; the step count comes from `steps_per_epoch`."""

    def __init__(self, batches):
        self._dataset = _OneIterator(batches)

    def get_tf_dataset(self):
        return self._dataset

    @property
    def num_batches(self):
        return None  # endless: `steps_per_epoch` says how many make an epoch

    @property
    def batch_size(self):
        return None

    @property
    def has_partial_batch(self):
        return None

    @property
    def partial_batch_size(self):
        return None
