"""Tests for the caption metrics (kerasmm.metrics.caption) against pycocoevalcap's scorers.

pycocoevalcap's Bleu, Cider (CIDEr-D) and Rouge scorers are pure Python; they
get the fixture's lowercase, space-tokenised strings directly (no Java
tokenizer). The MirroredStrategy test lives in test_caption_distributed.py
(it needs its own process for the logical CPU devices).
"""

import re
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasmm.metrics import Bleu, CiderD, RougeL, caption, caption_scores

# (references, candidate): 1-5 references each.
FIXTURE = [
    (["a dog runs across the grass", "a brown dog running on the grass", "the dog is running in a field"],
     "a dog runs on the grass"),
    (["a man riding a bike down the street", "a person rides a bicycle", "a man on a bike", "a man on a bike"],
     "a man"),  # shorter than every reference; a duplicated reference
    (["two cats sleeping on a couch", "two cats lie on a sofa"], "two cats sleeping on a couch"),  # exact match
    (["a red car parked by the road"], "blue sky over mountains"),  # no overlap, one reference
    (["a plate of food with broccoli", "a plate with rice and broccoli", "food on a white plate",
      "broccoli and rice on a plate", "a healthy meal on a plate"],
     "a plate a plate a plate of food with broccoli and rice on a white table"),  # longer, repeated words
    (["a child flying a kite on the beach", "a kid with a kite", "a little boy flies a kite near the ocean",
      "kite flying"], "a kite a kite"),
    (["a train on the tracks", "an old train at a station"], "train"),  # one word: no bigram
    (["people", "a group of people standing"], "a group of people"),  # a one-word reference
    (["a clock tower in the city", "a tall clock tower"], ""),  # the end token straight away
    (["a woman holding an umbrella in the rain", "a woman with an umbrella", "a person walking with an umbrella"],
     "a woman with an umbrella in the rain"),
    (["a bowl of fruit on a table", "apples and bananas in a bowl"], "a bowl of apples and bananas on a table"),
]
PAD, START, END = 0, 1, 2
TOKENS = dict(pad_id=PAD, end_id=END, ignore_ids=(START,))
ORDERS = (1, 2, 3, 4)


def vocabulary():
    words = sorted({w for refs, cand in FIXTURE for text in refs + [cand] for w in text.split()})
    return {word: i + 3 for i, word in enumerate(words)}


def encode(fixture=FIXTURE, width=24):
    """Token ids: start, words, end, then (candidates) junk after the end and padding.

    Candidates are a little wider than references (the widths need not agree).
    """
    ids = vocabulary()
    junk = [ids["a"], ids["dog"], START]  # after the end id: must be ignored
    references = max(len(refs) for refs, _ in fixture)
    y_true = np.zeros((len(fixture), references, width), np.int32)
    y_pred = np.zeros((len(fixture), width + 3), np.int32)
    for i, (refs, cand) in enumerate(fixture):
        for j, ref in enumerate(refs):
            tokens = [START] + [ids[w] for w in ref.split()] + [END]
            y_true[i, j, : len(tokens)] = tokens
        tokens = [START] + [ids[w] for w in cand.split()] + [END] + junk
        y_pred[i, : len(tokens)] = tokens
    return y_true, y_pred


def reference_scores(fixture=FIXTURE):
    """pycocoevalcap's corpus scores: bleu_1..4, cider_d, rouge_l."""
    from pycocoevalcap.bleu.bleu import Bleu as CocoBleu
    from pycocoevalcap.cider.cider import Cider as CocoCider
    from pycocoevalcap.rouge.rouge import Rouge as CocoRouge

    gts = {i: list(refs) for i, (refs, _) in enumerate(fixture)}
    res = {i: [cand] for i, (_, cand) in enumerate(fixture)}
    bleu, _ = CocoBleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu_{n}": bleu[n - 1] for n in ORDERS}
    scores["cider_d"] = CocoCider().compute_score(gts, res)[0]
    scores["rouge_l"] = CocoRouge().compute_score(gts, res)[0]
    return scores


TOLERANCE = {"cider_d": 1e-4, "rouge_l": 1e-6, **{f"bleu_{n}": 1e-6 for n in ORDERS}}


def make_metrics(capacity=16):
    metrics = [Bleu(max_order=n, **TOKENS) for n in ORDERS]
    return metrics + [CiderD(capacity=capacity, max_length=16, **TOKENS), RougeL(**TOKENS)]


def scores_of(metrics):
    return {metric.name: float(metric.result()) for metric in metrics}


def assert_matches(scores, expected):
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=TOLERANCE[key]), key


@pytest.fixture(scope="module")
def expected():
    return reference_scores()


def test_matches_pycocoevalcap(expected):
    assert 0.1 < expected["bleu_4"] < expected["bleu_1"] < 1 and expected["cider_d"] > 1  # a non-trivial fixture
    y_true, y_pred = encode()
    metrics = make_metrics()
    for metric in metrics:
        metric.update_state(y_true, y_pred)
    assert_matches(scores_of(metrics), expected)


def test_batch_by_batch_equals_one_update(expected):
    y_true, y_pred = encode()
    whole, streamed = make_metrics(), make_metrics()
    for metric in whole:
        metric.update_state(y_true, y_pred)
    for start in range(0, len(y_pred), 4):  # 4 + 4 + 3
        for metric in streamed:
            metric.update_state(y_true[start:start + 4], y_pred[start:start + 4])
    assert scores_of(streamed) == pytest.approx(scores_of(whole), abs=1e-7)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_mode(expected, jit_compile):
    y_true, y_pred = encode()
    metrics = [Bleu(**TOKENS), CiderD(capacity=16, max_length=16, **TOKENS), RougeL(**TOKENS)]

    @tf.function(jit_compile=jit_compile)
    def step(y_true, y_pred, sample_weight):
        for metric in metrics:
            metric.update_state(y_true, y_pred, sample_weight)
        return {metric.name: metric.result() for metric in metrics}

    first = (np.arange(len(y_pred)) < 5).astype("float32")
    step(y_true, y_pred, first)  # two steps of one shape: one trace
    result = step(y_true, y_pred, 1 - first)
    assert step.experimental_get_tracing_count() == 1
    expected = {key: expected[key] for key in ("bleu_4", "cider_d", "rouge_l")}
    assert_matches({key: float(value) for key, value in result.items()}, expected)

    @tf.function
    def reset():
        for metric in metrics:
            metric.reset_state()
        return {metric.name: metric.result() for metric in metrics}

    assert all(float(value) == 0.0 for value in reset().values())


def test_sample_weight_zero_and_missing_references_skip_examples():
    y_true, y_pred = encode()
    weights = np.ones(len(FIXTURE), "float32")
    weights[[1, 4]] = 0
    y_true[6] = 0  # no reference at all: skipped too
    y_true[2, 0] = [START, END] + [PAD] * (y_true.shape[2] - 2)  # an empty reference is a missing one
    kept = [example for i, example in enumerate(FIXTURE) if i not in (1, 4, 6)]
    kept[1] = (FIXTURE[2][0][1:], FIXTURE[2][1])
    metrics = make_metrics()
    for metric in metrics:
        metric.update_state(y_true, y_pred, sample_weight=weights)
    assert_matches(scores_of(metrics), reference_scores(kept))


def test_empty_metric_is_zero():
    metrics = make_metrics()
    assert scores_of(metrics) == {metric.name: 0.0 for metric in metrics}


def test_one_reference_per_example():
    fixture = [(refs[:1], cand) for refs, cand in FIXTURE]
    y_true, y_pred = encode(fixture)
    metrics = make_metrics()
    for metric in metrics:
        metric.update_state(y_true[:, 0], y_pred)  # [B, L] references
    assert_matches(scores_of(metrics), reference_scores(fixture))


def test_caption_scores(expected):
    references = [refs for refs, _ in FIXTURE]
    candidates = [cand for _, cand in FIXTURE]
    assert_matches(caption_scores(references, candidates), expected)


def test_smoothed_bleu():
    # Candidate "5 6 7 9" against "5 6 7 8": matches 3, 2, 1, 0 of 4, 3, 2, 1 n-grams.
    metric = Bleu(smooth=True)
    metric.update_state([[5, 6, 7, 8]], [[5, 6, 7, 9]])
    expected = ((4 / 5) * (3 / 4) * (2 / 3) * (1 / 2)) ** 0.25
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "make", [Bleu, RougeL, lambda: CiderD(capacity=4, max_length=8)], ids=["bleu", "rouge", "cider"]
)
def test_bad_input(make):
    metric = make()
    y_true, y_pred = encode()
    with pytest.raises(ValueError, match="integer token ids.*float32.*argmax"):
        metric.update_state(y_true, np.zeros((2, 5, 7), "float32"))
    with pytest.raises(ValueError, match=r"y_pred must have shape \[batch, length\]"):
        metric.update_state(y_true, y_pred[None])
    with pytest.raises(ValueError, match=r"y_true must have shape \[batch, length\] or \[batch, references"):
        metric.update_state(y_true[None], y_pred)
    with pytest.raises(ValueError, match="y_true must be integer token ids, got dtype float32"):
        metric.update_state(y_true.astype("float32"), y_pred)
    with pytest.raises(ValueError, match="different batch sizes: 11 and 3"):
        metric.update_state(y_true, y_pred[:3])
    with pytest.raises(ValueError, match="sample_weight has 2 values for a batch of 11"):
        metric.update_state(y_true, y_pred, sample_weight=[1, 1])


def test_cider_d_capacity_and_sizes_are_enforced():
    y_true, y_pred = encode()
    with pytest.raises(tf.errors.InvalidArgumentError, match="capacity=4"):
        CiderD(capacity=4, max_length=16, **TOKENS).update_state(y_true, y_pred)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_length=5"):
        CiderD(capacity=16, max_length=5, **TOKENS).update_state(y_true, y_pred)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_references=3"):
        CiderD(capacity=16, max_length=16, max_references=3, **TOKENS).update_state(y_true, y_pred)
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        CiderD(capacity=0)


@pytest.mark.parametrize(
    "make",
    [lambda: Bleu(max_order=2, smooth=True, end_id=2, ignore_ids=(1, 3), name="b2"),
     lambda: RougeL(beta=2.0, pad_id=5),
     lambda: CiderD(sigma=4.0, max_order=3, capacity=7, max_length=9, max_references=2, end_id=2, ignore_ids=(1,))],
    ids=["bleu", "rouge", "cider"],
)
def test_config_round_trip(make):
    metric = make()
    config = metric.get_config()
    clone = type(metric).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric) and restored.get_config() == config
    assert keras.saving.get_registered_name(type(metric)) == f"kerasmm>{type(metric).__name__}"


def test_docstring_examples_run():
    for owner in (caption, Bleu, RougeL, CiderD, caption_scores):
        blocks = re.findall(r"```python\n(.*?)```", owner.__doc__, re.S)
        assert blocks, owner
        for block in blocks:
            exec(textwrap.dedent(block), {})
