"""Tests for the embedded `kerasmm.data.shapes` dataset."""

import numpy as np
import pytest
import tensorflow as tf

from kerasmm.data import (
    ANSWERS,
    COLOR_RGB,
    COLORS,
    COUNTS,
    PIXEL_NOISE,
    RELATIONS,
    SHAPES,
    SIZES,
    TASKS,
    TONE_FREQUENCIES,
    label_names,
    shapes,
    shapes_arrays,
    shapes_vocabulary,
)

N = 64
SIZE = 32


def colour_mask(images, colour):
    """Pixels within the noise band of `colour` (images [..., 3] uint8)."""
    rgb = np.asarray(COLOR_RGB[COLORS.index(colour)], np.int16)
    return np.all(np.abs(images.astype(np.int16) - rgb) <= PIXEL_NOISE, axis=-1)


def parse_caption(caption):
    """("small", "red", "circle", relation or None, second words or None)."""
    words = caption.split()
    assert words[0] == "a"
    primary = tuple(words[1:4])
    if len(words) == 4:
        return primary, None, None
    rest = " ".join(words[4:])
    relation = next(r for r in RELATIONS if rest.startswith(r + " a "))
    second = tuple(rest[len(relation) + 3 :].split())
    assert len(second) == 3
    return primary, relation, second


# ------------------------------------------------------------ shapes, dtypes


@pytest.mark.parametrize("with_audio", [False, True])
@pytest.mark.parametrize("task", TASKS)
def test_arrays_shapes_and_dtypes(task, with_audio):
    features, targets = shapes_arrays(
        N, image_size=SIZE, task=task, with_audio=with_audio, audio_rate=8000, audio_seconds=0.1
    )
    expected_keys = {"image"} | ({"text"} if task != "captioning" else set())
    expected_keys |= {"audio"} if with_audio else set()
    assert set(features) == expected_keys
    assert features["image"].shape == (N, SIZE, SIZE, 3)
    assert features["image"].dtype == np.uint8
    if "text" in features:
        assert features["text"].shape == (N,)
        assert all(isinstance(t, str) for t in features["text"])
    if with_audio:
        assert features["audio"].shape == (N, 800)
        assert features["audio"].dtype == np.float32
        assert np.abs(features["audio"]).max() <= 1.0
    assert targets.shape == (N,)
    if task == "captioning":
        assert all(isinstance(t, str) for t in targets)
    else:
        assert targets.dtype == np.int32
        assert 0 <= targets.min() and targets.max() < len(label_names(task))


@pytest.mark.parametrize("with_audio", [False, True])
@pytest.mark.parametrize("task", TASKS)
def test_dataset_element_spec_and_batches(task, with_audio):
    ds = shapes(N + 5, image_size=SIZE, batch_size=16, task=task, with_audio=with_audio)
    features_spec, target_spec = ds.element_spec
    assert features_spec["image"].dtype == tf.uint8
    assert features_spec["image"].shape.as_list() == [None, SIZE, SIZE, 3]
    assert ("text" in features_spec) == (task != "captioning")
    if "text" in features_spec:
        assert features_spec["text"].dtype == tf.string
    assert ("audio" in features_spec) == with_audio
    if with_audio:
        assert features_spec["audio"].dtype == tf.float32
        assert features_spec["audio"].shape.as_list() == [None, 4000]
    assert target_spec.dtype == (tf.string if task == "captioning" else tf.int32)
    batch_sizes = [int(t.shape[0]) for _, t in ds]
    assert batch_sizes == [16, 16, 16, 16, 5]


def test_dataset_matches_arrays_and_drop_remainder():
    features, targets = shapes_arrays(40, task="vqa", seed=3)
    ds = shapes(40, batch_size=16, task="vqa", seed=3, drop_remainder=True)
    assert ds.element_spec[1].shape.as_list() == [16]
    batches = list(ds)
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0][0]["image"].numpy(), features["image"][:16])
    assert [t.decode() for t in batches[1][0]["text"].numpy()] == list(features["text"][16:32])
    np.testing.assert_array_equal(batches[1][1].numpy(), targets[16:32])


def test_shuffle_is_seeded_permutation():
    def targets_of(ds):
        return np.concatenate([t.numpy() for _, t in ds])

    plain = targets_of(shapes(200, batch_size=50, task="vqa"))
    shuffled = targets_of(shapes(200, batch_size=50, task="vqa", shuffle=True))
    again = targets_of(shapes(200, batch_size=50, task="vqa", shuffle=True))
    assert not np.array_equal(plain, shuffled)
    np.testing.assert_array_equal(np.sort(plain), np.sort(shuffled))
    np.testing.assert_array_equal(shuffled, again)


def test_generation_kwargs_are_forwarded():
    ds = shapes(32, batch_size=32, task="captioning", second_shape_prob=0.0)
    _, captions = next(iter(ds))
    assert all(len(c.decode().split()) == 4 for c in captions.numpy())


# -------------------------------------------------------------- determinism


def assert_features_equal(a, b):
    assert a[0].keys() == b[0].keys()
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("task", TASKS)
def test_same_arguments_give_identical_arrays(task):
    kwargs = dict(num_examples=N, task=task, seed=7, with_audio=True, audio_seconds=0.05)
    assert_features_equal(shapes_arrays(**kwargs), shapes_arrays(**kwargs))


def test_different_seeds_and_splits_differ():
    train = shapes_arrays(N, task="captioning", seed=0)
    other_seed = shapes_arrays(N, task="captioning", seed=1)
    validation = shapes_arrays(N, task="captioning", seed=0, split="validation")
    test = shapes_arrays(N, task="captioning", seed=0, split="test")
    images = [x[0]["image"] for x in (train, other_seed, validation, test)]
    captions = [list(x[1]) for x in (train, other_seed, validation, test)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(images[i], images[j])
            assert captions[i] != captions[j]


def test_scene_does_not_depend_on_task():
    by_task = {task: shapes_arrays(N, task=task, seed=2, with_audio=True) for task in TASKS}
    for task in TASKS[1:]:
        np.testing.assert_array_equal(by_task[task][0]["image"], by_task[TASKS[0]][0]["image"])
        np.testing.assert_array_equal(by_task[task][0]["audio"], by_task[TASKS[0]][0]["audio"])


# -------------------------------------------------------- label correctness


def test_single_shape_pixels_and_label_match_caption():
    features, labels = shapes_arrays(
        200, task="classification", caption_dropout=0.0, second_shape_prob=0.0, seed=4
    )
    for image, caption, label in zip(features["image"], features["text"], labels):
        (size, colour, kind), relation, _ = parse_caption(caption)
        assert relation is None
        assert kind == SHAPES[label]
        assert colour_mask(image, colour).sum() >= 10
        others = [c for c in COLORS if c != colour]
        assert sum(colour_mask(image, c).sum() for c in others) == 0


def test_large_shapes_are_clearly_larger_than_small_ones():
    features, captions = shapes_arrays(400, task="captioning", second_shape_prob=0.0, seed=5)
    area = {(s, k): [] for s in SIZES for k in SHAPES}
    for image, caption in zip(features["image"], captions):
        (size, colour, kind), _, _ = parse_caption(caption)
        area[(size, kind)].append(colour_mask(image, colour).sum())
    for kind in SHAPES:
        assert min(area[("large", kind)]) > 2 * max(area[("small", kind)])


def test_two_shape_positions_follow_relation_and_differ_in_kind_and_colour():
    features, captions = shapes_arrays(200, image_size=48, task="captioning", second_shape_prob=1.0)
    relations_seen = set()
    for image, caption in zip(features["image"], captions):
        (_, colour1, kind1), relation, (_, colour2, kind2) = parse_caption(caption)
        assert kind1 != kind2 and colour1 != colour2
        relations_seen.add(relation)
        y1, x1 = np.argwhere(colour_mask(image, colour1)).mean(axis=0)
        y2, x2 = np.argwhere(colour_mask(image, colour2)).mean(axis=0)
        expected = {"above": y1 < y2, "below": y1 > y2, "left of": x1 < x2, "right of": x1 > x2}
        assert expected[relation], caption
        # Disjoint halves: no pixel of one shape crosses the midline.
        axis = 0 if relation in ("above", "below") else 1
        coord1 = np.argwhere(colour_mask(image, colour1))[:, axis]
        coord2 = np.argwhere(colour_mask(image, colour2))[:, axis]
        assert coord1.max() < coord2.min() or coord2.max() < coord1.min()
    assert relations_seen == set(RELATIONS)


def test_caption_dropout_extremes_and_rate():
    kwargs = dict(num_examples=300, task="classification", seed=6)
    kept, labels = shapes_arrays(caption_dropout=0.0, **kwargs)
    dropped, _ = shapes_arrays(caption_dropout=1.0, **kwargs)
    default, _ = shapes_arrays(**kwargs)
    kept_kinds = [parse_caption(c)[0][2] for c in kept["text"]]
    assert kept_kinds == [SHAPES[i] for i in labels]
    assert all(parse_caption(c)[0][2] == "shape" for c in dropped["text"])
    rate = np.mean([parse_caption(c)[0][2] == "shape" for c in default["text"]])
    assert 0.3 < rate < 0.5
    # Apart from the dropped word, the text is the full caption.
    for full, masked in zip(kept["text"], dropped["text"]):
        a, b = full.split(), masked.split()
        assert a[:3] + a[4:] == b[:3] + b[4:]


def test_second_shape_probability_extremes():
    _, none = shapes_arrays(100, task="captioning", second_shape_prob=0.0)
    _, both = shapes_arrays(100, task="captioning", second_shape_prob=1.0)
    assert all(parse_caption(c)[1] is None for c in none)
    assert all(parse_caption(c)[1] is not None for c in both)


def test_vqa_answers_consistent_with_caption():
    questions, answers = shapes_arrays(300, task="vqa", seed=8)
    _, captions = shapes_arrays(300, task="captioning", seed=8)
    seen = set()
    for question, answer, caption in zip(questions["text"], answers, captions):
        answer = ANSWERS[answer]
        primary, relation, second = parse_caption(caption)
        objects = [primary] + ([second] if second else [])
        words = question.split()
        assert words[-1] == "?"
        if question == "how many shapes are there ?":
            seen.add("count")
            assert answer == ("two" if relation else "one")
        elif question.startswith("what colour is the "):
            seen.add("colour")
            kind = words[4]
            assert answer in COLORS
            assert (answer, kind) in [(c, k) for _, c, k in objects]
        else:
            seen.add("shape")
            assert question.startswith("what shape is the ") and words[5] == "one"
            colour = words[4]
            assert answer in SHAPES
            assert (colour, answer) in [(c, k) for _, c, k in objects]
    assert seen == {"count", "colour", "shape"}
    assert set(answers) >= {ANSWERS.index(w) for w in COUNTS}


# -------------------------------------------------------------------- audio


def fft_peak_hz(clip, rate):
    spectrum = np.abs(np.fft.rfft(clip))
    return np.fft.rfftfreq(len(clip), 1.0 / rate)[np.argmax(spectrum)]


def test_audio_pitch_encodes_primary_kind():
    rate, seconds = 16000, 0.25
    features, labels = shapes_arrays(100, with_audio=True, audio_dropout=0.0, seed=9)
    resolution = 1.0 / seconds
    for clip, label in zip(features["audio"], labels):
        assert abs(fft_peak_hz(clip, rate) - TONE_FREQUENCIES[label]) <= resolution


def test_audio_dropout_gives_noise_only_clips():
    def tone_energy_fraction(clips):
        spectrum = np.abs(np.fft.rfft(clips, axis=-1)) ** 2
        freqs = np.fft.rfftfreq(clips.shape[-1], 1.0 / 16000)
        near = np.zeros_like(freqs, bool)
        for f in TONE_FREQUENCIES:
            near |= np.abs(freqs - f) <= 8
        return spectrum[:, near].sum(-1) / spectrum.sum(-1)

    tones, _ = shapes_arrays(100, with_audio=True, audio_dropout=0.0)
    noise, _ = shapes_arrays(100, with_audio=True, audio_dropout=1.0)
    default, _ = shapes_arrays(300, with_audio=True)
    assert tone_energy_fraction(tones["audio"]).min() > 0.5
    assert tone_energy_fraction(noise["audio"]).max() < 0.1
    dropped_rate = np.mean(tone_energy_fraction(default["audio"]) < 0.1)
    assert 0.2 < dropped_rate < 0.4


# --------------------------------------------------------------- vocabulary


def test_vocabulary_layout():
    vocab = shapes_vocabulary()
    assert vocab[:4] == ["[PAD]", "[UNK]", "[START]", "[END]"]
    words = vocab[4:]
    assert words == sorted(set(words))
    for word in ("a", "shape", "?", "left", "of", "colour", "how", "many") + SHAPES + COLORS + SIZES:
        assert word in words
    assert set(ANSWERS) <= set(words)


def test_wordpiece_tokenizer_has_no_unknown_words():
    keras_hub = pytest.importorskip("keras_hub")
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=shapes_vocabulary(), lowercase=True)
    unk = tokenizer.token_to_id("[UNK]")
    texts = []
    for task in ("classification", "vqa"):
        features, _ = shapes_arrays(200, task=task, seed=10)
        texts += list(features["text"])
    texts += list(shapes_arrays(200, task="captioning", seed=10)[1])
    for text, ids in zip(texts, tokenizer(tf.constant(texts))):
        ids = np.asarray(ids).tolist()
        assert unk not in ids, text
        assert len(ids) == len(text.split())  # every word is exactly one token


def test_vqa_answers_as_text_are_the_named_labels_of_the_same_questions():
    features, labels = shapes_arrays(12, task="vqa", seed=3)
    same, answers = shapes_arrays(12, task="vqa", seed=3, answers="text")
    assert list(same["text"]) == list(features["text"])
    assert list(answers) == [ANSWERS[i] for i in labels]
    dataset = shapes(num_examples=4, batch_size=4, task="vqa", answers="text")
    assert dataset.element_spec[1].dtype == tf.string and not hasattr(dataset, "class_names")


# ------------------------------------------------------------- label names


def test_label_names():
    assert label_names("classification") == SHAPES
    assert label_names("vqa") == ANSWERS
    assert len(ANSWERS) == len(set(ANSWERS)) == 12
    assert len(set(COLOR_RGB)) == len(COLORS)
    with pytest.raises(ValueError, match="captioning"):
        label_names("captioning")
    with pytest.raises(ValueError, match="classification"):
        label_names("segmentation")


# ------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task="segmentation"), "classification"),
        (dict(split="dev"), "validation"),
        (dict(num_examples=0), "num_examples"),
        (dict(num_examples=2.5), "num_examples"),
        (dict(image_size=15), "image_size"),
        (dict(seed=-1), "seed"),
        (dict(caption_dropout=-0.1), "caption_dropout"),
        (dict(caption_dropout=1.5), "caption_dropout"),
        (dict(second_shape_prob=2.0), "second_shape_prob"),
        (dict(audio_dropout=-1), "audio_dropout"),
        (dict(audio_rate=1000), "audio_rate"),
        (dict(audio_seconds=0.0), "audio_seconds"),
        (dict(task="vqa", answers="words"), "answers must be one of"),
        (dict(task="captioning", answers="text"), "answers='text' is for task='vqa'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shapes_arrays(**kwargs)
    with pytest.raises(ValueError, match=message):
        shapes(**kwargs)


@pytest.mark.parametrize("batch_size", [0, -3])
def test_bad_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        shapes(num_examples=8, batch_size=batch_size)
