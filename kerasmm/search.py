"""Search an image gallery with a dual encoder: `Index`, and `contact_sheet` to look at the matches.

An `Index` holds the unit-length embeddings `[N, E]` of a gallery and one key
per row (the file path, or the row number for an in-memory array). Searching
scores gallery rows by cosine similarity (the dot product of unit vectors)
and returns the `k` best `(key, score)` pairs per query, best first.

Two ways to search (`method=`):

- "exact" scores every row: right for small galleries, and needs nothing
  beyond numpy.
- "approximate" scans compact 4-bit codes of the rows (faiss' product
  quantisation "fast scan", `pip install kerasmm[search]`) to pick
  `candidates` rows per query, then scores those exactly, so the returned
  scores are true dot products and only the recall is approximate. At one
  million random 256-wide rows on two cores it answered 20 times the
  queries per second of exact search at recall@10 0.966
  (`benchmarks/search.py`).
- "auto" (the default) is approximate from `APPROXIMATE_MIN_ITEMS` rows
  when faiss is installed, exact otherwise.

`Index.search_text(model, queries, k, rerank=K)` re-orders each query's K
best images by the model's image–text matching head (a dual encoder built
with `matching_layers > 0`), reading the images back from the index's file
keys, or from `images=` for an index of an in-memory array.

`Index.from_images(model, paths=...)` streams image files through tf.data
(parallel decoding, batches embedded one at a time), so a gallery's images
are never all in memory. An index saves to, and loads from, one `.npz` file,
its approximate-search codes included.

Example:
```python
import kerasmm
from kerasmm.search import Index
model = kerasmm.zoo.get("tiny_dual_encoder")
features, _ = kerasmm.data.shapes_arrays(num_examples=12, image_size=32)
index = Index.from_images(model, images=features["image"])
index.search_text(model, ["a red circle"], k=3)   # [[(key, score), ...]]
```
"""

import datetime
import functools
import hashlib
import json
import math
import os
import textwrap
import zipfile

import numpy as np

from kerasmm import validation
from kerasmm.data import errors
from kerasmm.version import __version__

INDEX_FORMAT = "kerasmm.search.Index"
INDEX_FORMAT_VERSION = 2  # 2 added the approximate-search codes ("ann"); version 1 files load as they are
METHODS = ("auto", "exact", "approximate")
# "auto" searches approximately from this many gallery rows (with faiss installed). benchmarks/search.py, 2 cores:
# at 100,000 rows the codes build in 1 s and answer 11x exact search's queries/s at recall@10 0.990; smaller
# galleries are searched exactly in under 2 ms a query.
APPROXIMATE_MIN_ITEMS = 100_000
# The benchmark's fastest setting with recall@10 >= 0.95 at one million rows (0.966, 20x exact search): 4 dims a
# code scan 1.7x faster but reach only 0.88 with 2048 candidates; 128 candidates give 0.91.
DEFAULT_DIMS_PER_CODE = 2
DEFAULT_CANDIDATES = 256
_APPROXIMATE_MIN_ROWS = 1000  # faiss' k-means wants 39 rows per centroid: 624 for each 16-entry codebook
_TRAIN_ROWS = 65536  # rows sampled to train the codebooks (faiss samples 256 per centroid of them)
_ADD_ROWS = 65536  # rows encoded at a time (bounds the padded copy)
_SCORE_ELEMENTS = 1 << 25  # query × row scores held at once by exact search (128 MiB)
_RERANK_ELEMENTS = 1 << 24  # query × candidate × width floats gathered at once by the re-rank (64 MiB)
INSTALL_HINT = "Approximate search needs the faiss library: pip install kerasmm[search] (or pip install faiss-cpu)."
_RESERVED = ("format", "format_version", "key_type", "num_items", "search_method", "dims_per_code", "candidates",
             "ann_width")


def approximate_available():
    """Whether approximate search can run here (the faiss library imports).

    Example:
    ```python
    from kerasmm.search import approximate_available
    approximate_available()   # True after pip install kerasmm[search]
    ```
    """
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return faiss


def _check_image_model(model):
    """The model must embed images and text into one space (an image-text dual encoder)."""
    if not (hasattr(model, "encode_image") and hasattr(model, "encode_text")):
        raise ValueError(
            f"Image search needs an image-text dual encoder (kerasmm DualEncoder); got {type(model).__name__}."
        )
    modality = getattr(model, "query_modality", "image")
    if modality != "image":
        raise ValueError(
            f"Image search needs an image-text dual encoder; this {type(model).__name__} "
            f"pairs text with {modality}."
        )


def model_embedding_dim(model):
    """The width E of a dual encoder's embeddings (None if it cannot be told).

    Example:
    ```python
    import kerasmm
    from kerasmm.search import model_embedding_dim
    model_embedding_dim(kerasmm.zoo.get("tiny_dual_encoder"))   # 16
    ```
    """
    backbone = getattr(model, "backbone", None)
    dim = getattr(backbone, "embedding_dim", None)
    return int(dim) if dim is not None else None


def model_image_size(model):
    """(height, width) the model's image tower takes, read from its preprocessor (else its backbone).

    Example:
    ```python
    import kerasmm
    from kerasmm.search import model_image_size
    model_image_size(kerasmm.zoo.get("tiny_dual_encoder"))   # (32, 32)
    ```
    """
    preprocessor = getattr(model, "preprocessor", None)
    converter = getattr(preprocessor, "image_converter", None)
    size = getattr(converter, "image_size", None)
    if size is None:
        size = getattr(getattr(model, "backbone", None), "image_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _model_metadata(model):
    metadata = {"model_name": getattr(model, "name", type(model).__name__)}
    try:
        config = json.dumps(model.get_config(), sort_keys=True, default=str)
        metadata["model_config_hash"] = hashlib.sha256(config.encode()).hexdigest()[:16]
    except Exception:  # noqa: BLE001 - the hash is informational only
        pass
    return metadata


def _load_image_file(path, image_size, policy, interpolation="bilinear"):
    """`(uint8 [H, W, 3] resized image, None)` or `(None, reason)` for a file that cannot be used.

    The readers' and the exported model's path (`image_ops.load_image`), so search embeds what serving embeds.
    """
    import tensorflow as tf

    from kerasmm.data import image_header, image_ops

    reason = image_header.check_image(path)
    if reason is not None:
        return None, reason
    try:
        with open(path, "rb") as f:
            data = f.read()
        return image_ops.load_image(tf.constant(data), image_size, policy, interpolation).numpy(), None
    except (tf.errors.OpError, OSError) as error:
        return None, f"cannot decode image ({_short_error(error)})"


def _short_error(error):
    """One short line from an exception; TensorFlow's op and device prefixes dropped."""
    message = getattr(error, "message", None) or str(error)
    message = message.split("}}")[-1].split("[Op:")[0]
    return " ".join(message.split())[:200] or type(error).__name__


def _as_image_batch(images, what):
    images = np.asarray(images)
    if images.ndim == 3 and images.shape[-1] == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} must be images [N, height, width, 3], got shape {images.shape}.")
    return images


def _gallery_files(paths, size, policy, interpolation, batch_size):
    """tf.data batches `(uint8 images [b, H, W, 3], int64 positions [b])` of the files in `paths`.

    A file `image_header.check_image` refuses, or the decoder then fails on,
    vanishes from the stream together with its position; the caller tells
    which positions are missing.
    """
    import tensorflow as tf

    from kerasmm.data import image_header

    def readable(path):  # through tf.numpy_function: the Python pre-check the readers and today's search run
        return np.bool_(image_header.check_image(os.fsdecode(path)) is None)

    def check(path, position):
        ok = tf.numpy_function(readable, [path], tf.bool, stateful=False)
        return path, position, tf.ensure_shape(ok, [])

    load_file = _file_loader(tuple(size), policy, interpolation)

    def load(path, position, ok):
        return load_file(path), position

    positions = tf.range(len(paths), dtype=tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), positions))
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda path, position, ok: ok)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors()  # the decoder refused it: dropped with its position, reported by the caller
    ds = ds.batch(batch_size).prefetch(2)
    options = tf.data.Options()
    # One thread per decode: the parallel map's calls and the image tower share the cores (as in the readers).
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


@functools.lru_cache(maxsize=8)
def _file_loader(size, policy, interpolation):
    """A `tf.function` path → uint8 `[H, W, 3]`: `image_ops.load_image` traced once per size, not per gallery."""
    import tensorflow as tf

    from kerasmm.data import image_ops

    return tf.function(lambda path: image_ops.load_image(tf.io.read_file(path), size, policy, interpolation),
                       input_signature=[tf.TensorSpec([], tf.string)])


def _image_embedder(model):
    """A function uint8 images `[b, H, W, 3]` → embeddings `[b, E]` (numpy) for one batch of the stream."""
    preprocessor = getattr(model, "preprocessor", None)
    if hasattr(model, "tower") and hasattr(preprocessor, "prepare"):
        tower = model.tower("image")
        # predict_on_batch: what encode_image runs, without building a dataset adapter for every batch.
        return lambda images: np.asarray(tower.predict_on_batch(preprocessor.prepare("image", images)))
    return lambda images: model.encode_image(images, batch_size=max(1, len(images)), verbose=0)


class _FastScan:
    """faiss' 4-bit product-quantisation fast scan of the gallery rows: candidates for an exact re-rank.

    Each row is cut into groups of `dims_per_code` dimensions (zero-padded to
    a whole number of code pairs, which leaves dot products unchanged); each
    group is stored as the nearest of 16 centroids learnt for it. A query's
    dot products with all 16 centroids of every group fit in SIMD registers,
    so scanning a row costs a few instructions instead of E multiply-adds.
    """

    def __init__(self, index, width):
        self.index = index
        self.width = width

    @classmethod
    def build(cls, embeddings, dims_per_code):
        faiss = _faiss()
        rows, dim = embeddings.shape
        width = -(-dim // (2 * dims_per_code)) * 2 * dims_per_code  # whole pairs of 4-bit codes
        # Blocks of 64 rows (bbs) rather than faiss' default 32: AVX-512 fills its registers, and the scan of one
        # million rows ran 35% faster (benchmarks/search.py); AVX2 machines read the same layout.
        index = faiss.IndexPQFastScan(width, width // dims_per_code, 4, faiss.METRIC_INNER_PRODUCT, 64)
        sample = np.sort(np.random.default_rng(0).choice(rows, min(rows, _TRAIN_ROWS), replace=False))
        index.train(_padded(embeddings[sample], width))
        for start in range(0, rows, _ADD_ROWS):
            index.add(_padded(embeddings[start: start + _ADD_ROWS], width))
        return cls(index, width)

    def candidates(self, queries, count):
        """`[Q, count]` row numbers of the best-scanning rows per query (-1 where there are fewer)."""
        _, rows = self.index.search(_padded(queries, self.width), count)
        return rows

    def to_array(self):
        return _faiss().serialize_index(self.index)

    @classmethod
    def from_array(cls, data, width):
        return cls(_faiss().deserialize_index(np.ascontiguousarray(data, dtype=np.uint8)), width)


def _padded(rows, width):
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.shape[1] == width:
        return rows
    return np.pad(rows, [(0, 0), (0, width - rows.shape[1])])


def _top_k(scores, k):
    """`(columns, scores)` of the `k` highest scores of each row, best first (ties in column order)."""
    if k < scores.shape[1]:
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


class Index:
    """A searchable gallery: unit-length embeddings `[N, E]` with one key per row.

    Build one with `Index.from_images`, or directly from precomputed
    embeddings. Keys are what searches return: file paths, row numbers, ids.

    Args:
        embeddings: float `[N, E]`, one unit-length row per gallery item.
        keys: N keys (str or int); defaults to the row numbers 0..N-1.
        metadata: dict of JSON-serialisable facts kept with the index.
        method: "auto" (approximate from `APPROXIMATE_MIN_ITEMS` rows when
            faiss is installed, else exact), "exact" or "approximate" (needs
            `pip install kerasmm[search]` and at least 1000 rows).
        dims_per_code: approximate search stores each group of this many
            dimensions as one 4-bit code (E/2 bytes a row at 2, the default);
            fewer dimensions per code rank candidates better but scan slower.
            Fixed when the index is built.
        candidates: rows per query that approximate search scores exactly
            (at least `k`); more raise recall and cost time. An attribute
            you may change between searches.

    Attributes:
        method: the method searches use, "exact" or "approximate".
        skipped: a `kerasmm.data.SkippedRecords` of the files `from_images`
            dropped under `on_error="skip"` (empty otherwise).

    Example:
    ```python
    import numpy as np
    from kerasmm.search import Index
    index = Index(np.eye(3, dtype="float32"), keys=["a.png", "b.png", "c.png"])
    index.search(np.array([[0.0, 1.0, 0.0]]), k=2)   # [[('b.png', 1.0), ('a.png', 0.0)]]
    ```
    """

    def __init__(self, embeddings, keys=None, metadata=None, method="auto", dims_per_code=DEFAULT_DIMS_PER_CODE,
                 candidates=DEFAULT_CANDIDATES):
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"Index embeddings must be [N, E], got shape {embeddings.shape}.")
        if embeddings.shape[0] == 0:
            raise ValueError("Cannot build an index of an empty gallery (no embeddings).")
        if embeddings.shape[1] == 0:
            raise ValueError("Index embeddings have width 0.")
        validation.one_of("method", method, METHODS)
        self.dims_per_code = validation.positive_int("dims_per_code", dims_per_code)
        self.candidates = validation.positive_int("candidates", candidates)
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        keys = list(range(len(embeddings))) if keys is None else list(keys)
        if len(keys) != len(embeddings):
            raise ValueError(f"Got {len(keys)} keys for {len(embeddings)} embeddings; give one key per row.")
        self.keys = keys
        self.metadata = dict(metadata or {})
        self.metadata["embedding_dim"] = self.dim
        self.skipped = errors.SkippedRecords("Index.from_images")
        self._scan = _FastScan.build(self.embeddings, self.dims_per_code) if self._approximate(method) else None

    def _approximate(self, method):
        """Whether `method` means approximate search for this gallery (raising if it cannot be had)."""
        if method == "exact":
            return False
        if method == "auto":
            return len(self) >= APPROXIMATE_MIN_ITEMS and approximate_available()
        _faiss()
        if len(self) < _APPROXIMATE_MIN_ROWS:
            raise ValueError(
                f"Approximate search needs a gallery of at least {_APPROXIMATE_MIN_ROWS} items; this one has "
                f"{len(self)}. Use method='exact' (or 'auto')."
            )
        return True

    def __len__(self):
        return len(self.keys)

    def __repr__(self):
        return f"Index({len(self)} items, embedding_dim={self.dim}, method={self.method!r})"

    @property
    def dim(self):
        """Embedding width E."""
        return int(self.embeddings.shape[1])

    @property
    def method(self):
        """The method searches use: "approximate" (scan codes, re-rank candidates) or "exact"."""
        return "exact" if self._scan is None else "approximate"

    # --- building --------------------------------------------------------------

    @classmethod
    def from_images(cls, model, images=None, paths=None, batch_size=256, image_size=None, on_error="raise",
                    verbose=0, method="auto", dims_per_code=DEFAULT_DIMS_PER_CODE, candidates=DEFAULT_CANDIDATES):
        """Embed an image gallery with a dual encoder's image tower, `batch_size` images at a time.

        Give either `images` (uint8 `[N, H, W, 3]`; keys are the row numbers)
        or `paths` (image files; keys are the paths). Files stream through a
        tf.data pipeline: read and decoded in parallel with
        `kerasmm.data.image_ops.load_image` (as readers and exported models
        do), resized to the model's image size (or `image_size`), batched and
        embedded batch by batch, so only a few batches of images are in memory
        at once. A file that is missing, truncated or not an image raises a
        `kerasmm.data.BadRecordError` naming it under `on_error="raise"`, and
        is dropped and listed on `index.skipped` under `on_error="skip"`.
        `verbose=1` shows a `keras.utils.Progbar` of the images embedded (on
        stdout, as Keras' `predict` does). `method`, `dims_per_code` and
        `candidates` are `Index`'s.

        Example:
        ```python
        import kerasmm
        from kerasmm.search import Index
        model = kerasmm.zoo.get("tiny_dual_encoder")
        features, _ = kerasmm.data.shapes_arrays(num_examples=8, image_size=32)
        index = Index.from_images(model, images=features["image"], batch_size=4)
        ```
        """
        _check_image_model(model)
        batch_size = validation.positive_int("batch_size", batch_size)
        errors.check_on_error(on_error)
        validation.one_of("method", method, METHODS)
        if method == "approximate":
            _faiss()  # before embedding the gallery, not after
        if (images is None) == (paths is None):
            raise ValueError("Give exactly one of images= (an array of images) or paths= (image files).")
        skipped = errors.SkippedRecords("Index.from_images")
        if images is not None:
            images = np.asarray(images)
            if images.size == 0 or len(images) == 0:
                raise ValueError("Cannot build an index of an empty gallery (no images).")
            images = _as_image_batch(images, "Gallery images")
            keys = list(range(len(images)))
            progress = _progress(len(images), verbose)
            chunks = []
            for i in range(0, len(images), batch_size):
                chunks.append(model.encode_image(images[i: i + batch_size], batch_size=batch_size, verbose=0))
                progress.add(len(chunks[-1]))
        else:
            paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
            if not paths:
                raise ValueError("Cannot build an index of an empty gallery (no image paths).")
            size = image_size if image_size is not None else model_image_size(model)
            if size is None:
                raise ValueError("Cannot tell the model's image size; pass image_size=(height, width).")
            size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
            keys, chunks = _embed_files(model, paths, size, batch_size, on_error, skipped, verbose)
            skipped.warn()
            if not keys:
                raise ValueError(
                    f"Cannot build an index of an empty gallery: all {len(paths)} image file(s) were unreadable "
                    f"({skipped.summary(limit=3)})"
                )
        metadata = {
            **_model_metadata(model),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "kerasmm_version": __version__,
        }
        index = cls(np.concatenate(chunks, axis=0), keys=keys, metadata=metadata, method=method,
                    dims_per_code=dims_per_code, candidates=candidates)
        index.skipped = skipped
        return index

    # --- searching -------------------------------------------------------------

    def search(self, query_embeddings, k=5):
        """The `k` best gallery matches of each query embedding: a list (one per query) of `(key, score)`.

        Scores are dot products (cosine similarity of unit vectors), best
        first; `k` larger than the gallery is cut to its size. Under
        approximate search the scores are exact too; a true match may be
        missed (recall@10 0.966 on one million random vectors at the
        defaults, 0.990 on 100,000: `benchmarks/search.py`).

        Example:
        ```python
        import numpy as np
        from kerasmm.search import Index
        index = Index(np.eye(4, dtype="float32"))
        index.search(np.eye(4, dtype="float32")[:1], k=2)   # [[(0, 1.0), (1, 0.0)]]
        ```
        """
        k = validation.positive_int("k", k)
        rows, scores = self._search_rows(query_embeddings, k)
        return [[(self.keys[j], float(s)) for j, s in zip(row, row_scores)] for row, row_scores in zip(rows, scores)]

    def _search_rows(self, query_embeddings, k):
        """`(rows [Q, k'], scores [Q, k'])` of the best gallery rows per query, best first (k' = min(k, N))."""
        queries = np.asarray(query_embeddings, dtype=np.float32)
        if queries.ndim == 1 and queries.size:
            queries = queries[None]
        if queries.ndim != 2 or len(queries) == 0:
            raise ValueError(f"Query embeddings must be a non-empty [Q, E] array, got shape {queries.shape}.")
        if queries.shape[1] != self.dim:
            raise ValueError(
                f"Query embeddings have width {queries.shape[1]} but the index holds width {self.dim} embeddings."
            )
        k = min(k, len(self))
        count = min(len(self), max(self.candidates, k))
        if self._scan is None or count == len(self):
            return self._search_exact(queries, k)
        return self._search_candidates(queries, k, count)

    def _search_exact(self, queries, k):
        step = max(1, _SCORE_ELEMENTS // len(self))  # queries at a time, so the [Q, N] scores stay bounded
        parts = [_top_k(queries[i: i + step] @ self.embeddings.T, k) for i in range(0, len(queries), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search_candidates(self, queries, k, count):
        found = self._scan.candidates(queries, count)  # [Q, count]
        step = max(1, _RERANK_ELEMENTS // (count * self.dim))
        rows, scores = [], []
        for i in range(0, len(queries), step):
            block = found[i: i + step]
            valid = block >= 0
            block = np.where(valid, block, 0)
            # einsum, not matmul: one pass in numpy's own loop, where matmul would make a small BLAS call per query.
            exact = np.einsum("qce,qe->qc", self.embeddings[block], queries[i: i + step])  # [q, count]
            exact[~valid] = -np.inf
            columns, top = _top_k(exact, k)
            rows.append(np.take_along_axis(block, columns, axis=1))
            scores.append(top)
        return np.concatenate(rows), np.concatenate(scores)

    def _check_model_width(self, model):
        dim = model_embedding_dim(model)
        if dim is not None and dim != self.dim:
            raise ValueError(
                f"The model embeds into {dim} dimensions but the index holds {self.dim}-dimensional embeddings; "
                "search with the model that built the index."
            )

    def search_text(self, model, queries, k=5, rerank=None, images=None):
        """Search the gallery with text: for each query string, its `k` best `(key, score)`, best first.

        `rerank=K` (K >= k) re-scores each query's K most similar images with
        the model's image–text matching head (a dual encoder built with
        `matching_layers > 0`) and returns the k best by it; the scores are
        then the head's match probabilities (0 to 1), not cosines. The head
        looks at the images themselves: an index built from `paths=` reads its
        keys' files again (they must still be there), one built from an array
        needs that array, `images=` (uint8 `[N, H, W, 3]`, row i = row i of
        the index). Only the candidates' images are read.

        Example:
        ```python
        import kerasmm
        from kerasmm.search import Index
        model = kerasmm.zoo.get("tiny_dual_encoder")
        features, _ = kerasmm.data.shapes_arrays(num_examples=8, image_size=32)
        index = Index.from_images(model, images=features["image"])
        index.search_text(model, ["a red circle", "a blue square"], k=2)
        ```
        """
        _check_image_model(model)
        k = validation.positive_int("k", k)
        queries = [queries] if isinstance(queries, str) else list(queries)
        if not queries:
            raise ValueError("No queries: give at least one query string.")
        for i, query in enumerate(queries):
            if not isinstance(query, str):
                raise ValueError(f"Query {i} is a {type(query).__name__}, not a string.")
            if not query.strip():
                raise ValueError(f"Query {i} is empty; give some words to search for.")
        self._check_model_width(model)
        if rerank is None:
            if images is not None:
                raise ValueError("images= is only used to re-rank; pass rerank=K as well (or leave images out).")
            return self.search(model.encode_text(queries), k)
        rerank = validation.positive_int("rerank", rerank)
        if rerank < k:
            raise ValueError(f"rerank={rerank} must be at least k={k}: the head re-orders the top rerank images "
                             "and returns the best k of them.")
        if getattr(model, "matching_head", None) is None:
            raise ValueError(
                f"rerank needs a dual encoder with an image–text matching head; this {type(model).__name__} has "
                "none (build one with matching_layers > 0, e.g. kerasmm.zoo.get('dual_encoder', matching_layers=1))."
            )
        rows, _ = self._search_rows(model.encode_text(queries), rerank)
        distinct, positions = np.unique(rows, return_inverse=True)
        gallery = self._gallery_images(model, distinct, images)
        pairs = np.stack([np.repeat(np.arange(len(queries)), rows.shape[1]), positions.reshape(-1)], axis=1)
        logits = model.match(queries, gallery, pairs=pairs).reshape(rows.shape)
        probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.keys[rows[q, j]], float(probabilities[q, j])) for j in best[q]] for q in range(len(queries))]

    def _gallery_images(self, model, rows, images):
        """uint8 images `[len(rows), H, W, 3]` of the gallery `rows`: from `images`, else from the key files."""
        if images is not None:
            images = _as_image_batch(images, "Gallery images")
            if len(images) != len(self):
                raise ValueError(f"images= holds {len(images)} images but the index {len(self)} rows; pass the "
                                 "array the index was built from (row i = row i of the index).")
            return images[rows]
        keys = [self.keys[r] for r in rows]
        if not all(isinstance(key, str) for key in keys):
            raise ValueError(
                "Re-ranking needs the gallery images, and this index's keys are not file paths (it was built from "
                "an in-memory array): pass images=, the [N, H, W, 3] array it was built from."
            )
        from kerasmm.data import image_ops

        size = model_image_size(model)
        if size is None:
            raise ValueError("Cannot tell the model's image size to read the gallery files for re-ranking.")
        converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
        loaded = []
        for key in keys:
            image, reason = _load_image_file(key, size, image_ops.policy_of(converter),
                                             image_ops.interpolation_of(converter))
            if image is None:
                raise ValueError(f"Cannot re-rank: the gallery file {key} ({reason}); rebuild the index, or pass "
                                 "images=.")
            loaded.append(image)
        return np.stack(loaded)

    def search_image(self, model, images, k=5):
        """Search the gallery with images (uint8 `[Q, H, W, 3]`): for each, its `k` best `(key, score)`.

        Example (`model`, `features` and `index` as in `search_text`'s):
        ```python
        index.search_image(model, features["image"][:1], k=1)   # [[(0, ~1.0)]]: an image finds itself
        ```
        """
        _check_image_model(model)
        k = validation.positive_int("k", k)
        images = np.asarray(images)
        if images.size == 0 or len(images) == 0:
            raise ValueError("No query images: give at least one image.")
        images = _as_image_batch(images, "Query images")
        self._check_model_width(model)
        return self.search(model.encode_image(images), k)

    # --- saving ----------------------------------------------------------------

    def save(self, path):
        """Write the index to one `.npz` file at exactly `path`, approximate-search codes included; returns `path`.

        Example:
        ```python
        import numpy as np
        from kerasmm.search import Index
        Index(np.eye(2, dtype="float32"), keys=["a", "b"]).save("/tmp/gallery.npz")
        ```
        """
        path = os.fspath(path)
        key_type = "int" if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in self.keys) \
            else "str"
        metadata = {**self.metadata, "format": INDEX_FORMAT, "format_version": INDEX_FORMAT_VERSION,
                    "key_type": key_type, "num_items": len(self), "search_method": self.method,
                    "dims_per_code": self.dims_per_code, "candidates": self.candidates}
        arrays = {}
        if self._scan is not None:
            # The codes (E/2/dims_per_code bytes a row) load in a blink; training and encoding them again
            # takes seconds per million rows (benchmarks/search.py).
            arrays["ann"] = self._scan.to_array()
            metadata["ann_width"] = self._scan.width
        with open(path, "wb") as f:  # a file object, so numpy does not append ".npz"
            np.savez(
                f,
                embeddings=self.embeddings,
                keys=np.array([str(k) for k in self.keys], dtype=str),
                metadata=np.array(json.dumps(metadata, default=str)),
                **arrays,
            )
        return path

    @classmethod
    def load(cls, path, method="auto"):
        """Read an index written by `Index.save` (any kerasmm version).

        `method="auto"` searches as the index was saved (approximately if it
        was, and faiss is installed; an older file by `Index`'s rule), "exact"
        or "approximate" choose (building the codes if the file has none).

        Example:
        ```python
        import numpy as np
        from kerasmm.search import Index
        Index(np.eye(2, dtype="float32"), keys=["a", "b"]).save("/tmp/gallery.npz")
        Index.load("/tmp/gallery.npz").keys   # ['a', 'b']
        ```
        """
        path = os.fspath(path)
        validation.one_of("method", method, METHODS)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No index file at {path}.")
        not_index = f"{path} is not a kerasmm retrieval index (write one with Index.save)"
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic.startswith(b"\x93NUMPY"):
            raise ValueError(f"{not_index}: it is a single .npy array, not an .npz archive.")
        if not magic.startswith(b"PK"):
            raise ValueError(f"{not_index}: it is not an .npz (zip) archive.")
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{not_index}: {_short_error(error)}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{not_index}: it is a single .npy array, not an .npz archive.")
        with archive:
            missing = [name for name in ("embeddings", "keys", "metadata") if name not in archive.files]
            if missing:
                raise ValueError(f"{not_index}: the archive lacks {missing}.")
            try:
                metadata = json.loads(str(archive["metadata"]))
                embeddings = archive["embeddings"]
                keys = [str(k) for k in archive["keys"]]
                codes = archive["ann"] if "ann" in archive.files else None
            except ValueError as error:
                raise ValueError(f"{not_index}: {error}") from None
        if not isinstance(metadata, dict) or metadata.get("format") != INDEX_FORMAT:
            raise ValueError(f"{not_index}: its metadata does not name the format {INDEX_FORMAT!r}.")
        if metadata.get("key_type") == "int":
            keys = [int(k) for k in keys]
        settings = {"dims_per_code": metadata.get("dims_per_code", DEFAULT_DIMS_PER_CODE),
                    "candidates": metadata.get("candidates", DEFAULT_CANDIDATES)}
        width = metadata.get("ann_width")
        for name in _RESERVED:
            metadata.pop(name, None)
        use_codes = codes is not None and (method == "approximate" or (method == "auto" and approximate_available()))
        index = cls(embeddings, keys=keys, metadata=metadata, method="exact" if use_codes else method, **settings)
        if use_codes:
            index._scan = _FastScan.from_array(codes, int(width))
            if index._scan.index.ntotal != len(index):
                raise ValueError(f"{not_index}: its approximate-search codes hold {index._scan.index.ntotal} rows, "
                                 f"not {len(index)}.")
        return index


def _embed_files(model, paths, size, batch_size, on_error, skipped, verbose):
    """`(keys, embedding chunks)` of the image files `paths`, streamed batch by batch; bad files reported."""
    from kerasmm.data import image_ops

    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    policy, interpolation = image_ops.policy_of(converter), image_ops.interpolation_of(converter)
    embed = _image_embedder(model)
    progress = _progress(len(paths), verbose)

    def report(missing):
        for position in missing:  # rare: find out why the pipeline dropped it, as today's per-file route said
            path = paths[position]
            _, reason = _load_image_file(path, size, policy, interpolation)
            errors.bad_record(on_error, skipped, path, reason or "cannot read or decode the image")

    keys, chunks, done = [], [], 0
    for images, positions in _gallery_files(paths, size, policy, interpolation, batch_size):
        positions = positions.numpy()
        last = int(positions[-1]) + 1
        if last - done != len(positions):
            report(np.setdiff1d(np.arange(done, last), positions))
        chunks.append(embed(images))
        keys.extend(paths[p] for p in positions)
        progress.add(last - done)
        done = last
    report(range(done, len(paths)))
    if done < len(paths):
        progress.add(len(paths) - done)
    return keys, chunks


# --- contact sheet -------------------------------------------------------------

_CELL_INCHES = (2.0, 2.5)  # width, height of one thumbnail with its caption
_DPI = 100
_THUMBNAIL = 256  # longest side, in pixels, of the images drawn


def _thumbnail(item):
    from kerasmm.data import image_header, image_ops

    if isinstance(item, (str, os.PathLike)):
        import tensorflow as tf

        path = os.fspath(item)
        reason = image_header.check_image(path)
        if reason is not None:
            raise ValueError(f"Cannot draw {path}: {reason}.")
        with open(path, "rb") as f:
            image = image_ops.decode_image(tf.constant(f.read()))
    else:
        image = np.asarray(item)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"Contact sheet images must be [height, width, 3], got shape {image.shape}.")
        if image.dtype != np.uint8:
            image = np.clip(np.round(image * 255.0 if image.max() <= 1.0 else image), 0, 255).astype(np.uint8)
    height, width = int(image.shape[0]), int(image.shape[1])
    if max(height, width) > _THUMBNAIL:
        scale = _THUMBNAIL / max(height, width)
        image = image_ops.resize_image(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    return np.asarray(image)


def contact_sheet(paths_or_images, captions, path, columns=5):
    """Draw images in a grid, each with its caption (e.g. score and key), into a PNG at `path`; returns `path`.

    Images are file paths or uint8 `[H, W, 3]` arrays; the grid has `columns`
    columns (fewer if there are fewer images). Drawn with matplotlib's Agg
    canvas, so no display is needed.

    Example:
    ```python
    import kerasmm
    from kerasmm.search import contact_sheet
    features, _ = kerasmm.data.shapes_arrays(num_examples=4, image_size=32)
    contact_sheet(list(features["image"]), ["0.91 a", "0.85 b", "0.80 c", "0.62 d"],
                  "/tmp/sheet.png", columns=2)
    ```
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = list(paths_or_images) if not isinstance(paths_or_images, np.ndarray) or paths_or_images.ndim == 4 \
        else [paths_or_images]
    captions = [captions] if isinstance(captions, str) else list(captions)
    if not items:
        raise ValueError("Nothing to draw: no images for the contact sheet.")
    if len(captions) != len(items):
        raise ValueError(f"Got {len(captions)} captions for {len(items)} images; give one caption per image.")
    validation.positive_int("columns", columns)
    thumbnails = [_thumbnail(item) for item in items]

    columns = min(int(columns), len(items))
    rows = math.ceil(len(items) / columns)
    figure = Figure(figsize=(columns * _CELL_INCHES[0], rows * _CELL_INCHES[1]), dpi=_DPI,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(items):
            continue
        ax.imshow(thumbnails[i], interpolation="nearest" if max(thumbnails[i].shape[:2]) < 64 else "antialiased")
        lines = []
        for part in str(captions[i]).split("\n"):
            lines.extend(textwrap.wrap(part, 26, max_lines=2, placeholder="…") or [""])
        ax.set_title("\n".join(lines[:4]), fontsize=8)
    path = os.fspath(path)
    figure.savefig(path, format="png", dpi=_DPI)
    return path


def _progress(total, verbose):
    """A `keras.utils.Progbar` over `total` images (silent at `verbose=0`)."""
    import keras

    return keras.utils.Progbar(total, verbose=verbose, unit_name="image")
