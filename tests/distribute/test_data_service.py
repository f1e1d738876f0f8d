"""Input at scale: per-worker pipelines (`distribute_dataset`) and preprocessing on tf.data service."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.distribute import (
    LocalDataService,
    distribute_dataset,
    distribute_on_service,
    per_replica_batch_size,
    scaled_learning_rate,
)


class ExampleCount(keras.metrics.Metric):
    """How many examples the steps saw (reset every epoch, like every metric)."""

    def __init__(self, name="examples", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", aggregation="sum")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(tf.cast(tf.shape(y_true)[0], self.total.dtype))

    def result(self):
        return self.total + 0.0  # a copy: fit reads the training logs after validating


class _PipelinesOf:
    """A stand-in strategy: builds the input pipeline `input_pipeline_id` of `num_input_pipelines`."""

    def __init__(self, num_input_pipelines, input_pipeline_id, num_replicas_in_sync):
        self.num_replicas_in_sync = num_replicas_in_sync
        self.context = tf.distribute.InputContext(num_input_pipelines, input_pipeline_id, num_replicas_in_sync)

    def distribute_datasets_from_function(self, dataset_fn):
        return dataset_fn(self.context)


@pytest.fixture(scope="module")
def service():
    with LocalDataService(num_workers=2) as running:
        yield running


def test_distributed_epoch_yields_every_example_once_over_two_workers(service):
    dataset = distribute_on_service(tf.data.Dataset.range(20).batch(3), service.address)
    seen = np.concatenate(list(dataset.as_numpy_iterator()))
    assert sorted(seen.tolist()) == list(range(20))
    assert len(service.workers) == 2


def test_parallel_epochs_has_every_worker_run_the_whole_dataset(service):
    dataset = distribute_on_service(tf.data.Dataset.range(6).batch(2), service.address,
                                    processing_mode="parallel_epochs")
    seen = np.concatenate(list(dataset.as_numpy_iterator()))
    assert sorted(seen.tolist()) == sorted(list(range(6)) * 2)


def test_fit_on_batches_preprocessed_by_the_service_workers(service):
    num_examples, batch_size, epochs = 28, 8, 3
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=[ExampleCount()])
    raw = kerasmm.data.shapes(num_examples=num_examples, batch_size=batch_size)
    dataset = distribute_on_service(raw, service.address, preprocessor=model.preprocessor, job_name="fit",
                                    batch_size=batch_size)
    # The service sends model inputs: token ids, not strings.
    assert dataset.element_spec[0]["text"].dtype == tf.int32
    history = model.fit(dataset, epochs=epochs, verbose=0).history
    assert all(math.isfinite(loss) for loss in history["loss"])
    assert history["examples"] == [num_examples] * epochs  # every example, once per epoch


def test_distribute_dataset_shards_per_pipeline_and_batches_per_replica():
    # Pipeline 1 of 2, 4 replicas in all: every other example, batches of 16 / 4 = 4.
    strategy = _PipelinesOf(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=4)
    dataset = distribute_dataset(strategy, lambda context: tf.data.Dataset.range(20), global_batch_size=16)
    batches = [b.tolist() for b in dataset.as_numpy_iterator()]
    assert batches == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19]]
    unsharded = distribute_dataset(strategy, tf.data.Dataset.range(6), global_batch_size=16, shard=False,
                                   drop_remainder=True)
    assert [b.tolist() for b in unsharded.as_numpy_iterator()] == [[0, 1, 2, 3]]


def test_fit_on_a_distribute_dataset_with_the_preprocessor_in_the_pipeline():
    features, labels = kerasmm.data.shapes_arrays(num_examples=16)
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0"])):
        with strategy.scope():
            model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
            model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=[ExampleCount()])
        dataset = distribute_dataset(strategy, lambda context: tf.data.Dataset.from_tensor_slices((features, labels)),
                                     global_batch_size=8, preprocessor=model.preprocessor)
        validation = kerasmm.data.shapes(num_examples=8, batch_size=8, split="validation")  # raw: preprocessed by fit
        history = model.fit(dataset, epochs=1, verbose=0, validation_data=validation).history
        assert history["examples"] == [16]
        assert math.isfinite(history["loss"][0]) and math.isfinite(history["val_loss"][0])
        assert model.evaluate(dataset, verbose=0, return_dict=True)["examples"] == 16


def test_batch_and_learning_rate_rules():
    assert per_replica_batch_size(_PipelinesOf(1, 0, 4), 32) == 8
    assert scaled_learning_rate(1e-3, base_batch_size=256, global_batch_size=1024) == pytest.approx(4e-3)


def test_bad_input_is_a_clear_error(service):
    four_replicas = _PipelinesOf(1, 0, 4)
    with pytest.raises(ValueError, match="global_batch_size 10 does not split evenly over the 4 replicas"):
        distribute_dataset(four_replicas, tf.data.Dataset.range(4), global_batch_size=10)
    with pytest.raises(ValueError, match="global_batch_size must be a positive int"):
        per_replica_batch_size(four_replicas, 0)
    with pytest.raises(ValueError, match="dataset_fn must be a function input_context -> tf.data.Dataset"):
        distribute_dataset(four_replicas, [1, 2], global_batch_size=4)
    with pytest.raises(ValueError, match="dataset_fn must return a tf.data.Dataset, got list"):
        distribute_dataset(four_replicas, lambda context: [1, 2], global_batch_size=4)
    with pytest.raises(ValueError, match="base_learning_rate must be a positive number"):
        scaled_learning_rate(0.0, 256, 512)
    dataset = tf.data.Dataset.range(4)
    with pytest.raises(ValueError, match="service must be the dispatcher's address"):
        distribute_on_service(dataset, "localhost")
    with pytest.raises(ValueError, match="processing_mode must be one of"):
        distribute_on_service(dataset, service.address, processing_mode="each_once")
    with pytest.raises(ValueError, match="dataset must be a tf.data.Dataset, got list"):
        distribute_on_service([1, 2], service.address)
    with pytest.raises(ValueError, match="num_workers must be a positive int"):
        LocalDataService(num_workers=0)
