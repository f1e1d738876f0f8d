"""Caption metrics on token ids: `Bleu`, `CiderD`, `RougeL` (graph-mode Keras metrics).

They reproduce pycocoevalcap's scorers (the COCO caption evaluation code):
corpus BLEU-N with the "closest" reference length and its 1e-9 / 1e-15
epsilons, CIDEr-D (its `Cider` scorer: document frequency over the evaluated
set's references, clipped tf-idf, gaussian length penalty, x10) and ROUGE-L
(beta 1.2). keras_hub's `Bleu` runs its n-gram counting in Python on eager
tensors, so it cannot be updated inside `model.evaluate`'s compiled step or
under a distribution strategy; these keep tensor state and run in graph mode,
under XLA and under `tf.distribute.MirroredStrategy`.

Inputs
------
`update_state(y_true, y_pred, sample_weight=None)`:

* `y_pred`: integer token ids `[B, L]`, one generated caption per example.
* `y_true`: integer token ids of the references, `[B, L]` (one each) or
  `[B, R, L]` (R each; a row that is all padding is a missing reference).
* `sample_weight`: optional `[B]`; examples with weight 0 are skipped, other
  weights are not used (each example counts once, as in pycocoevalcap).

Each caption is cleaned the same way: tokens from the first `end_id` on are
dropped (when `end_id` is set), then every `pad_id` and `ignore_ids` token
(e.g. the start id), and n-grams are formed over what is left. An example
whose references are all empty is skipped. Ids are compared, never decoded:
two ids that detokenize to one word count as different words.

Distribution
------------
Keras metric variables are per replica and summed when read outside the
replicas. `Bleu` and `RougeL` keep sums (clipped matches, n-gram counts and
lengths; scores and counts). `CiderD` needs the document frequencies of the
whole evaluated set before it can score any example, so it buffers every
example's token ids and scores them in `result()`: each replica writes its
examples into its own slot range of the buffer and leaves the rest zero, so
the summed buffer holds every example. `update_state` must then run inside
`strategy.run`, and `CiderD` must be created in `strategy.scope()`.

`result()` inside a replica (as Keras' progress bar does each step) gives
that replica's share; the value `evaluate` returns is read across replicas.

Example:
```python
import numpy as np
from kerasmm.metrics import Bleu, CiderD, RougeL
references = np.array([[[4, 5, 6, 7], [4, 5, 8, 0]], [[9, 5, 6, 0], [0, 0, 0, 0]]])  # 0 = padding
candidates = np.array([[1, 4, 5, 6, 7, 2, 0], [1, 9, 5, 2, 3, 3, 0]])  # 1 = start, 2 = end
tokens = dict(pad_id=0, end_id=2, ignore_ids=(1,))
for metric in (Bleu(max_order=2, **tokens), CiderD(capacity=8, max_length=8, **tokens), RougeL(**tokens)):
    metric.update_state(references, candidates)
    print(metric.name, float(metric.result()))
```
"""

import keras
import numpy as np
import tensorflow as tf

from kerasmm import validation

# pycocoevalcap's BleuScorer: precision = (matches + TINY) / (guesses + SMALL), and the same for the length
# ratio, so a corpus without n-grams of some order scores ~0 rather than dividing by zero.
_SMALL = 1e-9
_TINY = 1e-15
_INT64_MIN = np.iinfo(np.int64).min
# The metrics' Python control flow is static (loops over n-gram orders, tf.while_loop for the rest), so
# tf.function need not convert it with autograph: tracing is several times faster.
_graph_ops = tf.autograph.experimental.do_not_convert


# --- inputs ------------------------------------------------------------------


def _token_ids(value, what, ranks):
    """`value` as an int64 tensor, after checking its dtype and rank."""
    if value is None or isinstance(value, (dict, str, bytes)):
        raise ValueError(f"{what} must be integer token ids, got {type(value).__name__}.")
    tensor = tf.convert_to_tensor(value)
    if not tensor.dtype.is_integer:
        raise ValueError(
            f"{what} must be integer token ids, got dtype {tensor.dtype.name} (for logits, pass "
            "their argmax over the vocabulary)."
        )
    if tensor.shape.rank not in ranks:
        shapes = " or ".join(("[batch, length]", "[batch, references, length]")[r - 2] for r in ranks)
        raise ValueError(f"{what} must have shape {shapes}, got shape {tensor.shape}.")
    return tf.cast(tensor, tf.int64)


def _clean(tokens, pad_id, end_id, ignore_ids):
    """Kept tokens moved to the front of the last axis (the rest zeroed), and their count."""
    keep = tf.not_equal(tokens, pad_id)
    for token in ignore_ids:
        keep = tf.logical_and(keep, tf.not_equal(tokens, token))
    if end_id is not None:
        before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, end_id), tf.int32), axis=-1), 0)
        keep = tf.logical_and(keep, before_end)
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=-1, stable=True)
    tokens = tf.gather(tokens, order, batch_dims=tokens.shape.rank - 1)
    lengths = tf.reduce_sum(tf.cast(keep, tf.int64), axis=-1)
    inside = tf.range(tf.shape(tokens, out_type=tf.int64)[-1]) < lengths[..., None]
    return tf.where(inside, tokens, tf.zeros_like(tokens)), lengths


def _prepare(metric, y_true, y_pred, sample_weight):
    """Cleaned candidates `[B, L]`, references `[B, R, M]`, their lengths, and which examples count."""
    candidates = _token_ids(y_pred, f"{type(metric).__name__} y_pred", (2,))
    references = _token_ids(y_true, f"{type(metric).__name__} y_true", (2, 3))
    if references.shape.rank == 2:
        references = references[:, None, :]
    batch = candidates.shape[0]
    if batch is not None and references.shape[0] is not None and batch != references.shape[0]:
        raise ValueError(
            f"{type(metric).__name__}: y_true and y_pred have different batch sizes: {references.shape[0]} "
            f"and {batch}."
        )
    checks = [tf.debugging.assert_equal(
        tf.shape(references)[0], tf.shape(candidates)[0],
        message=f"{type(metric).__name__}: y_true and y_pred have different batch sizes",
    )]
    if sample_weight is not None:
        sample_weight = tf.reshape(tf.convert_to_tensor(sample_weight), [-1])
        if batch is not None and sample_weight.shape[0] is not None and sample_weight.shape[0] != batch:
            raise ValueError(
                f"{type(metric).__name__}: sample_weight has {sample_weight.shape[0]} values for a batch of "
                f"{batch}."
            )
        checks.append(tf.debugging.assert_equal(
            tf.shape(sample_weight)[0], tf.shape(candidates)[0],
            message=f"{type(metric).__name__}: sample_weight and y_pred have different batch sizes",
        ))
    with tf.control_dependencies(checks):
        candidates = tf.identity(candidates)
    clean = dict(pad_id=metric.pad_id, end_id=metric.end_id, ignore_ids=metric.ignore_ids)
    candidates, candidate_lengths = _clean(candidates, **clean)
    references, reference_lengths = _clean(references, **clean)
    keep = tf.reduce_any(reference_lengths > 0, axis=1)
    if sample_weight is not None:
        keep = tf.logical_and(keep, tf.not_equal(sample_weight, 0))
    return candidates, candidate_lengths, references, reference_lengths, keep


def _to_width(tokens, width):
    """`tokens` padded with zeros or cut to `width` on the last axis."""
    padding = tf.zeros(tf.concat([tf.shape(tokens)[:-1], [width]], axis=0), tokens.dtype)
    return tf.concat([tokens, padding], axis=-1)[..., :width]


def _keep(condition, values):
    """`values` where `condition`, else 0."""
    return tf.where(condition, values, tf.zeros_like(values))


class _CaptionMetric(keras.metrics.Metric):
    """Token cleaning options shared by the caption metrics."""

    def __init__(self, pad_id=0, end_id=None, ignore_ids=(), name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.pad_id = validation.non_negative_int("pad_id", pad_id)
        self.end_id = validation.non_negative_int("end_id", end_id, allow_none=True)
        try:
            self.ignore_ids = tuple(validation.non_negative_int("each of ignore_ids", i) for i in ignore_ids)
        except TypeError as error:
            raise ValueError(f"ignore_ids must be a sequence of ints, got {ignore_ids!r}.") from error

    def _sum(self, name, shape=()):
        return self.add_variable(shape=shape, initializer="zeros", dtype="float64", name=name)

    def get_config(self):
        config = super().get_config()
        config.update({"pad_id": self.pad_id, "end_id": self.end_id, "ignore_ids": list(self.ignore_ids)})
        return config


# --- BLEU --------------------------------------------------------------------


def _shift_windows(equal, offset):
    """`equal[..., i + offset, j + offset]` at `[..., i, j]`, False past the ends."""
    if offset == 0:
        return equal
    rank = equal.shape.rank
    return tf.pad(equal[..., offset:, offset:], [[0, 0]] * (rank - 2) + [[0, offset], [0, offset]])


def _window_mask(lengths, width, order):
    """Positions where an `order`-gram starts inside a caption of `lengths` tokens."""
    return tf.range(width, dtype=tf.int64) + order <= lengths[..., None]


def _bleu_statistics(candidates, candidate_lengths, references, reference_lengths, max_order):
    """Per example: clipped matches and candidate n-grams per order `[B, N]`, the closest reference length."""
    width = tf.shape(candidates, out_type=tf.int64)[1]
    ref_width = tf.shape(references, out_type=tf.int64)[2]
    self_equal = tf.equal(candidates[:, :, None], candidates[:, None, :])  # [B, L, L]
    ref_equal = tf.equal(candidates[:, None, :, None], references[:, :, None, :])  # [B, R, L, M]
    earlier = tf.range(width)[None, :] < tf.range(width)[:, None]  # [i, j]: j < i
    same, matching = self_equal, ref_equal
    matches, guesses = [], []
    for order in range(1, max_order + 1):
        same = tf.logical_and(same, _shift_windows(self_equal, order - 1))
        matching = tf.logical_and(matching, _shift_windows(ref_equal, order - 1))
        inside = _window_mask(candidate_lengths, width, order)  # [B, L]
        ref_inside = _window_mask(reference_lengths, ref_width, order)  # [B, R, M]
        same_inside = tf.logical_and(same, inside[:, None, :])
        count = tf.reduce_sum(tf.cast(same_inside, tf.int64), axis=2)
        # Each distinct n-gram is counted once, at its first occurrence, clipped by its most frequent reference.
        first = tf.logical_and(inside, tf.logical_not(tf.reduce_any(tf.logical_and(same_inside, earlier), axis=2)))
        in_reference = tf.reduce_sum(tf.cast(tf.logical_and(matching, ref_inside[:, :, None, :]), tf.int64), axis=3)
        clipped = tf.minimum(count, tf.reduce_max(in_reference, axis=1))
        matches.append(tf.reduce_sum(tf.where(first, clipped, 0), axis=1))
        guesses.append(tf.maximum(candidate_lengths - order + 1, 0))
    # "closest": the reference length nearest the candidate's, the shorter one on a tie.
    present = reference_lengths > 0
    distance = tf.abs(reference_lengths - candidate_lengths[:, None])
    nearest = tf.reduce_min(tf.where(present, distance, tf.int64.max), axis=1, keepdims=True)
    closest = tf.reduce_min(
        tf.where(tf.logical_and(present, tf.equal(distance, nearest)), reference_lengths, tf.int64.max), axis=1
    )
    return tf.stack(matches, axis=1), tf.stack(guesses, axis=1), closest


@keras.saving.register_keras_serializable(package="kerasmm")
class Bleu(_CaptionMetric):
    """Corpus BLEU-N on token ids, as pycocoevalcap's `Bleu` scores it.

    Clipped n-gram matches and candidate n-grams are summed over the corpus
    for orders 1..N; BLEU-N is the geometric mean of the N precisions times
    the brevity penalty, with each candidate's reference length the one
    closest to its length. BLEU-k for k < N from pycocoevalcap's `Bleu(N)`
    equals `Bleu(max_order=k)`: make one metric per order. See the module
    docstring for the input contract.

    Args:
        max_order: N.
        smooth: add one to every order's matches and candidate n-grams (as
            keras_hub's `Bleu(smooth=True)`) instead of pycocoevalcap's
            epsilons.
        pad_id, end_id, ignore_ids: which tokens are not words (module docstring).
        name: defaults to `"bleu_{max_order}"`.

    Example:
    ```python
    from kerasmm.metrics import Bleu
    metric = Bleu(max_order=1)
    metric.update_state([[5, 6, 7, 0]], [[5, 6, 9, 0]])
    float(metric.result())   # 0.6666...: 2 of 3 words match
    ```
    """

    def __init__(self, max_order=4, smooth=False, pad_id=0, end_id=None, ignore_ids=(), name=None, dtype=None):
        max_order = validation.positive_int("max_order", max_order)
        super().__init__(pad_id, end_id, ignore_ids, name=name or f"bleu_{max_order}", dtype=dtype)
        self.max_order = max_order
        self.smooth = bool(smooth)
        self.matches = self._sum("matches", (max_order,))
        self.guesses = self._sum("guesses", (max_order,))
        self.candidate_length = self._sum("candidate_length")
        self.reference_length = self._sum("reference_length")
        self.count = self._sum("count")

    @_graph_ops
    def update_state(self, y_true, y_pred, sample_weight=None):
        candidates, candidate_lengths, references, reference_lengths, keep = _prepare(
            self, y_true, y_pred, sample_weight
        )
        matches, guesses, closest = _bleu_statistics(
            candidates, candidate_lengths, references, reference_lengths, self.max_order
        )

        def total(values):  # over the kept examples
            values = tf.cast(values, tf.float64)
            return tf.reduce_sum(_keep(keep[:, None] if values.shape.rank == 2 else keep, values), axis=0)

        self.matches.assign_add(total(matches))
        self.guesses.assign_add(total(guesses))
        self.candidate_length.assign_add(total(candidate_lengths))
        self.reference_length.assign_add(total(closest))
        self.count.assign_add(total(tf.ones_like(candidate_lengths)))

    @_graph_ops
    def result(self):
        matches = tf.convert_to_tensor(self.matches)
        guesses = tf.convert_to_tensor(self.guesses)
        if self.smooth:
            precisions = (matches + 1.0) / (guesses + 1.0)
        else:
            precisions = (matches + _TINY) / (guesses + _SMALL)
        score = tf.exp(tf.reduce_mean(tf.math.log(precisions)))
        ratio = (tf.convert_to_tensor(self.candidate_length) + _TINY) / (
            tf.convert_to_tensor(self.reference_length) + _SMALL
        )
        score = tf.where(ratio < 1.0, score * tf.exp(1.0 - 1.0 / ratio), score)
        return tf.cast(_keep(tf.convert_to_tensor(self.count) > 0, score), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"max_order": self.max_order, "smooth": self.smooth})
        return config


# --- ROUGE-L -----------------------------------------------------------------


def _lcs_lengths(candidates, candidate_lengths, references, reference_lengths):
    """Longest common subsequence of each candidate with each of its references, `[B, R]`.

    The dynamic program runs over candidate tokens; each step updates a row
    over reference positions as a running maximum, computed as a masked max
    over `[M, M]` so every shape is static for XLA.
    """
    ref_width = tf.shape(references)[2]
    ref_inside = tf.range(ref_width, dtype=tf.int64) < reference_lengths[..., None]  # [B, R, M]
    up_to = tf.range(ref_width)[:, None] >= tf.range(ref_width)[None, :]  # [j, k]: k <= j
    steps = tf.reduce_max(tf.concat([candidate_lengths, tf.zeros([1], tf.int64)], axis=0))

    def step(i, row):  # row[..., j]: LCS of the candidate's first i tokens and the reference's first j + 1
        token = candidates[:, i]
        match = tf.logical_and(tf.equal(references, token[:, None, None]), ref_inside)
        match = tf.logical_and(match, (i < candidate_lengths)[:, None, None])
        diagonal = tf.pad(row[..., :-1], [[0, 0], [0, 0], [1, 0]])
        best = tf.maximum(row, tf.where(match, diagonal + 1, 0))
        return i + 1, tf.reduce_max(tf.where(up_to, best[..., None, :], 0), axis=-1)

    row = tf.zeros(tf.shape(references), tf.int32)
    _, row = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0, tf.int64), row))
    return tf.reduce_max(tf.pad(row, [[0, 0], [0, 0], [1, 0]]), axis=-1)


class _MeanOverExamples(_CaptionMetric):
    """A caption metric whose result is the mean of one score per kept example (`_add_scores`)."""

    def __init__(self, pad_id=0, end_id=None, ignore_ids=(), name=None, dtype=None):
        super().__init__(pad_id, end_id, ignore_ids, name=name, dtype=dtype)
        self.total = self._sum("total")
        self.count = self._sum("count")

    def _add_scores(self, scores, keep):
        self.total.assign_add(tf.reduce_sum(_keep(keep, scores)))
        self.count.assign_add(tf.reduce_sum(tf.cast(keep, tf.float64)))

    @_graph_ops
    def result(self):
        total, count = tf.convert_to_tensor(self.total), tf.convert_to_tensor(self.count)
        return tf.cast(tf.math.divide_no_nan(total, count), self.dtype)


@keras.saving.register_keras_serializable(package="kerasmm")
class RougeL(_MeanOverExamples):
    """ROUGE-L on token ids, as pycocoevalcap's `Rouge` scores it.

    Per example, precision and recall of the longest common subsequence are
    each maximised over the references (separately, as pycocoevalcap does),
    combined into F = (1 + beta^2) P R / (R + beta^2 P); the result is the
    mean F over the examples. See the module docstring for the inputs.

    Args:
        beta: weight of recall against precision.
        pad_id, end_id, ignore_ids: which tokens are not words (module docstring).

    Example:
    ```python
    from kerasmm.metrics import RougeL
    metric = RougeL()
    metric.update_state([[5, 6, 7, 8]], [[5, 7, 8, 0]])
    float(metric.result())   # LCS 3: P = 1, R = 0.75, F = 0.8...
    ```
    """

    def __init__(self, beta=1.2, pad_id=0, end_id=None, ignore_ids=(), name="rouge_l", dtype=None):
        super().__init__(pad_id, end_id, ignore_ids, name=name, dtype=dtype)
        self.beta = float(beta)

    @_graph_ops
    def update_state(self, y_true, y_pred, sample_weight=None):
        candidates, candidate_lengths, references, reference_lengths, keep = _prepare(
            self, y_true, y_pred, sample_weight
        )
        lcs = tf.cast(_lcs_lengths(candidates, candidate_lengths, references, reference_lengths), tf.float64)
        # An empty candidate or a missing reference (length 0) has LCS 0 and scores 0.
        precision = tf.reduce_max(tf.math.divide_no_nan(lcs, tf.cast(candidate_lengths, tf.float64)[:, None]), axis=1)
        recall = tf.reduce_max(tf.math.divide_no_nan(lcs, tf.cast(reference_lengths, tf.float64)), axis=1)
        beta2 = self.beta**2
        score = tf.math.divide_no_nan((1 + beta2) * precision * recall, recall + beta2 * precision)
        self._add_scores(score, keep)

    def get_config(self):
        config = super().get_config()
        config["beta"] = self.beta
        return config


# --- CIDEr-D -----------------------------------------------------------------


def _runs(values):
    """True where a sorted vector's value differs from the one before (and at 0)."""
    return tf.concat([[True], tf.not_equal(values[1:], values[:-1])], axis=0)


def _cider_d(tokens, lengths, valid, max_order, sigma):
    """Mean CIDEr-D of the valid examples (pycocoevalcap's `CiderScorer`).

    `tokens` `[S, K, L]` hold each slot's candidate (k = 0) and references,
    `lengths` `[S, K]` their lengths (0: no caption). n-grams get exact
    integer ids with static shapes: a stable sort of all positions gives the
    ids of order 1; an n-gram's key is its (n-1)-gram id paired with the id of
    its last token, ranked again. In that sort, positions with one n-gram are
    adjacent and in buffer order, so each slot's candidate entries precede
    its references', and term and document frequencies are run lengths.
    """
    slots, k, width = tokens.shape
    positions = slots * k * width
    sentences = slots * k
    lengths = tf.where(valid[:, None], lengths, 0)
    examples = tf.reduce_sum(tf.cast(valid, tf.float64))
    log_examples = tf.math.log(tf.maximum(examples, 1.0))

    similarity = tf.zeros([slots, k - 1], tf.float64)
    key = tf.reshape(tokens, [-1])
    gram_id = unigram_id = None
    for order in range(1, max_order + 1):
        inside = tf.reshape(_window_mask(lengths, width, order), [-1])
        if order > 1:
            last = tf.reshape(unigram_id, [slots, k, width])[..., order - 1:]
            last = tf.reshape(tf.pad(last, [[0, 0], [0, 0], [0, order - 1]]), [-1])
            key = gram_id * (positions + 1) + last  # the (n-1)-gram's id, then its last token's
        key = tf.where(inside, key, _INT64_MIN)
        order_index = tf.argsort(key, stable=True)
        sorted_key = tf.gather(key, order_index)
        sorted_inside = tf.not_equal(sorted_key, _INT64_MIN)
        sorted_sentence = tf.cast(order_index, tf.int64) // width
        sorted_slot = sorted_sentence // k
        sorted_reference = sorted_sentence % k > 0

        new_gram = _runs(sorted_key)
        new_in_slot = tf.logical_or(new_gram, _runs(sorted_slot))
        new_in_sentence = tf.logical_or(new_gram, _runs(sorted_sentence))
        gram = tf.cumsum(tf.cast(new_gram, tf.int64)) - 1
        in_slot = tf.cumsum(tf.cast(new_in_slot, tf.int64)) - 1
        in_sentence = tf.cumsum(tf.cast(new_in_sentence, tf.int64)) - 1

        def per_run(values, run):
            return tf.gather(tf.math.unsorted_segment_sum(values, run, positions), run)

        ones = tf.cast(sorted_inside, tf.float64)
        term_frequency = per_run(ones, in_sentence)
        after_reference = tf.concat([[False], sorted_reference[:-1]], axis=0)
        first_reference = tf.logical_and(
            tf.logical_and(sorted_inside, sorted_reference), tf.logical_or(new_in_slot, tf.logical_not(after_reference))
        )
        document_frequency = per_run(tf.cast(first_reference, tf.float64), gram)
        idf = log_examples - tf.math.log(tf.maximum(document_frequency, 1.0))
        weight = _keep(tf.logical_and(new_in_sentence, sorted_inside), term_frequency * idf)
        candidate_weight = per_run(_keep(tf.logical_not(sorted_reference), weight), in_slot)
        clipped = _keep(sorted_reference, tf.minimum(candidate_weight, weight) * weight)
        norm = tf.sqrt(tf.math.unsorted_segment_sum(weight * weight, sorted_sentence, sentences))
        dot = tf.math.unsorted_segment_sum(clipped, sorted_sentence, sentences)
        norm, dot = tf.reshape(norm, [slots, k]), tf.reshape(dot, [slots, k])
        both = tf.logical_and(norm[:, :1] > 0, norm[:, 1:] > 0)
        similarity += _keep(both, tf.math.divide_no_nan(dot[:, 1:], norm[:, :1] * norm[:, 1:]))

        gram_id = tf.scatter_nd(order_index[:, None], gram, [positions])  # back in buffer order
        if order == 1:
            unigram_id = gram_id

    # pycocoevalcap's length is the number of bigrams (its `if n == 1` tests the 0-based order index), so
    # with max_order 1 every length is 0 and there is no penalty.
    length = tf.maximum(lengths - 1, 0) if max_order > 1 else tf.zeros_like(lengths)
    delta = tf.cast(length[:, :1] - length[:, 1:], tf.float64)
    penalty = tf.exp(-(delta * delta) / (2.0 * sigma * sigma))
    references = tf.reduce_sum(tf.cast(lengths[:, 1:] > 0, tf.float64), axis=1)
    per_example = 10.0 * tf.math.divide_no_nan(
        tf.reduce_sum(similarity * penalty, axis=1) / max_order, references
    )
    return tf.math.divide_no_nan(tf.reduce_sum(_keep(valid, per_example)), examples)


def _replica():
    """(replica id, replicas in sync) of the current replica context."""
    context = tf.distribute.get_replica_context()
    if context is None:
        raise ValueError(
            "CiderD.update_state under a distribution strategy must run inside strategy.run: its buffers are "
            "per replica."
        )
    return tf.cast(context.replica_id_in_sync_group, tf.int64), context.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="kerasmm")
class CiderD(_CaptionMetric):
    """CIDEr-D on token ids over the whole evaluated set, as pycocoevalcap's `Cider` (a CIDEr-D) scores it.

    Document frequencies come from the references of the examples seen since
    `reset_state()`, so `update_state` buffers every example's token ids and
    `result()` scores them all (for each order 1..N: tf-idf vectors, clipped
    cosine similarity with each reference, gaussian penalty on the length
    difference; averaged over orders and references, x10, averaged over
    examples). See the module docstring for the inputs and distribution.

    `result()` sorts the whole buffer `max_order` times, whatever it holds:
    keep `capacity`, `max_references` and `max_length` near the evaluation
    set's needs (Keras calls `result()` after every step).

    Args:
        sigma: standard deviation of the length penalty.
        max_order: N.
        capacity: the most examples one evaluation may hold (per replica
            under a distribution strategy); more raise an error naming it.
        max_length: the most tokens a cleaned caption may have.
        max_references: the most non-empty references an example may have
            (COCO has images with 6 and 7 captions).
        pad_id, end_id, ignore_ids: which tokens are not words (module docstring).

    Example:
    ```python
    from kerasmm.metrics import CiderD
    metric = CiderD(capacity=4, max_length=4, max_references=1)
    metric.update_state([[5, 6, 7], [8, 9, 7]], [[5, 6, 7], [8, 6, 0]])
    float(metric.result())   # 4.366...: the mean of 7.5 (exact match) and 1.23
    ```
    """

    def __init__(self, sigma=6.0, max_order=4, capacity=5000, max_length=64, max_references=5, pad_id=0,
                 end_id=None, ignore_ids=(), name="cider_d", dtype=None):
        super().__init__(pad_id, end_id, ignore_ids, name=name, dtype=dtype)
        self.sigma = float(sigma)
        self.max_order = validation.positive_int("max_order", max_order)
        self.capacity = validation.positive_int("capacity", capacity)
        self.max_length = validation.positive_int("max_length", max_length)
        self.max_references = validation.positive_int("max_references", max_references)
        # One slot range per replica (read as their sum), plus a last slot that absorbs skipped rows.
        self._replicas = tf.distribute.get_strategy().num_replicas_in_sync
        slots = self._replicas * self.capacity + 1

        def buffer(shape, name):
            return self.add_variable(shape=shape, initializer="zeros", dtype="int64", name=name)

        self.tokens = buffer((slots, 1 + self.max_references, self.max_length), "tokens")
        self.lengths = buffer((slots, 1 + self.max_references), "lengths")
        self.count = buffer((), "count")  # examples this replica has stored (or tried to)
        self.overflow = buffer((), "overflow")  # examples past capacity
        self.truncated = buffer((), "truncated")  # examples with too many references or tokens

    @_graph_ops
    def update_state(self, y_true, y_pred, sample_weight=None):
        replica, replicas = _replica()
        if replicas > self._replicas:
            raise ValueError(
                f"CiderD was created for {self._replicas} replica(s) and is updated by {replicas}: create it "
                "inside strategy.scope()."
            )
        candidates, candidate_lengths, references, reference_lengths, keep = _prepare(
            self, y_true, y_pred, sample_weight
        )
        # Non-empty references first, then exactly max_references of them and max_length tokens.
        order = tf.argsort(tf.cast(tf.equal(reference_lengths, 0), tf.int32), axis=1, stable=True)
        references = tf.gather(references, order, batch_dims=1)
        reference_lengths = tf.gather(reference_lengths, order, batch_dims=1)
        captions = tf.concat([_to_width(candidates[:, None, :], self.max_length),
                              _to_width(references, self.max_length)], axis=1)
        lengths = tf.concat([candidate_lengths[:, None], reference_lengths], axis=1)
        captions, lengths, too_big = self._fit(captions, lengths)

        start = tf.convert_to_tensor(self.count)
        positions = start + tf.cumsum(tf.cast(keep, tf.int64)) - 1
        fits = tf.logical_and(keep, positions < self.capacity)
        spare = self._replicas * self.capacity
        indices = tf.where(fits, replica * self.capacity + positions, spare)[:, None]
        overflow = tf.reduce_sum(tf.cast(tf.logical_and(keep, tf.logical_not(fits)), tf.int64))
        truncated = tf.reduce_sum(tf.cast(tf.logical_and(keep, too_big), tf.int64))
        checks = self._checks(tf.convert_to_tensor(self.overflow) + overflow,
                              tf.convert_to_tensor(self.truncated) + truncated)
        with tf.control_dependencies(checks):
            tf.raw_ops.ResourceScatterNdUpdate(ref=self.tokens.handle, indices=indices, updates=captions)
            tf.raw_ops.ResourceScatterNdUpdate(ref=self.lengths.handle, indices=indices, updates=lengths)
            self.count.assign_add(tf.reduce_sum(tf.cast(keep, tf.int64)))
            self.overflow.assign_add(overflow)
            self.truncated.assign_add(truncated)

    def _fit(self, captions, lengths):
        """Pad or cut `[B, 1 + R, max_length]` to the buffer's `[B, 1 + max_references, max_length]`."""
        batch = tf.shape(captions)[0]
        rows = self.max_references + 1
        too_big = tf.reduce_any(lengths > self.max_length, axis=1)
        too_big = tf.logical_or(too_big, tf.reduce_any(lengths[:, rows:] > 0, axis=1))
        captions = tf.concat([captions, tf.zeros([batch, rows, self.max_length], tf.int64)], axis=1)[:, :rows]
        lengths = tf.concat([lengths, tf.zeros([batch, rows], tf.int64)], axis=1)[:, :rows]
        return captions, tf.minimum(lengths, self.max_length), too_big

    def _checks(self, overflow, truncated):
        # Raise in eager and graph mode; XLA drops asserts, so `result()` checks again (Keras calls it
        # eagerly at the end of `evaluate`).
        return [
            tf.debugging.assert_equal(
                overflow, tf.constant(0, tf.int64),
                message=f"CiderD capacity exceeded: it holds at most capacity={self.capacity} examples per "
                "evaluation (per replica); pass a larger capacity",
            ),
            tf.debugging.assert_equal(
                truncated, tf.constant(0, tf.int64),
                message=f"CiderD got a caption longer than max_length={self.max_length} tokens or more than "
                f"max_references={self.max_references} references; pass larger values",
            ),
        ]

    @_graph_ops
    def result(self):
        with tf.control_dependencies(self._checks(tf.convert_to_tensor(self.overflow),
                                                  tf.convert_to_tensor(self.truncated))):
            lengths = tf.identity(self.lengths)[:-1]
        tokens = tf.convert_to_tensor(self.tokens)[:-1]
        valid = tf.reduce_any(lengths[:, 1:] > 0, axis=1)
        return tf.cast(_cider_d(tokens, lengths, valid, self.max_order, self.sigma), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({
            "sigma": self.sigma,
            "max_order": self.max_order,
            "capacity": self.capacity,
            "max_length": self.max_length,
            "max_references": self.max_references,
        })
        return config


# --- strings -----------------------------------------------------------------


def caption_scores(references, candidates, max_order=4):
    """BLEU-1..N, CIDEr-D and ROUGE-L of whitespace-tokenised strings.

    Args:
        references: one list of reference strings per candidate (or one string).
        candidates: the candidate strings.

    Returns:
        dict of floats: `"bleu_1"` .. `"bleu_{max_order}"`, `"cider_d"`, `"rouge_l"`.

    Example:
    ```python
    from kerasmm.metrics import caption_scores
    caption_scores([["a dog runs", "a dog is running"]], ["a dog runs"])["bleu_1"]   # ~1.0
    ```
    """
    references = [[r] if isinstance(r, str) else list(r) for r in references]
    candidates = list(candidates)
    if len(references) != len(candidates) or not candidates:
        raise ValueError(f"Pass one list of references per candidate: {len(references)} and {len(candidates)}.")
    vocabulary = {}

    def ids(text):
        return [vocabulary.setdefault(word, len(vocabulary) + 1) for word in text.split()]

    candidate_ids = [ids(c) for c in candidates]
    reference_ids = [[ids(r) for r in refs] for refs in references]
    width = max(1, max(len(t) for t in candidate_ids + [r for refs in reference_ids for r in refs]))
    count = max(len(refs) for refs in reference_ids)
    y_pred = np.zeros((len(candidates), width), np.int64)
    y_true = np.zeros((len(candidates), count, width), np.int64)
    for i, (tokens, refs) in enumerate(zip(candidate_ids, reference_ids)):
        y_pred[i, : len(tokens)] = tokens
        for j, ref in enumerate(refs):
            y_true[i, j, : len(ref)] = ref
    metrics = [Bleu(max_order=n) for n in range(1, max_order + 1)]
    metrics += [CiderD(capacity=len(candidates), max_length=width, max_references=count), RougeL()]
    scores = {}
    for metric in metrics:
        metric.update_state(y_true, y_pred)
        scores[metric.name] = float(metric.result())
    return scores
