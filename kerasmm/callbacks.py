"""Keras callbacks for zoo models: what the model makes of a few held-out examples, in TensorBoard, each epoch.

`SampleSummaries` writes, at the end of every epoch (step = the epoch index,
as `keras.callbacks.TensorBoard` numbers its `epoch_*` scalars), into its own
TensorBoard run folder:

- captioners (a `generate` that captions images): the images
  (`<name>/images`, `tf.summary.image`) and a table of their generated and
  reference captions (`<name>/captions`, `tf.summary.text`);
- image-text dual encoders: a retrieval contact sheet (`<name>/retrieval`,
  `kerasmm.search.contact_sheet`: for a few of the examples' texts, the
  best-scoring images among the examples) and the same matches as text;
- text-to-image models: the images generated from the examples' texts
  (`<name>/generated`) with the texts (`<name>/prompts`).

Other models get nothing. Scalars are for `keras.callbacks.TensorBoard`
(which needs the `tensorboard` package).

Example:
```python
import tempfile
import keras
import kerasmm
from kerasmm.callbacks import SampleSummaries
model = kerasmm.zoo.get("tiny_captioner")
train = kerasmm.data.shapes(num_examples=16, batch_size=8, task="captioning")
held_out = kerasmm.data.shapes(num_examples=8, batch_size=8, task="captioning", split="test")
logs = tempfile.mkdtemp()
model.fit(train, epochs=1, callbacks=[keras.callbacks.TensorBoard(logs),
                                     SampleSummaries.from_dataset(logs + "/samples", held_out)])
```
"""

import os
import tempfile

import keras
import numpy as np

from kerasmm import validation

MAX_SAMPLES = 8
TOP_K = 5
MAX_QUERIES = 3


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _markdown_cell(value):
    return _text(value).replace("|", "\\|").replace("\n", " ")


class SampleSummaries(keras.callbacks.Callback):
    """Each epoch, TensorBoard images and text of the model's outputs on a few examples (module docstring).

    Args:
        log_dir: the TensorBoard run folder written to (made if missing).
        features: raw model inputs, a dict of arrays (`"image"` uint8
            `[N, H, W, 3]`, `"text"` strings, `"audio"`), as the datasets of
            `kerasmm.data` give them.
        targets: the examples' targets (caption strings for captioning and
            retrieval data), or None.
        name: the prefix of the summary tags ("held_out": `held_out/images`).
    """

    def __init__(self, log_dir, features, targets=None, name="held_out"):
        super().__init__()
        if not isinstance(features, dict) or not features:
            raise ValueError(f"features must be a non-empty dict of arrays, got {type(features).__name__}.")
        self.log_dir = os.fspath(log_dir)
        self.features = {k: np.asarray(v) for k, v in features.items()}
        self.targets = None if targets is None else np.asarray(targets)
        self.name = name
        self._writer = None

    @classmethod
    def from_dataset(cls, log_dir, dataset, max_samples=MAX_SAMPLES, name="held_out"):
        """The first `max_samples` examples of a batched `(features, targets)` dataset."""
        validation.positive_int("max_samples", max_samples)
        features, targets = {}, []
        count = 0
        for batch in dataset:
            x, y = (batch[0], batch[1]) if isinstance(batch, tuple) and len(batch) > 1 else (batch, None)
            x = x if isinstance(x, dict) else {"image": x}
            take = min(max_samples - count, int(next(iter(x.values())).shape[0]))
            for key, value in x.items():
                features.setdefault(key, []).append(np.asarray(value)[:take])
            if y is not None and not isinstance(y, dict):
                targets.append(np.asarray(y)[:take])
            count += take
            if count >= max_samples:
                break
        if not count:
            raise ValueError("The sample dataset is empty.")
        features = {k: np.concatenate(v) for k, v in features.items()}
        return cls(log_dir, features, np.concatenate(targets) if targets else None, name=name)

    # --- what each kind of model writes --------------------------------------------

    def _kind(self):
        model = self.model
        family = getattr(model, "serving_family", None)
        if family == "captioner":
            return "captioner"
        if family == "dual_encoder" and "image" in self.features \
                and getattr(model, "query_modality", "image") == "image":
            return "retrieval"
        if family == "text_to_image":
            return "text_to_image"
        return None

    def _texts(self):
        if "text" in self.features:
            return self.features["text"]
        if self.targets is not None and self.targets.dtype.kind in "SOU":
            return self.targets
        return None

    def _write_captioner(self, tf, step):
        context = {k: v for k, v in self.features.items() if k in ("image", "audio")}
        captions = self.model.generate(context)
        references = self._texts()
        if "image" in self.features:
            tf.summary.image(f"{self.name}/images", self.features["image"], step=step,
                             max_outputs=len(self.features["image"]))
        rows = ["| # | generated | reference |", "|---|---|---|"]
        for i, caption in enumerate(captions):
            reference = _markdown_cell(references[i]) if references is not None else ""
            rows.append(f"| {i} | {_markdown_cell(caption)} | {reference} |")
        tf.summary.text(f"{self.name}/captions", "\n".join(rows), step=step)

    def _write_retrieval(self, tf, step):
        from kerasmm.search import contact_sheet

        texts = self._texts()
        if texts is None:
            return
        images = self.features["image"]
        queries = list(dict.fromkeys(_text(t) for t in texts))[:MAX_QUERIES]
        similarity = self.model.encode_text(queries, verbose=0) @ self.model.encode_image(images, verbose=0).T
        k = min(TOP_K, len(images))
        tiles, labels, rows = [], [], ["| query | rank | score | example's text |", "|---|---|---|---|"]
        for query, row in zip(queries, similarity):
            for rank, index in enumerate(np.argsort(-row)[:k]):
                tiles.append(images[index])
                score = f"#{rank + 1} {row[index]:.2f}"
                labels.append(f"{query}\n{score}" if rank == 0 else score)
                rows.append(f"| {_markdown_cell(query)} | {rank + 1} | {row[index]:.3f} | "
                            f"{_markdown_cell(texts[index])} |")
        with tempfile.TemporaryDirectory() as folder:
            path = contact_sheet(tiles, labels, os.path.join(folder, "sheet.png"), columns=k)
            with open(path, "rb") as f:
                sheet = tf.io.decode_png(f.read(), channels=3)
        tf.summary.image(f"{self.name}/retrieval", sheet[None], step=step)
        tf.summary.text(f"{self.name}/retrieval_matches", "\n".join(rows), step=step)

    def _write_text_to_image(self, tf, step):
        texts = self._texts()
        if texts is None:
            return
        images = self.model.generate([_text(t) for t in texts])
        tf.summary.image(f"{self.name}/generated", np.clip(images, 0.0, 1.0), step=step, max_outputs=len(images))
        rows = ["| # | text |", "|---|---|"] + [f"| {i} | {_markdown_cell(t)} |" for i, t in enumerate(texts)]
        tf.summary.text(f"{self.name}/prompts", "\n".join(rows), step=step)

    # --- callback hooks -------------------------------------------------------------

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        kind = self._kind()
        if kind is None:
            return
        if self._writer is None:
            self.on_train_begin()
        with self._writer.as_default():
            getattr(self, f"_write_{kind}")(tf, epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
