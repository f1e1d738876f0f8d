"""Cross-modal retrieval metrics (recall@K, mean and median rank) for dual encoders.

Two entry points compute the same numbers:

* `RetrievalMetrics`: a `keras.metrics.Metric` for `model.evaluate`. It keeps
  every evaluated row (both embeddings and a group id) in preallocated
  variables and ranks the WHOLE evaluation set in `result()`; per-batch recall
  averaged over batches would rank each caption against its batch only.
* `retrieval_scores` / `paired_retrieval_scores`: the same ranking in NumPy on
  precomputed embeddings.

Groups (several captions per image)
-----------------------------------
Each evaluated row i is a pair (image_i, text_i). Rows may carry an integer
group id: rows of one group show the same image (COCO with every caption
expanded repeats the image once per caption). Then

* text → image: a caption's correct answer is its group's image. The images
  of a group count as ONE gallery item (the group's first row stands for it),
  so duplicates are never competitors.
* image → text: each group's image is asked once (again its first row), and
  every caption of the group is a correct answer: the rank is the best rank
  among them.

Without group ids every row is its own group (one caption per image).
Ranks are 1-based; ties in similarity are broken by gallery order (the order
a stable descending sort gives), so identical scores neither all win nor all
lose. Recall@K is the share of queries whose rank is at most K.

Using the metric with `model.evaluate`
--------------------------------------
A dual encoder outputs a dict of two tensors, and Keras 3's `compile(metrics=)`
splits a multi-output prediction per output: every compiled metric receives
ONE output tensor. `metrics=[RetrievalMetrics()]` on a two-key dict output is
rejected ("`metrics` should contain metrics objects and either be a dict or a
list matching the output names of the functional model ..."), and
`metrics={"image_embedding": [...]}` would see the image embeddings only. A
metric that needs both towers is therefore updated by the model itself, in
`compute_metrics`, which receives the whole `y_pred` dict:

```python
class DualEncoder(keras.Model):
    def __init__(self, *args, embedding_dim=None, **kwargs):
        super().__init__(*args, **kwargs)
        # An attribute, so tracked: Keras resets it when evaluate starts and merges its dict into the logs.
        self.retrieval_metrics = RetrievalMetrics(embedding_dim=embedding_dim)

    def evaluate(self, *args, **kwargs):
        self._evaluating = True  # read while evaluate traces its test step
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._evaluating = False

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        evaluating = getattr(self, "_evaluating", False)
        if evaluating:
            self.retrieval_metrics.update_state(y, y_pred, sample_weight)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if not evaluating:  # training steps: neither accumulate rows nor log the (empty) scores
            logs = {k: v for k, v in logs.items() if k not in self.retrieval_metrics.result_keys}
        return logs
```

`evaluate(..., return_dict=True)` then returns `text_to_image_recall@1` and
the rest next to the loss, and `fit(validation_data=...)` logs them as
`val_text_to_image_recall@1`, ... (`fit` validates through `evaluate`).
Training steps must not update the metric: an epoch of training rows would
overrun `capacity`. The flag is set around `evaluate` rather than inside
`train_step` on purpose: under `MirroredStrategy` the replicas trace the step
in parallel threads, so a flag toggled inside the step races (one replica then
all-gathers while the other does not, and the step fails with "Some replicas
made a different number of replica_context().merge_call() calls").

Keras computes `result()` after every step (for the progress bar): a
similarity pass of the rows held so far against the whole buffer, so keep
`capacity` near the evaluation set's size (CPU, E=512, capacity 10000: about
0.04 s per step early on, 1.3 s once 10000 rows are held). The metric is
XLA-compatible (static shapes; `jit_compile=True`, Keras' default on a single
GPU, works). Embeddings from `model.predict` can be scored with
`paired_retrieval_scores` instead.

Group ids reach the metric through `group_key`:

* `None` (default): `y_true` when it is an integer tensor of shape `[B]` (or
  `[B, 1]`); anything else (no targets, strings, floats, a dict) means one
  group per row. Do not pass dummy integer targets (e.g. zeros) in this mode:
  they would put every row in one group.
* `"rows"`: always one group per row, whatever the targets.
* any other string: the integer `[B]` tensor under that key of `y_true` (a
  dict) or, failing that, of `y_pred`.

Distribution
------------
Under a `tf.distribute` strategy Keras creates metric variables per replica
(sync-on-read) and aggregates them when read. Concatenating each replica's
local rows into its own buffer would leave every copy with a part of the set.
Instead `update_state` all-gathers the batch's embeddings, ids and weights
across replicas first, so every replica writes the same global rows at the
same offsets, and the variables use `aggregation="only_first_replica"`: a read
in cross-replica context takes the first replica's (identical) copy. With
`embedding_dim=None` the buffers are created on the first update; under a
strategy with several replicas pass `embedding_dim` so they are created with
the metric, in the strategy scope.

Rows whose `sample_weight` is 0 are skipped (padding); other weights are not
used.

Example:
```python
import numpy as np
from kerasmm.metrics import RetrievalMetrics
metric = RetrievalMetrics(capacity=8, embedding_dim=4)
eye = np.eye(4, dtype="float32")
metric.update_state(None, {"image_embedding": eye, "text_embedding": eye})
metric.result()["text_to_image_recall@1"]   # 1.0
```
"""

import keras
import numpy as np
import tensorflow as tf

from kerasmm import validation

DEFAULT_KS = (1, 5, 10)
ROWS = "rows"
_EMBEDDING_SUFFIX = "_embedding"


def _side_name(key):
    """"image_embedding" → "image": the modality name used in result keys."""
    key = str(key)
    return key[: -len(_EMBEDDING_SUFFIX)] if key.endswith(_EMBEDDING_SUFFIX) and key != _EMBEDDING_SUFFIX else key


def _check_ks(ks):
    checked = tuple(validation.positive_ints("ks", ks))
    if len(set(checked)) != len(checked):
        raise ValueError(f"ks must be distinct, got {ks!r}.")
    return checked


def _result_keys(query_name, gallery_name, ks):
    """Result keys in order: both directions' recalls, then their ranks."""
    keys = []
    directions = (f"{gallery_name}_to_{query_name}", f"{query_name}_to_{gallery_name}")
    for direction in directions:
        keys += [f"{direction}_recall@{k}" for k in ks]
    for direction in directions:
        keys += [f"{direction}_mean_rank", f"{direction}_median_rank"]
    return keys


# --- NumPy -------------------------------------------------------------------


def _numpy_ranks(queries, gallery, query_groups, gallery_groups, block_size=1024):
    num_gallery = gallery.shape[0]
    columns = np.arange(num_gallery)
    ranks = np.empty(queries.shape[0], np.int64)
    for start in range(0, queries.shape[0], block_size):
        stop = start + block_size
        similarity = queries[start:stop] @ gallery.T
        positive = query_groups[start:stop, None] == gallery_groups[None, :]
        missing = np.flatnonzero(~positive.any(axis=1))
        if missing.size:
            raise ValueError(
                f"Query rows {(missing + start)[:10].tolist()} have no gallery item of their group "
                f"(groups {query_groups[missing + start][:10].tolist()}); every query needs a correct answer."
            )
        best = np.where(positive, similarity, -np.inf).max(axis=1, keepdims=True)
        first_best = np.where(positive & (similarity == best), columns, num_gallery).min(axis=1, keepdims=True)
        above = ~positive & ((similarity > best) | ((similarity == best) & (columns < first_best)))
        ranks[start:stop] = 1 + above.sum(axis=1)
    return ranks


def _as_embeddings(value, what):
    value = np.asarray(value, dtype=np.float32)
    if value.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, E], got shape {value.shape}.")
    return value


def _as_groups(value, rows, what):
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.shape != (rows,) or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"{what} must be {rows} integer group ids (shape [{rows}]), got {value.dtype} {value.shape}.")
    return value.astype(np.int64)


def _summarise(ranks, ks, prefix=""):
    scores = {}
    for k in ks:
        scores[f"{prefix}recall@{k}"] = np.float64(np.mean(ranks <= k)) if ranks.size else np.float64(0.0)
    scores[f"{prefix}mean_rank"] = np.float64(ranks.mean()) if ranks.size else np.float64(0.0)
    scores[f"{prefix}median_rank"] = np.float64(np.median(ranks)) if ranks.size else np.float64(0.0)
    return scores


def _checked_inputs(query_embeddings, gallery_embeddings, query_groups, gallery_groups):
    """`(queries, gallery, query_groups, gallery_groups)` as arrays, checked; without groups, row i matches row i."""
    queries = _as_embeddings(query_embeddings, "query_embeddings")
    gallery = _as_embeddings(gallery_embeddings, "gallery_embeddings")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"Embedding widths differ: queries {queries.shape}, gallery {gallery.shape}.")
    if (query_groups is None) != (gallery_groups is None):
        raise ValueError("Pass both query_groups and gallery_groups, or neither.")
    if query_groups is None:
        if queries.shape[0] != gallery.shape[0]:
            raise ValueError(
                f"Without groups query i matches gallery item i, so the counts must agree: "
                f"{queries.shape[0]} queries, {gallery.shape[0]} gallery items."
            )
        query_groups = gallery_groups = np.arange(queries.shape[0])
    query_groups = _as_groups(query_groups, queries.shape[0], "query_groups")
    gallery_groups = _as_groups(gallery_groups, gallery.shape[0], "gallery_groups")
    return queries, gallery, query_groups, gallery_groups


def retrieval_scores(query_embeddings, gallery_embeddings, query_groups=None, gallery_groups=None, ks=DEFAULT_KS):
    """Recall@K, mean and median rank of retrieving gallery items for each query.

    Similarity is the dot product (cosine for unit-length embeddings). A query's
    correct answers are the gallery items of its group; its rank (1-based) is
    the best rank among them. Every gallery row is a separate item: pass each
    image once when ranking images (see `paired_retrieval_scores`).

    Args:
        query_embeddings: `[Nq, E]` array.
        gallery_embeddings: `[Ng, E]` array.
        query_groups, gallery_groups: integer group ids `[Nq]` and `[Ng]`, both
            or neither; neither means query i matches gallery item i (Nq == Ng).
        ks: the K of recall@K.

    Returns:
        dict of NumPy floats: `"recall@K"` for each K, `"mean_rank"`, `"median_rank"`.

    Example:
    ```python
    import numpy as np
    from kerasmm.metrics import retrieval_scores
    retrieval_scores(np.eye(3), np.eye(3))["mean_rank"]   # 1.0
    ```
    """
    ks = _check_ks(ks)
    queries, gallery, query_groups, gallery_groups = _checked_inputs(
        query_embeddings, gallery_embeddings, query_groups, gallery_groups)
    return _summarise(_numpy_ranks(queries, gallery, query_groups, gallery_groups), ks)


def paired_retrieval_scores(query_embeddings, gallery_embeddings, groups=None, ks=DEFAULT_KS,
                            query_name="image", gallery_name="text"):
    """`RetrievalMetrics`' result, in NumPy, for row-paired embeddings.

    Row i of `query_embeddings` (images, or audio) pairs with row i of
    `gallery_embeddings` (texts); `groups` are the optional per-row group ids
    (see the module docstring). Both directions are ranked: text → image over
    the distinct images (each group's first row), image → text from each
    distinct image over all texts.

    Returns:
        dict of NumPy floats keyed like the metric's result, e.g.
        `"text_to_image_recall@1"`, `"image_to_text_median_rank"`.

    Example:
    ```python
    import numpy as np
    from kerasmm.metrics import paired_retrieval_scores
    images = np.eye(3)[[0, 0, 1, 1, 2, 2]]      # 3 images, 2 captions each
    texts = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    paired_retrieval_scores(images, texts, groups=[0, 0, 1, 1, 2, 2])["text_to_image_recall@1"]   # 1.0
    ```
    """
    ks = _check_ks(ks)
    images = _as_embeddings(query_embeddings, "query_embeddings")
    texts = _as_embeddings(gallery_embeddings, "gallery_embeddings")
    if images.shape != texts.shape:
        raise ValueError(f"Row-paired embeddings must have the same shape: {images.shape} and {texts.shape}.")
    rows = images.shape[0]
    groups = np.arange(rows) if groups is None else _as_groups(groups, rows, "groups")
    _, first_rows = np.unique(groups, return_index=True)
    first_rows = np.sort(first_rows)  # distinct images in order of first appearance
    unique_images, unique_groups = images[first_rows], groups[first_rows]
    text_to_image = _numpy_ranks(texts, unique_images, groups, unique_groups)
    image_to_text = _numpy_ranks(unique_images, texts, unique_groups, groups)
    forward = f"{gallery_name}_to_{query_name}_"
    backward = f"{query_name}_to_{gallery_name}_"
    scores = {**_summarise(text_to_image, ks, forward), **_summarise(image_to_text, ks, backward)}
    return {key: scores[key] for key in _result_keys(query_name, gallery_name, ks)}


def reranked_retrieval_scores(query_embeddings, gallery_embeddings, rescore, candidates, query_groups=None,
                              gallery_groups=None, ks=DEFAULT_KS, block_size=1024):
    """`retrieval_scores` after re-ranking each query's top `candidates` gallery items by `rescore`.

    Each query's `candidates` most similar gallery items (ties in gallery
    order) are ordered again by `rescore(query_rows, gallery_rows)`, a
    function of two equal-length integer arrays giving one score per
    (query, gallery item) pair, higher = better (e.g. an image–text matching
    head's logits). A query whose correct answer is among its candidates takes
    its position there; one whose answer is not keeps its rank (beyond
    `candidates`), so recall@K for K >= `candidates` is unchanged.

    Example:
    ```python
    import numpy as np
    from kerasmm.metrics import reranked_retrieval_scores
    flipped = np.eye(3)[[1, 0, 2]]                   # queries 0 and 1 find each other's item first
    truth = lambda q, g: (q == g).astype(float)      # a perfect re-scorer
    reranked_retrieval_scores(flipped, np.eye(3), truth, candidates=2)["recall@1"]   # 1.0
    ```
    """
    ks = _check_ks(ks)
    candidates = validation.positive_int("candidates", candidates)
    queries, gallery, query_groups, gallery_groups = _checked_inputs(
        query_embeddings, gallery_embeddings, query_groups, gallery_groups)
    ranks = _numpy_ranks(queries, gallery, query_groups, gallery_groups, block_size)
    count = min(candidates, gallery.shape[0])
    for start in range(0, queries.shape[0], block_size):
        block = slice(start, start + block_size)
        top = np.argsort(-(queries[block] @ gallery.T), axis=1, kind="stable")[:, :count]  # [q, count]
        rows = np.repeat(np.arange(start, start + len(top)), count)
        scores = np.asarray(rescore(rows, top.reshape(-1)), dtype=np.float64).reshape(top.shape)
        order = np.argsort(-scores, axis=1, kind="stable")
        positive = gallery_groups[np.take_along_axis(top, order, axis=1)] == query_groups[block, None]
        found = positive.any(axis=1)
        ranks[block] = np.where(found, positive.argmax(axis=1) + 1, np.maximum(ranks[block], count + 1))
    return _summarise(ranks, ks)


# --- TensorFlow --------------------------------------------------------------


def _tf_rank_summary(queries, query_groups, query_valid, gallery, gallery_groups, gallery_valid, rows,
                     block_size, ks):
    """Recalls, mean and median rank over the valid queries, ranked against the valid gallery items.

    Every tensor has the buffers' static length; `rows` (dynamic) bounds the
    query blocks visited, so the cost follows the rows held while all shapes
    stay static (XLA-compatible).
    """
    allocated = gallery.shape[0]
    width = queries.shape[1]
    columns = tf.range(allocated)[None, :]
    num_blocks = (rows + block_size - 1) // block_size
    minus_infinity = tf.constant(-np.inf, tf.float32)
    gallery_valid = gallery_valid[None, :]

    def body(block, ranks):
        start = block * block_size
        block_queries = tf.slice(queries, [start, 0], [block_size, width])
        block_groups = tf.slice(query_groups, [start], [block_size])
        block_valid = tf.slice(query_valid, [start], [block_size])
        similarity = tf.matmul(block_queries, gallery, transpose_b=True)
        same_group = tf.equal(block_groups[:, None], gallery_groups[None, :])
        positive = tf.logical_and(same_group, gallery_valid)
        negative = tf.logical_and(tf.logical_not(same_group), gallery_valid)
        best = tf.reduce_max(tf.where(positive, similarity, minus_infinity), axis=1, keepdims=True)
        at_best = tf.logical_and(positive, tf.equal(similarity, best))
        first_best = tf.reduce_min(tf.where(at_best, columns, allocated), axis=1, keepdims=True)
        beats = tf.logical_or(
            similarity > best, tf.logical_and(tf.equal(similarity, best), columns < first_best)
        )
        rank = 1.0 + tf.reduce_sum(tf.cast(tf.logical_and(negative, beats), tf.float32), axis=1)
        rank = tf.where(block_valid, rank, np.inf)
        indices = (start + tf.range(block_size))[:, None]
        return block + 1, tf.tensor_scatter_nd_update(ranks, indices, rank)

    ranks = tf.fill([allocated], tf.constant(np.inf, tf.float32))
    _, ranks = tf.while_loop(lambda block, _: block < num_blocks, body, (tf.constant(0), ranks))

    counted = ranks < np.inf
    count = tf.reduce_sum(tf.cast(counted, tf.int32))
    denominator = tf.maximum(tf.cast(count, tf.float32), 1.0)
    recalls = [tf.reduce_sum(tf.cast(ranks <= float(k), tf.float32)) / denominator for k in ks]
    mean = tf.reduce_sum(tf.where(counted, ranks, 0.0)) / denominator
    ordered = tf.sort(ranks)  # the counted ranks first, then the infinities
    low = tf.gather(ordered, tf.maximum((count - 1) // 2, 0))
    high = tf.gather(ordered, tf.minimum(count // 2, allocated - 1))
    median = tf.where(count > 0, 0.5 * (low + high), 0.0)
    return recalls, mean, median


def scatter_rows(variable, indices, updates):
    """Write `updates` into the rows `indices` (`[B, 1]`) of a metric's buffer variable, under any strategy."""
    updates = tf.cast(updates, variable.dtype)
    if tf.distribute.in_cross_replica_context():
        # A strategy's variable outside `strategy.run` has no single handle: assign whole (to every copy).
        variable.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(variable), indices, updates))
    else:
        # In place on this replica's copy (sync-on-read variables have no scatter methods): only the
        # batch's rows are written.
        tf.raw_ops.ResourceScatterNdUpdate(ref=variable.value.handle, indices=indices, updates=updates)


def _replica_context():
    """The replica context when several replicas run in sync, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


@keras.saving.register_keras_serializable(package="kerasmm")
class RetrievalMetrics(keras.metrics.Metric):
    """Whole-set recall@K and mean/median rank, both directions, for a dual encoder.

    `update_state(y_true, y_pred, sample_weight=None)` takes `y_pred`, the
    model's dict of row-paired embeddings (`y_pred[query_key]`,
    `y_pred[gallery_key]`, each `[B, E]`), and appends the rows to the buffers;
    `result()` ranks all rows accumulated since `reset_state()` and returns a
    dict of float32 scalars, for the defaults:
    `text_to_image_recall@{1,5,10}`, `image_to_text_recall@{1,5,10}`,
    `text_to_image_mean_rank`, `text_to_image_median_rank`,
    `image_to_text_mean_rank`, `image_to_text_median_rank` (the modality names
    come from the keys without their `"_embedding"` suffix: `"audio_embedding"`
    gives `text_to_audio_recall@1`, ...). See the module docstring for groups,
    `model.evaluate` and distribution.

    Args:
        capacity: int, the most rows one evaluation may accumulate; an update
            past it fails with an error naming `capacity`.
        ks: the K of recall@K.
        embedding_dim: int E, or None to size the buffers on the first update
            (pass it under a distribution strategy).
        query_key: `y_pred` key of the image (or audio) embeddings, the side
            whose rows repeat within a group.
        gallery_key: `y_pred` key of the text embeddings.
        group_key: where group ids come from: None (integer `[B]` `y_true`,
            else one group per row), `"rows"` (one group per row), or a key of
            `y_true` / `y_pred`.
        query_block_size: queries ranked per similarity block in `result()`
            (memory: a few block × capacity arrays).
        name, dtype: as for any Keras metric (the buffers are float32).

    Example:
    ```python
    import numpy as np
    from kerasmm.metrics import RetrievalMetrics
    metric = RetrievalMetrics(capacity=16)
    emb = np.eye(3, dtype="float32")[[0, 0, 1, 1, 2, 2]]
    metric.update_state(np.array([0, 0, 1, 1, 2, 2]), {"image_embedding": emb, "text_embedding": emb})
    metric.result()["image_to_text_recall@1"]   # 1.0: 3 distinct images, each found by its captions
    ```
    """

    def __init__(self, capacity=10000, ks=DEFAULT_KS, embedding_dim=None, query_key="image_embedding",
                 gallery_key="text_embedding", group_key=None, query_block_size=256, name="retrieval",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.capacity = validation.positive_int("capacity", capacity)
        embedding_dim = validation.positive_int("embedding_dim", embedding_dim, allow_none=True)
        self.query_block_size = validation.positive_int("query_block_size", query_block_size)
        if not isinstance(query_key, str) or not isinstance(gallery_key, str) or query_key == gallery_key:
            raise ValueError(
                f"query_key and gallery_key must be two different strings, got {query_key!r} and {gallery_key!r}."
            )
        if group_key is not None and not isinstance(group_key, str):
            raise ValueError(f"group_key must be None, 'rows' or a key name, got {group_key!r}.")
        self.ks = _check_ks(ks)
        self.embedding_dim = None
        self.query_key = query_key
        self.gallery_key = gallery_key
        self.group_key = group_key
        self.query_name = _side_name(query_key)
        self.gallery_name = _side_name(gallery_key)
        self.result_keys = _result_keys(self.query_name, self.gallery_name, self.ks)

        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype="int64", aggregation="only_first_replica", name="count"
        )
        # Rows allocated: capacity, one spare row that absorbs skipped and overflowing rows, rounded up to
        # whole query blocks so every block is a static-size slice.
        self._block_size = min(self.query_block_size, self.capacity + 1)
        self._allocated = -(-(self.capacity + 1) // self._block_size) * self._block_size
        self.query_buffer = None
        self.gallery_buffer = None
        self.group_buffer = None
        self.first_buffer = None
        if embedding_dim is not None:
            self._build_buffers(int(embedding_dim))

    # --- state ------------------------------------------------------------------

    def _build_buffers(self, embedding_dim):
        def buffer(shape, dtype, name):
            return self.add_variable(
                shape=shape, initializer="zeros", dtype=dtype, aggregation="only_first_replica", name=name
            )

        rows = self._allocated
        self.query_buffer = buffer((rows, embedding_dim), "float32", f"{self.query_name}_embeddings")
        self.gallery_buffer = buffer((rows, embedding_dim), "float32", f"{self.gallery_name}_embeddings")
        self.group_buffer = buffer((rows,), "int64", "group_ids")
        # 1.0 on the first row of each group: the row that stands for the group's image.
        self.first_buffer = buffer((rows,), "float32", "first_of_group")
        self.embedding_dim = embedding_dim

    def _group_ids(self, y_true, y_pred):
        """Integer `[B]` ids from the targets or predictions, or None for one group per row."""
        if self.group_key == ROWS:
            return None
        if self.group_key is None:
            if y_true is None or isinstance(y_true, (dict, list, tuple)):
                return None
            try:
                ids = tf.convert_to_tensor(y_true)
            except (TypeError, ValueError):
                return None
            if not ids.dtype.is_integer:
                return None
            if ids.shape.rank == 2 and ids.shape[-1] == 1:
                ids = ids[:, 0]
            return tf.cast(ids, tf.int64) if ids.shape.rank == 1 else None
        sources = [s for s in (y_true, y_pred) if isinstance(s, dict) and self.group_key in s]
        if not sources:
            raise ValueError(
                f"RetrievalMetrics(group_key={self.group_key!r}) found no {self.group_key!r} entry in y_true "
                f"({sorted(y_true) if isinstance(y_true, dict) else type(y_true).__name__}) or y_pred "
                f"({sorted(y_pred)})."
            )
        ids = tf.convert_to_tensor(sources[0][self.group_key])
        if not ids.dtype.is_integer:
            raise ValueError(f"Group ids ({self.group_key!r}) must be integers, got {ids.dtype.name}.")
        return tf.reshape(tf.cast(ids, tf.int64), [-1])

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not isinstance(y_pred, dict) or self.query_key not in y_pred or self.gallery_key not in y_pred:
            found = sorted(y_pred) if isinstance(y_pred, dict) else type(y_pred).__name__
            raise ValueError(
                f"RetrievalMetrics expects y_pred to be a dict with {self.query_key!r} and {self.gallery_key!r} "
                f"embeddings, got {found}. With model.evaluate, update it from the model's compute_metrics "
                "(see kerasmm.metrics.retrieval)."
            )
        query = tf.cast(tf.convert_to_tensor(y_pred[self.query_key]), tf.float32)
        gallery = tf.cast(tf.convert_to_tensor(y_pred[self.gallery_key]), tf.float32)
        if query.shape.rank != 2 or gallery.shape.rank != 2:
            raise ValueError(
                f"Embeddings must be [batch, dim]; got {self.query_key} {query.shape}, "
                f"{self.gallery_key} {gallery.shape}."
            )
        width = query.shape[-1]
        if width is None or gallery.shape[-1] != width:
            raise ValueError(
                f"Embedding widths must be known and equal: {self.query_key} {query.shape}, "
                f"{self.gallery_key} {gallery.shape}."
            )
        if self.query_buffer is None:
            if _replica_context() is not None:
                raise ValueError(
                    "RetrievalMetrics under a distribution strategy needs embedding_dim at construction, "
                    "so its buffers are created in the strategy scope."
                )
            self._build_buffers(int(width))
        elif width != self.embedding_dim:
            raise ValueError(f"RetrievalMetrics was built for {self.embedding_dim}-dim embeddings, got {width}.")

        groups = self._group_ids(y_true, y_pred)
        keep = None
        if sample_weight is not None:
            keep = tf.not_equal(tf.reshape(tf.convert_to_tensor(sample_weight), [-1]), 0)
        checks = [
            tf.debugging.assert_equal(
                tf.shape(query)[0], tf.shape(gallery)[0],
                message=f"RetrievalMetrics: {self.query_key} and {self.gallery_key} have different batch sizes",
            )
        ]
        for value, what in ((groups, "group ids"), (keep, "sample_weight")):
            if value is not None:
                checks.append(tf.debugging.assert_equal(
                    tf.shape(value)[0], tf.shape(query)[0],
                    message=f"RetrievalMetrics: {what} and embeddings have different batch sizes",
                ))
        with tf.control_dependencies(checks):
            query = tf.identity(query)

        context = _replica_context()
        if context is not None:
            # Every replica gathers the global batch and writes the same rows.
            query = context.all_gather(query, axis=0)
            gallery = context.all_gather(gallery, axis=0)
            groups = None if groups is None else context.all_gather(groups, axis=0)
            keep = None if keep is None else context.all_gather(tf.cast(keep, tf.float32), axis=0) > 0.5
        batch = tf.shape(query)[0]
        if keep is None:
            keep = tf.ones([batch], tf.bool)

        # Kept rows go to consecutive positions after the rows held; skipped rows, and rows past
        # `capacity`, to the spare row. Static shapes throughout (no boolean_mask), for XLA.
        start = tf.convert_to_tensor(self.count)
        positions = start + tf.cumsum(tf.cast(keep, tf.int64)) - 1
        kept = tf.reduce_sum(tf.cast(keep, tf.int64))
        if groups is None:
            groups = -(positions + 1)  # one group per row, apart from any non-negative user ids
        # A row is its group's first if no row held, nor an earlier kept row of the batch, has its id.
        held = tf.range(self._allocated, dtype=tf.int64) < tf.minimum(start, self.capacity)
        seen = tf.reduce_any(
            tf.logical_and(tf.equal(groups[:, None], tf.convert_to_tensor(self.group_buffer)[None, :]), held),
            axis=1,
        )
        earlier = tf.range(batch)[None, :] < tf.range(batch)[:, None]
        repeated = tf.reduce_any(
            tf.logical_and(tf.equal(groups[:, None], groups[None, :]), tf.logical_and(earlier, keep[None, :])),
            axis=1,
        )
        first = tf.logical_and(keep, tf.logical_not(tf.logical_or(seen, repeated)))
        spare = tf.constant(self.capacity, tf.int64)
        indices = tf.where(tf.logical_and(keep, positions < self.capacity), positions, spare)[:, None]

        # Raises in eager and graph mode; XLA drops asserts, so `result()` checks again (Keras calls it
        # eagerly at the end of `evaluate`).
        fits = self._assert_fits(start + kept)
        with tf.control_dependencies([fits]):
            self._scatter(self.query_buffer, indices, query)
            self._scatter(self.gallery_buffer, indices, gallery)
            self._scatter(self.group_buffer, indices, groups)
            self._scatter(self.first_buffer, indices, tf.cast(first, tf.float32))
            self.count.assign(start + kept)

    def _assert_fits(self, rows):
        return tf.debugging.assert_less_equal(
            rows, tf.constant(self.capacity, tf.int64),
            message=(
                f"RetrievalMetrics capacity exceeded: it holds at most capacity={self.capacity} rows per "
                "evaluation; pass a larger capacity (x: rows given, y: capacity)"
            ),
        )

    @staticmethod
    def _scatter(variable, indices, updates):
        scatter_rows(variable, indices, updates)

    # --- result -----------------------------------------------------------------

    def result(self):
        if self.query_buffer is None:
            return {key: tf.constant(0.0) for key in self.result_keys}
        count = tf.convert_to_tensor(self.count)
        with tf.control_dependencies([self._assert_fits(count)]):
            rows = tf.cast(tf.minimum(count, self.capacity), tf.int32)
        images = tf.convert_to_tensor(self.query_buffer)
        texts = tf.convert_to_tensor(self.gallery_buffer)
        groups = tf.convert_to_tensor(self.group_buffer)
        held = tf.range(self._allocated) < rows
        first = tf.logical_and(held, tf.convert_to_tensor(self.first_buffer) > 0.5)
        # text → image: every caption against the distinct images; image → text: each distinct image
        # against every caption.
        summaries = [
            _tf_rank_summary(texts, groups, held, images, groups, first, rows, self._block_size, self.ks),
            _tf_rank_summary(images, groups, first, texts, groups, held, rows, self._block_size, self.ks),
        ]
        values = []
        for recalls, _, _ in summaries:
            values += recalls
        for _, mean, median in summaries:
            values += [mean, median]
        return dict(zip(self.result_keys, values))

    def reset_state(self):
        for variable in self.variables:
            variable.assign(tf.zeros(variable.shape, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "capacity": self.capacity,
                "ks": list(self.ks),
                "embedding_dim": self.embedding_dim,
                "query_key": self.query_key,
                "gallery_key": self.gallery_key,
                "group_key": self.group_key,
                "query_block_size": self.query_block_size,
            }
        )
        return config
