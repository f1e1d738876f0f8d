"""Search an image gallery with a dual encoder: `Index`, and `contact_sheet` to look at the matches.

An `Index` holds the unit-length embeddings `[N, E]` of a gallery and one key
per row (the file path, or the row number for an in-memory array). Searching
scores every gallery row by cosine similarity (the dot product of unit
vectors) and returns the `k` best `(key, score)` pairs per query, best first.
An index saves to, and loads from, one `.npz` file.

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
import hashlib
import json
import math
import os
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kerasmm import validation
from kerasmm.data import errors
from kerasmm.version import __version__

INDEX_FORMAT = "kerasmm.search.Index"
INDEX_FORMAT_VERSION = 1
_DECODE_THREADS = min(8, os.cpu_count() or 1)


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


class Index:
    """A searchable gallery: unit-length embeddings `[N, E]` with one key per row.

    Build one with `Index.from_images`, or directly from precomputed
    embeddings. Keys are what searches return: file paths, row numbers, ids.

    Args:
        embeddings: float `[N, E]`, one unit-length row per gallery item.
        keys: N keys (str or int); defaults to the row numbers 0..N-1.
        metadata: dict of JSON-serialisable facts kept with the index.

    Attributes:
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

    def __init__(self, embeddings, keys=None, metadata=None):
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"Index embeddings must be [N, E], got shape {embeddings.shape}.")
        if embeddings.shape[0] == 0:
            raise ValueError("Cannot build an index of an empty gallery (no embeddings).")
        if embeddings.shape[1] == 0:
            raise ValueError("Index embeddings have width 0.")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        keys = list(range(len(embeddings))) if keys is None else list(keys)
        if len(keys) != len(embeddings):
            raise ValueError(f"Got {len(keys)} keys for {len(embeddings)} embeddings; give one key per row.")
        self.keys = keys
        self.metadata = dict(metadata or {})
        self.metadata["embedding_dim"] = self.dim
        self.skipped = errors.SkippedRecords("Index.from_images")

    def __len__(self):
        return len(self.keys)

    def __repr__(self):
        return f"Index({len(self)} items, embedding_dim={self.dim})"

    @property
    def dim(self):
        """Embedding width E."""
        return int(self.embeddings.shape[1])

    # --- building --------------------------------------------------------------

    @classmethod
    def from_images(cls, model, images=None, paths=None, batch_size=256, image_size=None, on_error="raise",
                    verbose=0):
        """Embed an image gallery with a dual encoder's image tower, `batch_size` images at a time.

        Give either `images` (uint8 `[N, H, W, 3]`; keys are the row numbers)
        or `paths` (image files, decoded with `kerasmm.data.image_ops` and
        resized to the model's image size, or `image_size`; keys are the
        paths). A file that is missing, truncated or not an image raises a
        `kerasmm.data.BadRecordError` naming it under `on_error="raise"`, and
        is dropped and listed on `index.skipped` under `on_error="skip"`.
        `verbose=1` shows a `keras.utils.Progbar` of the images embedded (on
        stdout, as Keras' `predict` does).

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
            from kerasmm.data import image_ops

            converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
            policy, interpolation = image_ops.policy_of(converter), image_ops.interpolation_of(converter)
            keys, chunks = [], []
            progress = _progress(len(paths), verbose)
            with ThreadPoolExecutor(_DECODE_THREADS) as pool:
                for start in range(0, len(paths), batch_size):
                    batch_paths = paths[start: start + batch_size]
                    loaded = list(pool.map(lambda p: _load_image_file(p, size, policy, interpolation), batch_paths))
                    batch = []
                    for path, (image, reason) in zip(batch_paths, loaded):
                        if image is None:
                            errors.bad_record(on_error, skipped, path, reason)
                            continue
                        batch.append(image)
                        keys.append(path)
                    if batch:
                        chunks.append(model.encode_image(np.stack(batch), batch_size=batch_size, verbose=0))
                    progress.add(len(batch_paths))
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
        index = cls(np.concatenate(chunks, axis=0), keys=keys, metadata=metadata)
        index.skipped = skipped
        return index

    # --- searching -------------------------------------------------------------

    def search(self, query_embeddings, k=5):
        """The `k` best gallery matches of each query embedding: a list (one per query) of `(key, score)`.

        Scores are dot products (cosine similarity of unit vectors), best
        first; `k` larger than the gallery is cut to its size.

        Example:
        ```python
        import numpy as np
        from kerasmm.search import Index
        index = Index(np.eye(4, dtype="float32"))
        index.search(np.eye(4, dtype="float32")[:1], k=2)   # [[(0, 1.0), (1, 0.0)]]
        ```
        """
        k = validation.positive_int("k", k)
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
        scores = queries @ self.embeddings.T  # [Q, N]
        if k < len(self):
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(len(self)), scores.shape)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        return [[(self.keys[j], float(s)) for j, s in zip(row, row_scores)]
                for row, row_scores in zip(top, top_scores)]

    def _check_model_width(self, model):
        dim = model_embedding_dim(model)
        if dim is not None and dim != self.dim:
            raise ValueError(
                f"The model embeds into {dim} dimensions but the index holds {self.dim}-dimensional embeddings; "
                "search with the model that built the index."
            )

    def search_text(self, model, queries, k=5):
        """Search the gallery with text: for each query string, its `k` best `(key, score)`, best first.

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
        return self.search(model.encode_text(queries), k)

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
        """Write the index to one `.npz` file at exactly `path`; returns `path`.

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
                    "key_type": key_type, "num_items": len(self)}
        with open(path, "wb") as f:  # a file object, so numpy does not append ".npz"
            np.savez(
                f,
                embeddings=self.embeddings,
                keys=np.array([str(k) for k in self.keys], dtype=str),
                metadata=np.array(json.dumps(metadata, default=str)),
            )
        return path

    @classmethod
    def load(cls, path):
        """Read an index written by `Index.save`.

        Example:
        ```python
        import numpy as np
        from kerasmm.search import Index
        Index(np.eye(2, dtype="float32"), keys=["a", "b"]).save("/tmp/gallery.npz")
        Index.load("/tmp/gallery.npz").keys   # ['a', 'b']
        ```
        """
        path = os.fspath(path)
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
            except ValueError as error:
                raise ValueError(f"{not_index}: {error}") from None
        if not isinstance(metadata, dict) or metadata.get("format") != INDEX_FORMAT:
            raise ValueError(f"{not_index}: its metadata does not name the format {INDEX_FORMAT!r}.")
        if metadata.get("key_type") == "int":
            keys = [int(k) for k in keys]
        for name in ("format", "format_version", "key_type", "num_items"):
            metadata.pop(name, None)
        return cls(embeddings, keys=keys, metadata=metadata)


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
