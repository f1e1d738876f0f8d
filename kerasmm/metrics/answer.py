"""VQA accuracy of generated answers, on token ids, as a Keras `Metric` that runs in the graph.

The VQA benchmark scores an answer by how many of the human answers it
equals after normalisation: min(1, matches / 3). Here the same holds with any
number of references R per example: min(1, matches / min(3, R)), so one
reference is plain exact match. Normalisation happens on ids: the tokenizer
already lower-cases and splits punctuation off, `ignore_ids` drops the ids
that VQA's normalisation removes (articles, punctuation) and `equivalent_ids`
maps ids that mean the same answer ("two" → "2"). `answer_normalisation`
derives both from a vocabulary. Inputs follow `kerasmm.metrics.caption`:
`y_pred` ids `[B, L]`, `y_true` ids `[B, L]` or `[B, R, L]`.

Example:
```python
from kerasmm.metrics import VQAAccuracy
metric = VQAAccuracy(end_id=3)
metric.update_state([[7, 3, 0], [8, 3, 0]], [[7, 3, 0], [9, 3, 0]])
float(metric.result())   # 0.5: one of two answers is right
```
"""

import string

import keras
import tensorflow as tf

from kerasmm import validation
from kerasmm.metrics.caption import _graph_ops, _MeanOverExamples, _prepare, _to_width

# What VQA's answer normalisation drops and rewrites (its evaluation script's article and number lists).
ARTICLES = ("a", "an", "the")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Answers matching this many references score 1 (the VQA benchmark asks for 3 of its 10 human answers).
FULL_CREDIT_MATCHES = 3


def answer_normalisation(vocabulary):
    """`{"ignore_ids": [...], "equivalent_ids": [[from, to], ...]}` for `VQAAccuracy`, from a vocabulary list.

    Articles and punctuation tokens are ignored; a number word maps to its
    digit where the vocabulary has both.
    """
    index = {token: i for i, token in enumerate(vocabulary)}
    ignore = sorted(index[t] for t in index if t in ARTICLES or (t and all(c in string.punctuation for c in t)))
    equivalent = [[index[word], index[str(n)]] for n, word in enumerate(NUMBER_WORDS)
                  if word in index and str(n) in index]
    return {"ignore_ids": ignore, "equivalent_ids": equivalent}


@keras.saving.register_keras_serializable(package="kerasmm")
class VQAAccuracy(_MeanOverExamples):
    """Mean VQA accuracy of generated answers: min(1, matching references / min(3, references)).

    Args:
        pad_id, end_id, ignore_ids: which ids are not words (as the caption
            metrics take them; `ignore_ids` also holds what normalisation drops).
        equivalent_ids: `[from, to]` pairs of ids counted as the same word.
        name: defaults to "vqa_accuracy".

    Example:
    ```python
    from kerasmm.metrics import VQAAccuracy
    metric = VQAAccuracy(end_id=3)
    metric.update_state([[[7, 3], [7, 3], [9, 3]]], [[7, 3]])   # 2 of its 3 references say 7
    float(metric.result())   # 0.666...
    ```
    """

    def __init__(self, pad_id=0, end_id=None, ignore_ids=(), equivalent_ids=(), name="vqa_accuracy", dtype=None):
        super().__init__(pad_id, end_id, ignore_ids, name=name, dtype=dtype)
        try:
            pairs = [tuple(pair) for pair in equivalent_ids]
        except TypeError as error:
            raise ValueError(f"equivalent_ids must be [from, to] pairs of ids, got {equivalent_ids!r}.") from error
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"equivalent_ids must be [from, to] pairs of ids, got {equivalent_ids!r}.")
        self.equivalent_ids = [[validation.non_negative_int("each id of equivalent_ids", i) for i in pair]
                               for pair in pairs]

    def _canonical(self, ids):
        ids = tf.convert_to_tensor(ids)
        for source, target in self.equivalent_ids:
            ids = tf.where(tf.equal(ids, source), tf.cast(target, ids.dtype), ids)
        return ids

    @_graph_ops
    def update_state(self, y_true, y_pred, sample_weight=None):
        candidates, candidate_lengths, references, reference_lengths, keep = _prepare(
            self, self._canonical(y_true), self._canonical(y_pred), sample_weight
        )
        width = tf.maximum(tf.shape(candidates)[-1], tf.shape(references)[-1])
        same_words = tf.reduce_all(
            tf.equal(_to_width(candidates, width)[:, None, :], _to_width(references, width)), axis=-1
        )
        present = reference_lengths > 0
        matches = tf.reduce_sum(tf.cast(same_words & present & (reference_lengths == candidate_lengths[:, None]),
                                        tf.float64), axis=1)
        needed = tf.minimum(tf.reduce_sum(tf.cast(present, tf.float64), axis=1), float(FULL_CREDIT_MATCHES))
        self._add_scores(tf.minimum(tf.constant(1.0, tf.float64), matches / tf.maximum(needed, 1.0)), keep)

    def get_config(self):
        config = super().get_config()
        config.update({"equivalent_ids": [list(pair) for pair in self.equivalent_ids]})
        return config
