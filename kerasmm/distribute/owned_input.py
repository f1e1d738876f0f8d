"""One input iterator, owned outside `fit`, so that its position can be checkpointed.

Keras's TensorFlow trainer makes a new iterator from the dataset at the
start of every `fit`, which a checkpoint cannot hold on to; and the
`DistributedIterator` of `strategy.experimental_distribute_dataset` cannot be
checkpointed at all. `OwnedBatches` is a plain `tf.data` iterator instead,
which splits each (global) batch over the strategy's replicas itself, and
`OwnedBatchesAdapter` is the `DataAdapter` Keras accepts in place of data,
which hands `fit` that iterator every time.

Under a multi-worker strategy every worker runs the whole input pipeline
and takes its replicas' rows of each global batch: the input work is
repeated on every worker, but their iterators are all in the same state,
so the chief's checkpoint resumes every worker.

Example:
```python
import tensorflow as tf
from kerasmm.distribute.owned_input import OwnedBatches
batches = OwnedBatches(tf.data.Dataset.range(6).batch(2).repeat(), tf.distribute.get_strategy())
checkpoint = tf.train.Checkpoint(iterator=batches.iterator)  # the position, with the weights
next(batches)  # [0, 1]
```
"""

import collections

import tensorflow as tf
from keras.src.trainers.data_adapters.data_adapter import DataAdapter


class OwnedBatches:
    """Batches of `dataset` (repeat it for more than one pass) from one checkpointable iterator.

    With several replicas in sync each batch is split over them by rows, as
    `experimental_distribute_dataset` splits a global batch. Under a
    strategy Keras reads one batch to build the model before training;
    `begin_training()` puts what was read so far back, so that every batch
    is trained on exactly once.
    """

    def __init__(self, dataset, strategy):
        self.iterator = iter(dataset)
        self._strategy = strategy
        self._put_back = collections.deque()
        self._read_ahead = []
        self._training = False

    def __iter__(self):
        return self

    def __next__(self):
        batch = self._put_back.popleft() if self._put_back else self._distribute(next(self.iterator))
        if not self._training:
            self._read_ahead.append(batch)
        return batch

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
        """Whether batches were read that training has not used yet (the iterator is no place to resume from)."""
        return bool(self._put_back)


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
        return self._batches.iterator.element_spec


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
