"""Preprocessing on tf.data service: a dispatcher and workers produce the batches a trainer consumes.

When decoding, augmentation or tokenisation keeps the accelerators waiting,
move the input pipeline to CPU machines: a *dispatcher* hands out work and
*workers* run the pipeline (the model's preprocessor included) and stream
batches to the trainers.

* `distribute_on_service(dataset, service, preprocessor=...)` maps the
  preprocessor over `dataset` and then sends the pipeline to the service;
  `model.fit` takes the result as it is (no second preprocessing).
* `LocalDataService(num_workers=2)` starts a dispatcher and workers in this
  process, for tests and development. In production run them as their own
  processes (`tf.data.experimental.service.DispatchServer(
  tf.data.experimental.service.DispatcherConfig(port=5050)).join()` and
  `WorkerServer(WorkerConfig(dispatcher_address="dispatcher:5050",
  port=5051)).join()`), each importing kerasmm (so the tokenizer's ops are
  registered).

Processing modes: `"distributed_epoch"` (default) splits the source examples
among the workers, so an epoch yields every example once (the source must
be splittable: `from_tensor_slices`, `range`, TFRecord files, ...);
`"parallel_epochs"` has every worker run the whole dataset, so an epoch
yields each example once per worker. Batches are formed on the workers, so
each worker may end on a partial batch: pass `batch_size` to have the
trainer re-form whole batches (same steps every epoch, as `fit` expects).

Several trainers (e.g. the workers of a `MultiWorkerMirroredStrategy`) share
the work by passing the same `job_name`; give each its per-replica batch,
e.g. `strategy.distribute_datasets_from_function(lambda context:
distribute_on_service(raw.batch(batch), service, preprocessor=model.preprocessor,
job_name="train", batch_size=batch))` with `batch =
context.get_per_replica_batch_size(64)`.

Example:
```python
import kerasmm
from kerasmm.distribute.data_service import LocalDataService, distribute_on_service
model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
with LocalDataService(num_workers=2) as service:
    dataset = distribute_on_service(kerasmm.data.shapes(num_examples=64, batch_size=16), service.address,
                                    preprocessor=model.preprocessor, batch_size=16)
    model.fit(dataset, epochs=1)
```
"""

import re

import tensorflow as tf

from kerasmm import validation
from kerasmm.data.model_ready import mark_model_ready

PROCESSING_MODES = ("distributed_epoch", "parallel_epochs")
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^\s:/]+:\d+$")


# How soon an in-process service frees a finished job's task pipelines (TensorFlow's defaults: minutes).
_FREE_JOBS_MS = 500


class LocalDataService:
    """A tf.data service dispatcher and `num_workers` workers in this process (tests, development).

    Use as a context manager, or call `stop()`. `address` ("grpc://localhost:PORT")
    is what `distribute_on_service` takes.

    Args:
        num_workers: int, how many workers to start.
        port: int, the dispatcher's port (0: any free port); workers always
            take free ports.

    Example:
    ```python
    import tensorflow as tf
    from kerasmm.distribute.data_service import LocalDataService, distribute_on_service
    with LocalDataService(num_workers=2) as service:
        numbers = sorted(distribute_on_service(tf.data.Dataset.range(10), service.address).as_numpy_iterator())
    ```
    """

    def __init__(self, num_workers=2, port=0):
        validation.positive_int("num_workers", num_workers)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int in [0, 65535] (0: any free port), got {port!r}.")
        service = tf.data.experimental.service
        # Freed in the workers' own threads. Left to `stop`, every finished job's pipeline is destroyed on the
        # calling thread with the GIL held: 7 to 55 s in the test suite with the cores busy, under 1 s now.
        self.dispatcher = service.DispatchServer(service.DispatcherConfig(
            port=port, job_gc_check_interval_ms=_FREE_JOBS_MS, job_gc_timeout_ms=_FREE_JOBS_MS))
        dispatcher_address = self.dispatcher.target.split("://", 1)[1]
        self.workers = []
        try:
            for _ in range(num_workers):
                self.workers.append(service.WorkerServer(service.WorkerConfig(
                    dispatcher_address=dispatcher_address, heartbeat_interval_ms=_FREE_JOBS_MS)))
        except Exception:
            self.stop()
            raise

    @property
    def address(self):
        """The dispatcher's address, "grpc://localhost:PORT"."""
        return self.dispatcher.target

    def stop(self):
        """Stop the workers, then the dispatcher."""
        for worker in self.workers:
            worker.stop()
        self.dispatcher.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def distribute_on_service(dataset, service, preprocessor=None, processing_mode="distributed_epoch", job_name=None,
                          batch_size=None):
    """`dataset`, with `preprocessor` mapped over it, produced by the tf.data service at `service`.

    Args:
        dataset: a batched `tf.data.Dataset` of raw `(features, targets)`.
        service: the dispatcher's address, "grpc://host:port" or "host:port".
        preprocessor: the model's `preprocessor` (run on the service
            workers, called as `preprocessor(x, y, sample_weight)` on each
            batch), or None to send the batches as they are.
        processing_mode: "distributed_epoch" (each example once per epoch,
            split among the workers) or "parallel_epochs" (each worker runs
            the whole dataset), or a
            `tf.data.experimental.service.ShardingPolicy`.
        job_name: str, shared by the trainers that split one job's batches;
            None gives every iteration its own job.
        batch_size: int or None. When given, the trainer re-forms the
            batches it receives into batches of this size (`rebatch`), so
            every epoch has the same steps. Pass it for `fit` in
            "distributed_epoch" mode: each worker batches its own share, so
            the workers' partial last batches change the number of steps
            from epoch to epoch, and Keras runs every epoch for the steps
            it counted in the first (dropping the batches beyond them).

    Returns:
        A `tf.data.Dataset` that reads from the service. With a
        `preprocessor`, kerasmm models' `fit`/`evaluate`/`predict` take it
        as model inputs; add no transformations after this call (that would
        drop the mark and preprocess twice).

    The dataset registers with the dispatcher here, so the service must be running.

    Example:
    ```python
    import kerasmm
    from kerasmm.distribute.data_service import LocalDataService, distribute_on_service
    model = kerasmm.zoo.get("tiny_dual_encoder")
    with LocalDataService(num_workers=2) as service:   # or "grpc://dispatcher:5050"
        batches = distribute_on_service(kerasmm.data.shapes(num_examples=32, batch_size=8), service.address,
                                        preprocessor=model.preprocessor, batch_size=8)
        model.fit(batches, epochs=1)
    ```
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset, got {type(dataset).__name__}.")
    if not isinstance(service, str) or not _ADDRESS.match(service):
        raise ValueError(
            f"service must be the dispatcher's address, 'grpc://host:port' or 'host:port', got {service!r}."
        )
    if processing_mode not in PROCESSING_MODES and not isinstance(
        processing_mode, tf.data.experimental.service.ShardingPolicy
    ):
        raise ValueError(
            f"processing_mode must be one of {PROCESSING_MODES} or a tf.data.experimental.service.ShardingPolicy, "
            f"got {processing_mode!r}."
        )
    if job_name is not None and (not isinstance(job_name, str) or not job_name):
        raise ValueError(f"job_name must be a non-empty str or None, got {job_name!r}.")
    if preprocessor is not None and not callable(preprocessor):
        raise ValueError(f"preprocessor must be callable (the model's preprocessor) or None, got {preprocessor!r}.")
    validation.positive_int("batch_size", batch_size, allow_none=True)
    if "://" not in service:
        service = "grpc://" + service

    if preprocessor is not None:
        dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.prefetch(tf.data.AUTOTUNE).apply(
        tf.data.experimental.service.distribute(processing_mode=processing_mode, service=service, job_name=job_name)
    )
    if batch_size is not None:
        dataset = dataset.rebatch(batch_size)
    # The service already splits the work among trainers: a strategy's
    # auto-sharding on top would drop batches.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = dataset.with_options(options)
    if preprocessor is not None:
        mark_model_ready(dataset)
    return dataset
