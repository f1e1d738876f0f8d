"""Fit a zoo entry to its training data: `kerasmm.zoo.get(name, data=train_ds)`.

The data are read once, before the model is built, for what the entry
cannot guess:

- a label task takes the data's class names (`dataset.class_names`, which
  kerasmm's readers set) and class count, or the largest label + 1 where the
  labels have no names; a `num_classes` / `class_names` given with them must
  agree (labels beyond the head are a ValueError here, not an error inside
  the first training step);
- a model that reads text with the embedded shapes vocabulary (`vocabulary`
  None) gets a WordPiece vocabulary trained on the data's texts when the
  shapes vocabulary leaves any of their tokens unknown (words seen fewer
  than `VOCABULARY_MIN_COUNT` times are spelt in pieces; for a model that
  writes them, `WRITTEN_VOCABULARY_MIN_COUNT`); a vocabulary given
  with the data that leaves more than `UNKNOWN_WARNING` of them unknown is
  warned about, with the ratio;
- `sequence_length` (text tokens, or caption positions of a captioner) is
  set to hold `LENGTH_COVERAGE` of the data's texts with their start and
  end tokens, rounded up to a multiple of 8, between 8 and `MAX_LENGTH`.
- a CNN image encoder trained from scratch (`"cnn"`) takes the data's image
  size (the reader's `image_size`), scaled down to at most `MAX_IMAGE_SIZE`
  pixels a side.

What was chosen is printed, a line per setting (on stdout, as Keras' progress
output; logged at INFO level instead where Keras' interactive logging is off).
Settings given as overrides are kept (checked, for the classes).

Example:
```python
import kerasmm
train = kerasmm.data.shapes(num_examples=32, batch_size=8)
model = kerasmm.zoo.get("tiny_weighted_sum_classifier", data=train)   # 4 classes, the data's names
```
"""

import logging
import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from kerasmm import data
from kerasmm.data import fitting, text
from kerasmm.models.backbone_parts import image_pair
from kerasmm.models.preset_parts import is_preset_vocabulary, load_vocabulary
from kerasmm.validation import preview

LABEL_TASKS = ("classification", "vqa")
# Tasks whose model writes text, so the data's texts (targets included) decide its vocabulary.
TEXT_WRITING_TASKS = ("captioning", "vqa_generation")
PROMPTED_TASKS = ("vqa_generation",)  # tasks whose text input is the prompt of the text they write
UNKNOWN_WARNING = 0.05  # share of [UNK] tokens above which a given vocabulary is warned about
LENGTH_COVERAGE = 0.95  # share of the texts whose tokens fit in the chosen sequence_length
MAX_LENGTH = 64
VOCABULARY_SIZE = 8000
# Pixels a side of the largest image a `cnn` image encoder takes from the data. Larger pictures cost more than
# they give in a CPU budget: on benchmarks/real_data.py's clipart (64-pixel pictures, 60 s of training), the
# dual encoder reached text → image recall@5 of 4.0× chance at 64 pixels (323 steps) and 6.3× at 32 (829); the
# fused classifier 0.395 and 0.416 accuracy.
MAX_IMAGE_SIZE = 32
# A word seen this often becomes a token of its own. keras_hub's trainer asks for 10, which on a few thousand
# captions spells most words in pieces: on benchmarks/real_data.py's app_icons, a text-only classifier trained
# 40 s reached 0.434 accuracy with that vocabulary (327 tokens, texts up to 40 tokens) and 0.509 with this
# one (1216 tokens, 24).
VOCABULARY_MIN_COUNT = 2
# The floor for a model that writes the text (a captioner): a word it saw fewer times than this is one it
# cannot learn to write, and spelt in pieces it lets the decoder stitch pieces into words no caption has
# ("view timeelegued"). On benchmarks/real_data.py's theme_icons (180 s of training, seeds 0/1/2) the
# captioner's BLEU-2 was 0.185 / 0.194 / 0.227 with 4 (299 tokens) against 0.165 / 0.167 / 0.212 with 2 (551).
WRITTEN_VOCABULARY_MIN_COUNT = 4


class DataFacts:
    """What the data tell about a model's settings: class names, largest and smallest label, texts, image size.

    `DataFacts.read(dataset)` takes them from one pass over a dataset; `kerasmm train` builds them
    from the files where it can read them faster (see `kerasmm.recipes.Recipe.fit_to_data`).
    """

    def __init__(self, class_names=None, texts=(), largest_label=None, smallest_label=None, image_size=None,
                 prompted_texts=()):
        self.class_names = [str(n) for n in class_names or []] or None
        self.image_size = image_size
        self.texts = [t.strip() for t in texts if t.strip()]
        # Each row's question and answer together: the sequence a prompted model (generative VQA) reads.
        self.prompted_texts = [t.strip() for t in prompted_texts if t.strip()]
        self.largest_label = largest_label
        self.smallest_label = smallest_label

    @classmethod
    def read(cls, dataset):
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(f"data must be a tf.data.Dataset of (features, targets) batches (a kerasmm reader's), "
                             f"got {type(dataset).__name__}.")
        spec = dataset.element_spec
        if not (isinstance(spec, tuple) and len(spec) >= 2 and isinstance(spec[0], dict)):
            raise ValueError("data must give (features dict, targets) batches, as kerasmm.data's readers do; got "
                             f"elements {spec}.")
        texts, labels, rows = fitting.texts_and_labels(dataset, joined=True)
        return cls(getattr(dataset, "class_names", None), texts, int(labels.max()) if labels.size else None,
                   int(labels.min()) if labels.size else None, image_size_of(dataset), rows)


def image_size_of(dataset):
    """`(height, width)` of the `"image"` feature of a dataset's batches, or None (no images, or not fixed)."""
    spec = dataset.element_spec[0].get("image") if isinstance(dataset.element_spec[0], dict) else None
    if spec is None or spec.shape.rank != 4 or None in spec.shape[1:3]:
        return None
    return tuple(int(d) for d in spec.shape[1:3])


class Spelling:
    """How the caller gives a setting, for messages: `num_classes=N` to `zoo.get`, `--set model.num_classes=N`
    to `kerasmm train`."""

    def __init__(self, prefix="", command="pass "):
        self.prefix, self.command = prefix, command

    def name(self, key):
        return f"{self.prefix}{key}"

    def give(self, key, value):
        return f"{self.command}{self.prefix}{key}={value}"


ZOO_GET = Spelling()


def fit_settings(entry, data, overrides, *, spelling=ZOO_GET, trained_vocabulary=None):
    """`(settings, notes)`: the settings of zoo `entry` that `data` decide, and a line for each.

    `data` is a dataset or its `DataFacts`. `overrides` are the settings the
    caller gave: they are kept, and the class settings among them are checked
    against the data. `trained_vocabulary`, where given, is used instead of
    training one (a run that read the same data before).
    """
    from kerasmm.zoo import merge_config  # (this module is imported by kerasmm.zoo)

    facts = data if isinstance(data, DataFacts) else DataFacts.read(data)
    config = merge_config(entry.config, overrides, entry.name)
    settings, notes = {}, []
    if entry.task in LABEL_TASKS:
        settings, notes = _classes(facts, overrides, spelling)
    chosen = _text_settings(facts, config, overrides, trained_vocabulary, entry.task in TEXT_WRITING_TASKS) \
        if _reads_text(entry, config) else []
    chosen += _image_settings(facts, config, overrides)
    for key, value, note in chosen:
        settings[key] = value
        notes.append(note)
    return settings, notes


def data_vocabulary(texts, writes_text=False):
    """The WordPiece vocabulary the zoo trains for `texts` (see `VOCABULARY_SIZE`, `VOCABULARY_MIN_COUNT`).

    `writes_text`: for a model that writes the texts (`WRITTEN_VOCABULARY_MIN_COUNT`).
    """
    min_count = WRITTEN_VOCABULARY_MIN_COUNT if writes_text else VOCABULARY_MIN_COUNT
    return text.train_vocabulary(texts, size=VOCABULARY_SIZE, min_count=min_count)


def report(name, notes):
    """Print what `kerasmm.zoo.get(name, data=...)` chose, a line each."""
    for note in notes:
        line = f"kerasmm.zoo.get({name!r}, data=...): {note}"
        if keras.config.is_interactive_logging_enabled():
            print(line, flush=True)
        else:
            logging.getLogger("kerasmm").info(line)


def _reads_text(entry, config):
    if "vocabulary" not in entry.config:  # a pretrained tower brings its own tokenizer
        return False
    return entry.task in TEXT_WRITING_TASKS or (config.get("encoders") or {}).get("text") is not None


def _image_settings(facts, config, overrides):
    """`(setting, value, note)` for the image size: the data's, up to `MAX_IMAGE_SIZE`, for a CNN trained here."""
    image_encoder = (config.get("encoders") or {}).get("image")
    from_scratch_cnn = isinstance(image_encoder, dict) and image_encoder.get("name") == "cnn"
    if "image_size" in overrides or "image_size" not in config or not from_scratch_cnn or not facts.image_size:
        return []
    height, width = facts.image_size
    scale = min(1.0, MAX_IMAGE_SIZE / max(height, width))
    size = (max(8, round(height * scale)), max(8, round(width * scale)))
    if (height, width) == image_pair(config["image_size"]):
        return []
    smaller = f", at most {MAX_IMAGE_SIZE} pixels a side for a CNN trained from scratch" if scale < 1 else ""
    return [("image_size", size if size[0] != size[1] else size[0],
             f"image_size={size[0]}x{size[1]}: the data's {height}x{width} images{smaller}")]


def _classes(facts, overrides, spelling):
    names, largest = facts.class_names, facts.largest_label
    given_names, given_count = overrides.get("class_names"), overrides.get("num_classes")
    num_classes, class_names = spelling.name("num_classes"), spelling.name("class_names")
    if facts.smallest_label is not None and facts.smallest_label < 0:
        raise ValueError(f"The data have a negative label ({facts.smallest_label}): labels are class indices "
                         "0 .. num_classes - 1.")
    if names and largest is not None and largest >= len(names):
        raise ValueError(f"The data name {len(names)} classes ({preview(names)}) but have labels up to {largest}.")
    if given_names is not None and names and [str(n) for n in given_names] != names:
        raise ValueError(f"The data's classes are {preview(names)} but {class_names} is {preview(given_names)}: "
                         f"leave {class_names} out, the data name them.")
    count = given_count if given_count is not None else (len(given_names) if given_names is not None else None)
    needed = len(names) if names else (largest + 1 if largest is not None else None)
    if count is not None and needed is not None and count < needed:
        what = f"{len(names)} classes ({preview(names)})" if names else f"labels up to {largest}"
        raise ValueError(f"The data have {what} but {num_classes}={count}: leave {num_classes} out (the data "
                         f"give {needed}) or {spelling.give('num_classes', needed)} or more.")
    if count is not None:
        return {}, []
    if names:
        return ({"class_names": names, "num_classes": len(names)},
                [f"{len(names)} classes from the data ({preview(names)})"])
    if largest is None:
        raise ValueError("The data have no class names and no integer labels read to count, so the class "
                         f"count is unknown: {spelling.give('num_classes', 'N')} (the largest label + 1).")
    return ({"num_classes": largest + 1, "class_names": None},
            [f"{largest + 1} classes from the data's labels (0 to {largest}, no names)"])


def _text_settings(facts, config, overrides, trained_vocabulary=None, writes_text=False):
    """`(setting, value, note)` for the vocabulary and the sequence length the data's texts call for."""
    if not facts.texts:
        return []
    chosen = []
    vocabulary = config.get("vocabulary")
    if vocabulary is None:
        unknown, total = fitting.count_unknown_tokens(facts.texts, data.shapes_vocabulary())
        if unknown and trained_vocabulary is not None:
            vocabulary = trained_vocabulary
            chosen.append(("vocabulary", vocabulary, f"vocabulary: the run's own, {len(vocabulary)} WordPiece tokens "
                                                     "trained on its data"))
        elif unknown:
            vocabulary = data_vocabulary(facts.texts, writes_text)
            chosen.append(("vocabulary", vocabulary,
                           f"vocabulary: {len(vocabulary)} WordPiece tokens trained on the data's {len(facts.texts)} "
                           f"texts (the shapes vocabulary leaves {unknown} of their {total} tokens unknown)"))
        else:
            vocabulary = data.shapes_vocabulary()
    elif "vocabulary" in overrides and not is_preset_vocabulary(vocabulary):
        unknown, total = fitting.count_unknown_tokens(facts.texts, load_vocabulary(vocabulary))
        if total and unknown / total > UNKNOWN_WARNING:
            warnings.warn(f"The vocabulary given leaves {unknown / total:.0%} of the data's tokens unknown "
                          f"({unknown} of {total} become [UNK]): leave vocabulary out to train one on the data, "
                          "or give one that covers them.", UserWarning, stacklevel=4)
    if "sequence_length" not in overrides and not is_preset_vocabulary(vocabulary):
        vocabulary = load_vocabulary(vocabulary)
        # A model that writes after a prompt reads the question and the answer in one sequence.
        sequences = facts.prompted_texts if config.get("task") in PROMPTED_TASKS and facts.prompted_texts \
            else facts.texts
        lengths = [len(row) + 2 for row in text.tokenizer(vocabulary).tokenize(sequences)]  # + start and end
        covered = int(np.quantile(lengths, LENGTH_COVERAGE, method="higher"))
        length = min(MAX_LENGTH, max(8, 8 * math.ceil(covered / 8)))
        chosen.append(("sequence_length", length,
                       f"sequence_length={length}: {LENGTH_COVERAGE:.0%} of the texts fit with their start and end "
                       f"tokens (the longest takes {max(lengths)})"))
    return chosen

