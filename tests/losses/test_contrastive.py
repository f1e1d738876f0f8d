import math

import numpy as np
import pytest
import tensorflow as tf

from kerasmm.losses import contrastive


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_info_nce_matches_a_numpy_reference():
    a, b = unit_rows(5, 4, 0), unit_rows(5, 4, 1)
    scale = math.log(1 / 0.07)
    logits = np.exp(scale) * a @ b.T
    expected = -(np.trace(log_softmax(logits)) + np.trace(log_softmax(logits.T))) / (2 * 5)
    np.testing.assert_allclose(float(contrastive.info_nce(a, b, scale)), expected, rtol=1e-5)


def test_sigmoid_loss_matches_a_numpy_reference():
    a, b = unit_rows(4, 3, 2), unit_rows(4, 3, 3)
    scale, bias = math.log(10.0), -10.0
    logits = 10.0 * a @ b.T + bias
    signs = 2 * np.eye(4) - 1
    expected = -np.mean(np.sum(-np.log1p(np.exp(-signs * logits)), axis=1))
    np.testing.assert_allclose(float(contrastive.sigmoid_loss(a, b, scale, bias)), expected, rtol=1e-5)


def test_alignment_loss_is_the_mean_squared_distance():
    a, b = unit_rows(3, 4, 4), unit_rows(3, 4, 5)
    expected = np.mean(np.sum((a - b) ** 2, axis=1))
    np.testing.assert_allclose(float(contrastive.alignment_loss(a, b)), expected, rtol=1e-6)


def test_temperature_is_clamped_at_ln_100():
    a, b = unit_rows(4, 3, 6), unit_rows(4, 3, 7)
    at_limit = contrastive.info_nce(a, b, math.log(100.0))
    np.testing.assert_allclose(float(contrastive.info_nce(a, b, 50.0)), float(at_limit), rtol=1e-6)


def test_matching_pairs_give_a_lower_loss_than_random_ones():
    a = unit_rows(8, 16, 8)
    assert float(contrastive.info_nce(a, a, 3.0)) < float(contrastive.info_nce(a, unit_rows(8, 16, 9), 3.0))


def test_mismatched_batch_sizes_are_refused():
    with pytest.raises(ValueError, match=r"image and text towers must give matching batch sizes"):
        contrastive.info_nce(unit_rows(4, 3, 0), unit_rows(3, 3, 0), 1.0)
    with pytest.raises(ValueError, match=r"audio and text towers must give matching embedding widths"):
        contrastive.sigmoid_loss(unit_rows(4, 3, 0), unit_rows(4, 5, 0), 1.0, 0.0, names=("audio", "text"))

    @tf.function(input_signature=[tf.TensorSpec((None, 3)), tf.TensorSpec((None, 3))])
    def dynamic(a, b):
        return contrastive.info_nce(a, b, 1.0)

    with pytest.raises(tf.errors.InvalidArgumentError, match="matching batch sizes"):
        dynamic(unit_rows(4, 3, 0), unit_rows(3, 3, 0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_temperature_is_a_clear_error(bad):
    with pytest.raises(tf.errors.InvalidArgumentError, match="temperature \\(logit_scale\\) is not finite"):
        contrastive.info_nce(unit_rows(2, 3, 0), unit_rows(2, 3, 1), bad)


def test_hard_negatives_take_the_most_similar_other_rows_both_ways_and_skip_excluded_rows():
    a, b = unit_rows(4, 3, 10), unit_rows(4, 3, 11)
    exclude = np.zeros((4, 4), bool)
    exclude[0] = True  # row 0 has no negative left (all others are duplicates of it)
    exclude[1, 2:] = True
    for_a, for_b, valid = (np.asarray(t) for t in contrastive.hard_negatives(a, b, exclude, count=2))
    blocked = exclude | np.eye(4, dtype=bool)
    assert valid.tolist() == [[False, False], [True, False], [True, True], [True, True]]
    for i in (2, 3):
        np.testing.assert_array_equal(for_a[i], np.argsort(np.where(blocked[i], -np.inf, a[i] @ b.T))[::-1][:2])
        np.testing.assert_array_equal(for_b[i], np.argsort(np.where(blocked[i], -np.inf, b[i] @ a.T))[::-1][:2])
    assert for_a[1, 0] == 0 and for_b[1, 0] == 0  # the one row left to row 1
    # More negatives than the batch holds: the extra ones are invalid, their rows in range.
    for_a, _, valid = (np.asarray(t) for t in contrastive.hard_negatives(a[:2], b[:2], count=3))
    assert valid.tolist() == [[True, False, False]] * 2 and for_a.max() <= 1


def test_swap_two_tokens_swaps_two_of_each_rows_tokens_and_flags_unchanged_rows():
    import keras

    ids = np.array([[5, 6, 7, 8, 0, 0], [4, 4, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0], [3, 1, 2, 0, 0, 0]] * 8, "int32")
    swapped, valid = (np.asarray(t) for t in contrastive.swap_two_tokens(ids, keras.random.SeedGenerator(2)))
    changed = (swapped != ids).sum(axis=1)
    assert set(changed[valid]) == {2} and set(changed[~valid]) == {0}
    assert not valid[1::4].any() and not valid[2::4].any()  # two equal tokens; a single token
    assert valid[0::4].all() and valid[3::4].all()
    np.testing.assert_array_equal(np.sort(swapped, axis=1), np.sort(ids, axis=1))  # the same tokens
    np.testing.assert_array_equal(swapped[:, 4:], 0)  # padding stays where it is
    assert len({tuple(row) for row in swapped[0::4]}) > 3  # positions drawn anew for each row


def test_matching_loss_is_binary_cross_entropy_over_the_counted_logits():
    positive, wrong_a, wrong_b = np.array([2.0, -1.0]), np.array([0.5, 3.0]), np.array([-2.0, 1.0])
    valid = np.array([True, False])
    softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731
    expected = (softplus(-positive).sum() + softplus(wrong_a[0]) + softplus(wrong_b[0])) / 4
    value = contrastive.matching_loss(positive, [wrong_a, wrong_b], [valid, valid])
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
