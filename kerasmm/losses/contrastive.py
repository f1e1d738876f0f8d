"""Dual-encoder losses over the global batch: InfoNCE (CLIP), pairwise sigmoid (SigLIP), alignment.

Under a `tf.distribute` strategy each replica holds a local slice of the
batch. The losses gather the other tower's embeddings from every replica
(`ReplicaContext.all_gather`, whose gradient sends each replica the part of
the upstream gradient for its own rows) and compute only the replica's local
rows against the whole global batch: memory grows as local × global, not
global². Each returns the mean over the replica's local rows, which Keras
then scales by 1 / replicas, so summed gradients equal a single-device run
at the same global batch.

`hard_negatives` mines the global batch's similarity matrix the same way
(for the image–text matching loss of a dual encoder with a matching head).

Example:
```python
import numpy as np
from kerasmm.losses import contrastive
a = np.eye(4, dtype="float32")
contrastive.info_nce(a, a, logit_scale=np.log(10.0))   # small: pairs match
```
"""

import math

import keras
import tensorflow as tf

MAX_LOGIT_SCALE = math.log(100.0)
LOSSES = ("contrastive", "sigmoid", "alignment")


def _replica_context():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def gather_global(local):
    """`(global_rows, offset)`: `local` gathered across replicas and where this replica's rows start."""
    context = _replica_context()
    if context is None:
        return local, tf.constant(0, tf.int32)
    sizes = context.all_gather(tf.shape(local)[:1], axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    # all_gather forgets the static row shape, which layers fed with the result (a LayerNormalization) need.
    return tf.ensure_shape(context.all_gather(local, axis=0), [None, *local.shape[1:]]), offset


@tf.custom_gradient
def _dense_gradient(x):
    return tf.identity(x), lambda upstream: tf.convert_to_tensor(upstream)


def take_rows(gathered, rows):
    """`tf.gather(gathered, rows)` whose gradient reaches `gathered` dense: all_gather's gradient refuses the
    `IndexedSlices` a gather's gradient is."""
    return tf.gather(_dense_gradient(gathered), rows)


def replica_share(value):
    """`value` / replicas in sync: what Keras' own losses do, so summed gradients form the global mean."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return value / replicas if replicas > 1 else value


def check_pair(a, b, names=("image", "text")):
    """Refuse towers whose batch sizes or widths differ, with a message naming them."""
    a = tf.convert_to_tensor(a)
    b = tf.convert_to_tensor(b)
    if a.shape.rank != 2 or b.shape.rank != 2:
        raise ValueError(f"Embeddings must be [batch, dim]; got {names[0]} {a.shape} and {names[1]} {b.shape}.")
    for axis, what in ((0, "batch sizes"), (1, "embedding widths")):
        if a.shape[axis] is not None and b.shape[axis] is not None and a.shape[axis] != b.shape[axis]:
            raise ValueError(
                f"The {names[0]} and {names[1]} towers must give matching {what}: "
                f"{names[0]} {a.shape}, {names[1]} {b.shape}. Each row of one pairs with the same row of the other."
            )
    if a.shape[0] is None or b.shape[0] is None:
        tf.debugging.assert_equal(
            tf.shape(a)[0], tf.shape(b)[0],
            message=f"The {names[0]} and {names[1]} towers must give matching batch sizes",
        )
    return tf.cast(a, tf.float32), tf.cast(b, tf.float32)


def checked_scale(logit_scale):
    """exp(min(logit_scale, ln 100)), refusing a non-finite temperature."""
    logit_scale = tf.debugging.check_numerics(
        tf.cast(logit_scale, tf.float32),
        "The dual encoder's temperature (logit_scale) is not finite; training diverged "
        "(try a lower learning rate, or reload the last good checkpoint)",
    )
    return tf.exp(tf.minimum(logit_scale, MAX_LOGIT_SCALE))


def info_nce(a, b, logit_scale, names=("image", "text")):
    """Symmetric InfoNCE: each row's match is the same row of the other tower, over the global batch."""
    a, b = check_pair(a, b, names)
    scale = checked_scale(logit_scale)
    global_a, offset = gather_global(a)
    global_b, _ = gather_global(b)
    labels = offset + tf.range(tf.shape(a)[0])
    a_to_b = tf.matmul(a, global_b, transpose_b=True) * scale  # [local, global]
    b_to_a = tf.matmul(b, global_a, transpose_b=True) * scale
    loss_a = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, a_to_b)
    loss_b = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, b_to_a)
    return tf.reduce_mean(loss_a + loss_b) / 2.0


def sigmoid_loss(a, b, logit_scale, bias, names=("image", "text")):
    """SigLIP's pairwise sigmoid loss: every (row, column) pair is its own binary problem.

    Summed over the global columns for each local row and averaged over rows,
    as in the SigLIP paper's per-example normalisation.
    """
    a, b = check_pair(a, b, names)
    scale = checked_scale(logit_scale)
    global_b, offset = gather_global(b)
    logits = tf.matmul(a, global_b, transpose_b=True) * scale + tf.cast(bias, tf.float32)
    rows = offset + tf.range(tf.shape(a)[0])
    positive = tf.equal(rows[:, None], tf.range(tf.shape(global_b)[0])[None, :])
    signs = tf.where(positive, 1.0, -1.0)
    return -tf.reduce_mean(tf.reduce_sum(tf.math.log_sigmoid(signs * logits), axis=1))


def alignment_loss(a, b, names=("image", "text")):
    """The mean squared distance between paired embeddings (no negatives: it can collapse)."""
    a, b = check_pair(a, b, names)
    return tf.reduce_mean(tf.reduce_sum(tf.square(a - b), axis=1))


def hard_negatives(a, b, exclude=None, count=1):
    """The `count` hardest negatives of each local pair in both directions, over the global batch.

    For local row i: `for_a[i]`, the `count` global rows of `b` most similar
    to `a[i]`, most similar first, and `for_b[i]`, those of `a` most similar
    to `b[i]`, never the pair's own row nor a global row that `exclude` (bool
    `[local, global]`, True: not a negative of row i, e.g. a duplicate
    caption) marks. Returns `(for_a, for_b, valid)`, each `[local, count]`;
    `valid` is False where no such row is left (a small batch, many
    duplicates), and the row there is any in range. The rows index what
    `gather_global` returns on this replica.

    Example:
    ```python
    import numpy as np
    from kerasmm.losses import contrastive
    a = np.eye(3, dtype="float32"); b = a + [[0, 0.5, 0]] * 3
    contrastive.hard_negatives(a, b)[0]   # [[1], [0], [0]]: each image's most similar other text
    ```
    """
    a, b = check_pair(a, b)
    global_a, offset = gather_global(a)
    global_b, _ = gather_global(b)
    rows = offset + tf.range(tf.shape(a)[0])
    blocked = tf.equal(rows[:, None], tf.range(tf.shape(global_b)[0])[None, :])
    if exclude is not None:
        blocked = tf.logical_or(blocked, tf.cast(exclude, tf.bool))
    lowest = tf.fill(tf.shape(blocked), tf.float32.min)
    a_to_b = tf.where(blocked, lowest, tf.matmul(a, global_b, transpose_b=True))  # [local, global]
    b_to_a = tf.where(blocked, lowest, tf.matmul(b, global_a, transpose_b=True))
    # A global batch smaller than `count` (an epoch's last) gets blocked columns to fill the top k.
    columns = tf.shape(global_b)[0]
    padding = [[0, 0], [0, tf.maximum(count - columns, 0)]]
    a_to_b = tf.pad(a_to_b, padding, constant_values=tf.float32.min)
    b_to_a = tf.pad(b_to_a, padding, constant_values=tf.float32.min)
    # top_k, not argmax: a blocked column sorts last, so `valid` can be read off the values.
    values, for_a = tf.math.top_k(a_to_b, count)
    _, for_b = tf.math.top_k(b_to_a, count)
    valid = values > tf.float32.min
    return tf.minimum(for_a, columns - 1), tf.minimum(for_b, columns - 1), valid


def swap_two_tokens(ids, seed_generator):
    """`(swapped, valid)`: each row of `ids` `[B, L]` with two of its tokens (non-zero ids) swapped.

    The two positions are drawn uniformly among the row's tokens, which
    precede its padding (0). `valid` `[B]` is False where the row has fewer
    than two tokens or the two are equal; such a row is returned unchanged.

    Example:
    ```python
    import keras
    import numpy as np
    from kerasmm.losses import contrastive
    contrastive.swap_two_tokens(np.array([[5, 6, 7, 0]]), keras.random.SeedGenerator(1))
    ```
    """
    ids = tf.convert_to_tensor(ids)
    count = tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1)
    draws = keras.random.uniform((2, tf.shape(ids)[0]), seed=seed_generator)
    first = tf.cast(draws[0] * tf.cast(count, tf.float32), tf.int32)
    second = tf.cast(draws[1] * tf.cast(tf.maximum(count - 1, 1), tf.float32), tf.int32)
    second += tf.cast(second >= first, tf.int32)  # a different position
    length = tf.shape(ids)[1]
    at_first = tf.one_hot(tf.minimum(first, length - 1), length, dtype=ids.dtype)
    at_second = tf.one_hot(tf.minimum(second, length - 1), length, dtype=ids.dtype)
    first_id = tf.reduce_sum(ids * at_first, axis=1, keepdims=True)
    second_id = tf.reduce_sum(ids * at_second, axis=1, keepdims=True)
    swapped = ids + (at_first - at_second) * (second_id - first_id)
    valid = (count >= 2) & (first_id[:, 0] != second_id[:, 0])
    return tf.where(valid[:, None], swapped, ids), valid


def matching_loss(positive, negatives, valid):
    """Binary cross-entropy of match logits: each local pair positive, its negatives negative.

    `positive`: logits `[local]`; `negatives` and `valid`: lists of logits
    `[local]` and of bool `[local]`, a negative counting only where its
    `valid` is True. The mean over the counted logits.
    """
    positive = tf.cast(positive, tf.float32)
    logits = tf.concat([positive] + [tf.cast(n, tf.float32) for n in negatives], axis=0)
    labels = tf.concat([tf.ones_like(positive)] + [tf.zeros_like(positive)] * len(negatives), axis=0)
    weights = tf.concat([tf.ones_like(positive)] + [tf.cast(v, tf.float32) for v in valid], axis=0)
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

