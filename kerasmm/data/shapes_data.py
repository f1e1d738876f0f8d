"""`shapes`: procedurally drawn coloured shapes with captions, questions and audio.

Every example is a small scene: a *primary* shape (kind, colour, size,
position) and, with probability `second_shape_prob`, a *second* shape of a
different kind and a different colour placed by a spatial relation, e.g.
"a small red circle above a large blue square" (primary first). Scenes are
drawn with numpy masks on a light grey, mildly noisy background, fully
deterministic from `(seed, split)`, and need nothing downloaded.

Tasks:

* `"classification"`: features `{"image", "text"}`, target = index of the
  primary shape's kind in `SHAPES`. The text is the caption, but with
  probability `caption_dropout` the primary kind word is replaced by "shape"
  ("a small red shape above a large blue square"). This is deliberate, so
  that fusion is measurable: text alone cannot name a dropped kind, and the
  image alone cannot tell which of two shapes is the primary one, yet text
  (colour, size, relation) plus image always determine the answer. A model
  that fuses both modalities should beat both single-modality baselines
  (defaults: roughly 0.72 text-only, 0.75 image-only, 1.0 fused).
* `"vqa"`: features `{"image", "text"}` with text a question ("what colour is
  the circle ?", "what shape is the red one ?", "how many shapes are there ?"),
  target = index into `ANSWERS`, or with `answers="text"` the answer itself
  ("red"), as a generative answerer learns it.
* `"captioning"`: features `{"image"}`, target = the full caption string.

`with_audio=True` adds a waveform: a tone whose pitch encodes the primary
kind (`TONE_FREQUENCIES`), or, with probability `audio_dropout`, noise only.

The scene (image, caption, audio) depends only on `seed`, `split`,
`num_examples`, `image_size`, `second_shape_prob` and the audio arguments,
never on `task`: the same arguments with another task describe the same
pictures, which lets tests compare captions, questions and labels.

Example:
```python
from kerasmm.data import shapes
ds = shapes(num_examples=64, batch_size=16, with_audio=True)
features, labels = next(iter(ds))  # image [16, 32, 32, 3] uint8, text, audio
```
"""

import numbers
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from kerasmm import validation

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
COLOR_RGB = (
    (220, 40, 40),  # red
    (40, 160, 60),  # green
    (40, 80, 220),  # blue
    (235, 205, 30),  # yellow
    (140, 60, 180),  # purple
    (245, 140, 20),  # orange
)
SIZES = ("small", "large")
SIZE_RADIUS_FRACTIONS = (0.11, 0.2)  # radius as a fraction of image_size
RELATIONS = ("above", "below", "left of", "right of")
COUNTS = ("one", "two")
ANSWERS = COLORS + SHAPES + COUNTS
TASKS = ("classification", "vqa", "captioning")
ANSWER_FORMATS = ("index", "text")  # a vqa target: the answer's index in ANSWERS, or its text
SPLITS = ("train", "validation", "test")
TONE_FREQUENCIES = (330.0, 440.0, 587.0, 784.0)  # Hz, aligned with SHAPES
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]")
BACKGROUND_GREY = 212
PIXEL_NOISE = 6  # uniform integer noise in [-PIXEL_NOISE, PIXEL_NOISE]

_DROPPED_KIND_WORD = "shape"
_COLOUR_QUESTION = "what colour is the {} ?"
_SHAPE_QUESTION = "what shape is the {} one ?"
_COUNT_QUESTION = "how many shapes are there ?"
_MIN_IMAGE_SIZE = 16


class _Scenes(NamedTuple):
    """Scene parameters; slot 0 is the primary shape, slot 1 the second."""

    kind: np.ndarray  # [N, 2] int, index into SHAPES
    colour: np.ndarray  # [N, 2] int, index into COLORS
    size: np.ndarray  # [N, 2] int, index into SIZES
    radius: np.ndarray  # [N, 2] float, pixels
    centre: np.ndarray  # [N, 2, 2] float, (y, x) pixels
    has_second: np.ndarray  # [N] bool
    relation: np.ndarray  # [N] int, index into RELATIONS


# ----------------------------------------------------------------- validation


def _check_audio(audio_rate, audio_seconds):
    nyquist_minimum = 2 * max(TONE_FREQUENCIES)
    if not isinstance(audio_rate, numbers.Real) or audio_rate <= nyquist_minimum:
        raise ValueError(
            f"`audio_rate` must be a number > {nyquist_minimum:g} Hz so the tones "
            f"{TONE_FREQUENCIES} are representable, got {audio_rate!r}."
        )
    if not isinstance(audio_seconds, numbers.Real) or int(audio_rate * audio_seconds) < 1:
        raise ValueError(
            f"`audio_seconds` must be positive and give at least one sample at "
            f"{audio_rate} Hz, got {audio_seconds!r}."
        )


# --------------------------------------------------------------------- scenes


def _sample_scenes(rng, num_examples, image_size, second_shape_prob):
    n = num_examples
    kind = np.empty((n, 2), np.int64)
    colour = np.empty((n, 2), np.int64)
    kind[:, 0] = rng.integers(len(SHAPES), size=n)
    colour[:, 0] = rng.integers(len(COLORS), size=n)
    # A non-zero offset modulo the count guarantees a different kind and colour.
    kind[:, 1] = (kind[:, 0] + rng.integers(1, len(SHAPES), size=n)) % len(SHAPES)
    colour[:, 1] = (colour[:, 0] + rng.integers(1, len(COLORS), size=n)) % len(COLORS)
    size = rng.integers(len(SIZES), size=(n, 2))
    has_second = rng.random(n) < second_shape_prob
    relation = rng.integers(len(RELATIONS), size=n)
    radius = np.asarray(SIZE_RADIUS_FRACTIONS)[size] * image_size
    lo, hi = _placement_regions(relation, has_second, image_size)
    centre = _jittered_centres(lo, hi, radius, rng.random((n, 2, 2)), pad=0.02 * image_size)
    return _Scenes(kind, colour, size, radius, centre, has_second, relation)


def _placement_regions(relation, has_second, image_size):
    """Per-shape `(lo, hi)` boxes `[N, slot, (y, x)]` the shape must fit in.

    A lone shape may sit anywhere; with two shapes the relation splits the
    image into two halves (above/below: top/bottom, left of/right of:
    left/right), one per shape, so the shapes never overlap.
    """
    n = len(relation)
    half = image_size / 2
    lo = np.zeros((n, 2, 2))
    hi = np.full((n, 2, 2), float(image_size))
    rows = np.nonzero(has_second)[0]
    rel = relation[rows]
    axis = np.where(rel < 2, 0, 1)  # above/below split y (rows go down), else x
    primary_first = (rel == 0) | (rel == 2)  # above / left of: primary in top / left half
    lo[rows, 0, axis] = np.where(primary_first, 0.0, half)
    hi[rows, 0, axis] = np.where(primary_first, half, image_size)
    lo[rows, 1, axis] = np.where(primary_first, half, 0.0)
    hi[rows, 1, axis] = np.where(primary_first, image_size, half)
    return lo, hi


def _jittered_centres(lo, hi, radius, uniform, pad):
    """Centres uniformly placed so a shape of `radius` stays inside `[lo, hi]`."""
    start = lo + radius[..., None] + pad
    stop = hi - radius[..., None] - pad
    return np.where(stop > start, start + uniform * (stop - start), (lo + hi) / 2)


# -------------------------------------------------------------------- drawing
# Each takes offsets from the centre `dy` [n, S, 1], `dx` [n, 1, S] and the
# radius [n, 1, 1], and returns a boolean mask [n, S, S] inside the box of
# half-width `radius`.


def _circle_mask(dy, dx, radius):
    return dy**2 + dx**2 <= radius**2


def _square_mask(dy, dx, radius):
    return np.maximum(np.abs(dy), np.abs(dx)) <= 0.85 * radius


def _triangle_mask(dy, dx, radius):
    # Apex up at -radius, flat base at +0.75 radius spanning the full width.
    return (dy <= 0.75 * radius) & (1.75 * np.abs(dx) <= dy + radius)


def _diamond_mask(dy, dx, radius):
    return np.abs(dy) + np.abs(dx) <= radius


_MASK_FUNCTIONS = (_circle_mask, _square_mask, _triangle_mask, _diamond_mask)  # as SHAPES


def _render_images(scenes, image_size, rng):
    n = len(scenes.kind)
    images = np.full((n, image_size, image_size, 3), BACKGROUND_GREY, np.int16)
    pixel_centres = np.arange(image_size) + 0.5
    palette = np.asarray(COLOR_RGB, np.int16)
    for slot, present in ((0, np.ones(n, bool)), (1, scenes.has_second)):
        for kind, mask_function in enumerate(_MASK_FUNCTIONS):
            rows = np.nonzero(present & (scenes.kind[:, slot] == kind))[0]
            if rows.size == 0:
                continue
            centre = scenes.centre[rows, slot]
            dy = pixel_centres[None, :, None] - centre[:, 0, None, None]
            dx = pixel_centres[None, None, :] - centre[:, 1, None, None]
            mask = mask_function(dy, dx, scenes.radius[rows, slot, None, None])
            colour = palette[scenes.colour[rows, slot]][:, None, None, :]
            images[rows] = np.where(mask[..., None], colour, images[rows])
    images += rng.integers(-PIXEL_NOISE, PIXEL_NOISE + 1, size=images.shape, dtype=np.int8)
    return np.clip(images, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------- text


def _phrase(scenes, row, slot, kind_word=None):
    kind_word = kind_word or SHAPES[scenes.kind[row, slot]]
    return f"a {SIZES[scenes.size[row, slot]]} {COLORS[scenes.colour[row, slot]]} {kind_word}"


def _captions(scenes, drop_primary_kind):
    captions = []
    for row in range(len(scenes.kind)):
        primary = _phrase(scenes, row, 0, _DROPPED_KIND_WORD if drop_primary_kind[row] else None)
        if scenes.has_second[row]:
            primary = f"{primary} {RELATIONS[scenes.relation[row]]} {_phrase(scenes, row, 1)}"
        captions.append(primary)
    return np.asarray(captions, dtype=object)


def _questions_and_answers(scenes, rng):
    n = len(scenes.kind)
    question_type = rng.integers(3, size=n)  # 0 colour, 1 shape, 2 count
    slot = (scenes.has_second & (rng.random(n) < 0.5)).astype(np.int64)  # shape asked about
    rows = np.arange(n)
    kind, colour = scenes.kind[rows, slot], scenes.colour[rows, slot]
    questions, answers = [], []
    for row in rows:
        if question_type[row] == 0:
            questions.append(_COLOUR_QUESTION.format(SHAPES[kind[row]]))
            answers.append(ANSWERS.index(COLORS[colour[row]]))
        elif question_type[row] == 1:
            questions.append(_SHAPE_QUESTION.format(COLORS[colour[row]]))
            answers.append(ANSWERS.index(SHAPES[kind[row]]))
        else:
            questions.append(_COUNT_QUESTION)
            answers.append(ANSWERS.index(COUNTS[int(scenes.has_second[row])]))
    return np.asarray(questions, dtype=object), np.asarray(answers, np.int32)


# ---------------------------------------------------------------------- audio


def _synthesise_audio(kinds, rng, audio_rate, audio_seconds, audio_dropout):
    n, samples = len(kinds), int(audio_rate * audio_seconds)
    time = (np.arange(samples) / audio_rate).astype(np.float32)[None, :]
    angular_frequency = (2 * np.pi * np.asarray(TONE_FREQUENCIES, np.float32))[kinds, None]
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1)).astype(np.float32)
    amplitude = rng.uniform(0.4, 0.8, size=(n, 1)).astype(np.float32)
    noise_only = rng.random(n) < audio_dropout
    amplitude[noise_only] = 0.0
    noise = rng.standard_normal((n, samples), dtype=np.float32)
    noise *= np.where(noise_only, 0.3, 0.05).astype(np.float32)[:, None]
    tone = amplitude * np.sin(angular_frequency * time + phase)
    return np.clip(tone + noise, -1.0, 1.0)


# --------------------------------------------------------------------- public


def shapes_arrays(
    num_examples=1000,
    image_size=32,
    task="classification",
    split="train",
    seed=0,
    with_audio=False,
    audio_rate=16000,
    audio_seconds=0.25,
    caption_dropout=0.4,
    second_shape_prob=0.5,
    audio_dropout=0.3,
    answers="index",
):
    """Generate the shapes dataset as numpy arrays `(features, targets)`.

    Arrays are unbatched (leading axis = examples). `features["image"]` is
    uint8 `[N, image_size, image_size, 3]`; `features["text"]` (classification
    and vqa) is an object array of str; `features["audio"]` (with `with_audio`)
    is float32 `[N, int(audio_rate * audio_seconds)]` in [-1, 1]. Targets are
    int32 indices into `label_names(task)`, or caption strings for
    "captioning", and answer strings for "vqa" with `answers="text"`. The same
    arguments always give identical arrays; each split is an independent
    stream of the same seed.

    Example:
    ```python
    from kerasmm.data import shapes_arrays, label_names
    features, labels = shapes_arrays(num_examples=8, task="vqa", seed=1)
    print(features["text"][0], "->", label_names("vqa")[labels[0]])
    ```
    """
    validation.positive_int("num_examples", num_examples)
    validation.int_at_least("image_size", image_size, _MIN_IMAGE_SIZE)
    validation.one_of("task", task, TASKS)
    validation.one_of("split", split, SPLITS)
    validation.one_of("answers", answers, ANSWER_FORMATS)
    if answers == "text" and task != "vqa":
        raise ValueError(f"answers='text' is for task='vqa' (its targets are answers); got task={task!r}.")
    validation.non_negative_int("seed", seed)
    for name, value in (
        ("caption_dropout", caption_dropout),
        ("second_shape_prob", second_shape_prob),
        ("audio_dropout", audio_dropout),
    ):
        validation.probability(name, value)
    _check_audio(audio_rate, audio_seconds)

    split_index = SPLITS.index(split)
    scene_rng, text_rng, audio_rng = (
        np.random.default_rng([int(seed), split_index, stream]) for stream in range(3)
    )
    scenes = _sample_scenes(scene_rng, num_examples, image_size, second_shape_prob)
    features = {"image": _render_images(scenes, image_size, scene_rng)}
    if task == "classification":
        features["text"] = _captions(scenes, text_rng.random(num_examples) < caption_dropout)
        targets = scenes.kind[:, 0].astype(np.int32)
    elif task == "vqa":
        features["text"], targets = _questions_and_answers(scenes, text_rng)
        if answers == "text":
            targets = np.asarray(ANSWERS, dtype=object)[targets]
    else:
        targets = _captions(scenes, np.zeros(num_examples, bool))
    if with_audio:
        features["audio"] = _synthesise_audio(
            scenes.kind[:, 0], audio_rng, audio_rate, audio_seconds, audio_dropout
        )
    return features, targets


def shapes(
    num_examples=1000,
    image_size=32,
    batch_size=32,
    task="classification",
    split="train",
    seed=0,
    with_audio=False,
    shuffle=False,
    drop_remainder=False,
    **generation_kwargs,
):
    """The shapes dataset as a batched `tf.data.Dataset` of `(features, targets)`.

    Built from `shapes_arrays(...)` (which takes `generation_kwargs`, e.g.
    `caption_dropout`, `second_shape_prob`, `audio_dropout`, `audio_rate`,
    `audio_seconds`): images uint8, text tf.string, audio float32, targets
    int32 (tf.string for "captioning" and for `answers="text"`). `shuffle=True` shuffles the whole set
    with a buffer seeded by `seed` before batching (reshuffled each epoch).
    A label task's dataset names its classes (`dataset.class_names`, as
    kerasmm's other readers do): `label_names(task)`.

    Example:
    ```python
    from kerasmm.data import shapes
    ds = shapes(num_examples=100, batch_size=10, task="captioning")
    images, captions = next(iter(ds))  # [10, 32, 32, 3] uint8, [10] tf.string
    ```
    """
    validation.positive_int("batch_size", batch_size)
    features, targets = shapes_arrays(
        num_examples=num_examples,
        image_size=image_size,
        task=task,
        split=split,
        seed=seed,
        with_audio=with_audio,
        **generation_kwargs,
    )
    dataset = tf.data.Dataset.from_tensor_slices((features, targets))
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    if task != "captioning" and generation_kwargs.get("answers", "index") == "index":
        dataset.class_names = list(label_names(task))
    return dataset


def shapes_vocabulary():
    """Every word of any caption or question, after the special tokens.

    Returns `["[PAD]", "[UNK]", "[START]", "[END]"]` followed by the sorted,
    de-duplicated words, ready for a lowercasing WordPiece tokenizer.

    Example:
    ```python
    import keras_hub
    from kerasmm.data import shapes_vocabulary
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=shapes_vocabulary(), lowercase=True
    )
    ids = tokenizer("a small red circle above a large blue square")
    ```
    """
    phrases = (
        ("a", _DROPPED_KIND_WORD, _COLOUR_QUESTION, _SHAPE_QUESTION, _COUNT_QUESTION)
        + SHAPES + COLORS + SIZES + RELATIONS + COUNTS
    )
    words = {word for phrase in phrases for word in phrase.split() if word != "{}"}
    return list(SPECIAL_TOKENS) + sorted(words - set(SPECIAL_TOKENS))


def label_names(task):
    """Class names indexed by the integer targets of `task`.

    `SHAPES` for "classification", `ANSWERS` for "vqa"; "captioning" has
    free-text targets and raises ValueError.

    Example:
    ```python
    from kerasmm.data import label_names
    assert label_names("classification") == ("circle", "square", "triangle", "diamond")
    ```
    """
    validation.one_of("task", task, TASKS)
    if task == "captioning":
        raise ValueError("Task 'captioning' has caption strings as targets, not class names.")
    return SHAPES if task == "classification" else ANSWERS
