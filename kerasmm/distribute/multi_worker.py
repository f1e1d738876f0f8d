"""Training on several machines: `MultiWorkerMirroredStrategy`, input sharding, batch and learning-rate rules.

Multi-worker `fit`
------------------
Run the same script on every worker, each with its own `TF_CONFIG`
(`{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type":
"worker", "index": i}}`), and build the model inside the strategy's scope.
Plain Keras 3 `fit` fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585); every kerasmm model inherits the fix from
`kerasmm.models.task.ZooTask`, so `fit`, `evaluate` and `predict` work as
on one machine. Every worker ends with the same weights: save from all of
them (each to its own path), keep the chief's (task 0).

Global batch and learning rate
------------------------------
* global batch = per-replica batch × `strategy.num_replicas_in_sync`
  (replicas over all workers). `fit` and `distribute_dataset` take the
  GLOBAL batch; each replica computes on its share, and the gradients are
  summed, so one step equals a single-device step at the global batch.
* Scale the learning rate linearly with the global batch
  (`scaled_learning_rate`): tuned at batch 256 with 1e-3, use 4e-3 at 1024.
* With a large scale-up (say ×8 or more) warm the rate up linearly over the
  first few epochs' steps, e.g. `keras.optimizers.schedules.CosineDecay(
  0.0, decay_steps, warmup_target=lr, warmup_steps=warmup)`.
* Keep per-replica batches equal: the global batch must be a multiple of
  the replicas in sync.

Input
-----
`distribute_dataset` builds each worker's input pipeline with
`strategy.distribute_datasets_from_function`: every input pipeline reads
its own shard of the examples and batches at the per-replica batch size,
and the model's preprocessor can run there. To run preprocessing on other
machines, see `kerasmm.distribute.data_service`.

Example (`distribute_dataset` shows the input side):
```python
import kerasmm
strategy = kerasmm.distribute.get_strategy()        # MWMS when TF_CONFIG names a cluster
with strategy.scope():
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
model.fit(kerasmm.data.shapes(num_examples=64, batch_size=16), epochs=2)
```
"""

import tensorflow as tf

from kerasmm import validation
from kerasmm.backend_compat import in_multi_worker_mode  # noqa: F401 (re-exported)
from kerasmm.data.model_ready import mark_model_ready


def per_replica_batch_size(strategy, global_batch_size):
    """The batch each replica computes on: `global_batch_size / strategy.num_replicas_in_sync`.

    Raises ValueError when the global batch does not split evenly.

    Example:
    ```python
    import tensorflow as tf
    from kerasmm.distribute import per_replica_batch_size
    per_replica_batch_size(tf.distribute.get_strategy(), 32)   # 32 on one device
    ```
    """
    global_batch_size = validation.positive_int("global_batch_size", global_batch_size)
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"global_batch_size {global_batch_size} does not split evenly over the {replicas} replicas in sync; "
            f"use a multiple of {replicas} (global batch = per-replica batch × replicas)."
        )
    return global_batch_size // replicas


def scaled_learning_rate(base_learning_rate, base_batch_size, global_batch_size):
    """The linear scaling rule: `base_learning_rate × global_batch_size / base_batch_size`.

    `base_learning_rate` is the rate tuned at `base_batch_size`; warm up to
    the result over the first steps when the scale-up is large (see the
    module docstring).

    Example:
    ```python
    from kerasmm.distribute import scaled_learning_rate
    scaled_learning_rate(1e-3, base_batch_size=256, global_batch_size=1024)   # 4e-3
    ```
    """
    base_learning_rate = validation.positive_number("base_learning_rate", base_learning_rate)
    base_batch_size = validation.positive_int("base_batch_size", base_batch_size)
    global_batch_size = validation.positive_int("global_batch_size", global_batch_size)
    return base_learning_rate * global_batch_size / base_batch_size


def distribute_dataset(strategy, dataset_fn, global_batch_size, preprocessor=None, shard=True,
                       drop_remainder=False):
    """Per-worker input pipelines through `strategy.distribute_datasets_from_function`.

    On each input pipeline (one per worker): `dataset_fn(input_context)`
    gives the UNBATCHED examples; they are sharded with
    `dataset.shard(input_context.num_input_pipelines,
    input_context.input_pipeline_id)` (unless `shard=False`, for a
    `dataset_fn` that shards itself, e.g. by files), batched at
    `input_context.get_per_replica_batch_size(global_batch_size)`, passed
    through `preprocessor` (the model's, so preprocessing runs on the
    workers' input pipelines) and prefetched.

    Args:
        strategy: the `tf.distribute.Strategy` the model was built under.
        dataset_fn: `input_context -> tf.data.Dataset` of unbatched
            `(features, targets)` (or a `tf.data.Dataset`, the same on every
            pipeline). Shuffle inside it for training.
        global_batch_size: int, the batch over all replicas; a multiple of
            `strategy.num_replicas_in_sync`.
        preprocessor: the model's `preprocessor` (called on each batch as
            `preprocessor(x, y, sample_weight)`), or None when `dataset_fn`
            already yields model inputs.
        shard: bool, shard the examples over the input pipelines.
        drop_remainder: bool, drop a last partial batch.

    Returns:
        What `strategy.distribute_datasets_from_function` returns (a plain
        `tf.data.Dataset` under the default strategy), ready for `fit`:
        kerasmm models take its batches as they are.

    Example:
    ```python
    import tensorflow as tf
    import kerasmm
    strategy = tf.distribute.get_strategy()
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    features, labels = kerasmm.data.shapes_arrays(num_examples=32)
    dataset = kerasmm.distribute.distribute_dataset(
        strategy, lambda context: tf.data.Dataset.from_tensor_slices((features, labels)),
        global_batch_size=8, preprocessor=model.preprocessor)
    model.fit(dataset, epochs=1)
    ```
    """
    per_replica_batch_size(strategy, global_batch_size)  # checks the global batch
    if not (callable(dataset_fn) or isinstance(dataset_fn, tf.data.Dataset)):
        raise ValueError(
            f"dataset_fn must be a function input_context -> tf.data.Dataset (or a tf.data.Dataset), "
            f"got {type(dataset_fn).__name__}."
        )
    if preprocessor is not None and not callable(preprocessor):
        raise ValueError(f"preprocessor must be callable (the model's preprocessor) or None, got {preprocessor!r}.")

    def pipeline(input_context):
        dataset = dataset_fn if isinstance(dataset_fn, tf.data.Dataset) else dataset_fn(input_context)
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(f"dataset_fn must return a tf.data.Dataset, got {type(dataset).__name__}.")
        if shard and input_context.num_input_pipelines > 1:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        dataset = dataset.batch(input_context.get_per_replica_batch_size(global_batch_size),
                                drop_remainder=drop_remainder)
        if preprocessor is not None:
            dataset = dataset.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    distributed = strategy.distribute_datasets_from_function(pipeline)
    if isinstance(distributed, tf.data.Dataset):  # the default strategy hands the dataset back
        mark_model_ready(distributed)
    return distributed
