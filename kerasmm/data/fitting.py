"""What a model needs to know about a user's data before training: its label range and its texts.

`kerasmm train --data` fits the model to the data it is given (see
`kerasmm.recipes.Recipe.fit_to_data`): the class count of a label task and a
WordPiece vocabulary for the data's texts. These functions read what that
takes, from the data's text files where they hold it (cheap: no image is
decoded) or from a dataset.

A data spec is the dict `kerasmm.recipes.parse_data` makes of `--data`:
`{"reader": "manifest", "path": "train.jsonl"}`, `{"reader": "coco",
"annotations_json": ..., "image_dir": ...}`, `{"reader": "folder", "root": ...}`
and so on, the reader's name and its arguments.

Example:
```python
from kerasmm import data
from kerasmm.data import fitting
spec = {"reader": "manifest", "path": "train.jsonl"}
fitting.largest_integer_label(spec)                  # e.g. 9 for labels 0 to 9; None for class names
texts = fitting.texts_in_files(spec)                 # every caption, stripped
unknown, total = fitting.count_unknown_tokens(texts, data.shapes_vocabulary())
```
"""

import os

import numpy as np
import tensorflow as tf

from kerasmm.data import manifest
from kerasmm.data.coco import load_coco_json
from kerasmm.data.record_table import check_text
from kerasmm.data.text import tokenizer


def largest_integer_label(data_spec):
    """The largest label of the data in `data_spec` when every label is an integer index, else None.

    Only a manifest shows its labels without reading the dataset: its rows
    that parse (`kerasmm.data.manifest.read_rows`) are read, and an integer
    or a string of decimal digits counts as an index. None for other readers,
    for a manifest without labels, and where any label is a class name.
    """
    if data_spec["reader"] != "manifest":
        return None
    labels = [row["label"] for row in _manifest_rows(data_spec["path"]) if "label" in row]
    numbers = [int(v) for v in labels if isinstance(v, int) or (isinstance(v, str) and v.isdecimal())]
    return max(numbers) if numbers and len(numbers) == len(labels) else None


def texts_in_files(data_spec):
    """The texts (captions) of the data in `data_spec` read from its text files, or None where there are none.

    COCO annotations, a manifest's `text` fields and a folder's `NAME.txt`
    caption files (first line) are read without decoding an image; each text
    is checked and stripped as the readers do (`check_text`), and empty or
    unusable ones are left out. None for readers whose texts only reading
    the dataset gives (tfrecord, tfds, shapes): use `texts_in_dataset`.
    """
    reader = data_spec["reader"]
    if reader == "coco":
        annotations = load_coco_json(data_spec["annotations_json"])["annotations"]
        raw = [a.get("caption") for a in annotations if isinstance(a, dict)]
    elif reader == "manifest":
        raw = [row.get("text") for row in _manifest_rows(data_spec["path"])]
    elif reader == "folder":
        raw = []
        for folder, _, files in os.walk(data_spec["root"]):
            for name in sorted(f for f in files if f.lower().endswith(".txt")):
                with open(os.path.join(folder, name), "rb") as f:
                    raw.append(f.readline().rstrip(b"\r\n"))
    else:
        return None
    texts = [check_text(t)[0] for t in raw if t is not None]
    return [t for t in texts if t]


def texts_in_dataset(dataset):
    """Every text of a `(features, targets)` dataset: `features["text"]` and string targets, as str.

    A dataset with neither gives `[]` without being read; otherwise it is
    iterated once (decoding whatever else it holds).
    """
    features, targets = dataset.element_spec
    if "text" not in features and targets.dtype != tf.string:
        return []  # without reading (decoding) the data
    return texts_and_labels(dataset)[0]


def texts_and_labels(dataset, joined=False):
    """`(texts, labels)` of a `(features, targets)` dataset in one pass: the texts as in `texts_in_dataset`,
    and the integer targets as one int64 array (empty where the targets are not integers).

    `joined=True` adds a third item: each row's `features["text"]` and string
    target joined by a space (a question and its answer, as a prompted model
    reads them in one sequence); empty where either is missing.
    """
    texts, labels, rows = [], [], []
    for features, targets, *_ in dataset.as_numpy_iterator():
        questions = []
        if isinstance(features, dict) and "text" in features:
            questions = [t.decode("utf-8") for t in np.ravel(features["text"])]
            texts += questions
        targets = np.asarray(targets)
        if targets.dtype.kind in "SO":
            answers = [t.decode("utf-8") for t in np.ravel(targets)]
            texts += answers
            if questions and len(questions) == len(answers):
                rows += [f"{q} {a}" for q, a in zip(questions, answers)]
        elif targets.dtype.kind in "iu":
            labels.append(np.ravel(targets).astype(np.int64))
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return (texts, labels, rows) if joined else (texts, labels)


def count_unknown_tokens(texts, vocabulary):
    """`(unknown, total)`: how many WordPiece tokens of `texts` are `[UNK]` under `vocabulary`, of how many."""
    ids = [int(i) for row in tokenizer(vocabulary).tokenize(texts) for i in row]  # lists or a RaggedTensor
    return ids.count(vocabulary.index("[UNK]")), len(ids)


def _manifest_rows(path):
    """The rows of a manifest that parse (files and field types unchecked)."""
    return [row for _, row, reason in manifest.read_rows(path) if reason is None]
