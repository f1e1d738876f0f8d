"""`kerasmm.layers.masked_mean` / `masked_softmax` against numpy, fully masked rows included."""

import re
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kerasmm.layers import masked_mean, masked_softmax


def np_masked_mean(x, mask):
    w = mask.astype(x.dtype)[..., None]
    return (x * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1.0)


def np_masked_softmax(logits, keep, axis=-1):
    keep = np.broadcast_to(keep, logits.shape)
    shifted = np.where(keep, logits, -np.inf)
    top = shifted.max(axis=axis, keepdims=True)
    exp = np.where(keep, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = exp.sum(axis=axis, keepdims=True)
    return exp / np.where(total > 0, total, 1.0)


def test_masked_mean_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2)).astype("float32")
    mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1], [1, 1, 1, 1]], bool)
    np.testing.assert_allclose(ops.convert_to_numpy(masked_mean(x, mask)), np_masked_mean(x, mask), rtol=1e-6)
    # A numeric mask (non-zero = real) gives the same.
    np.testing.assert_allclose(
        ops.convert_to_numpy(masked_mean(x, mask.astype("float32"))), np_masked_mean(x, mask), rtol=1e-6
    )


def test_masked_mean_of_a_fully_masked_row_is_zeros():
    x = np.full((2, 3, 4), 7.0, "float32")
    mask = np.array([[True, False, False], [False, False, False]])
    out = ops.convert_to_numpy(masked_mean(x, mask))
    np.testing.assert_array_equal(out, [[7.0] * 4, [0.0] * 4])


def test_masked_mean_keeps_the_dtype():
    x = np.ones((2, 3, 4), "float16")
    out = masked_mean(x, np.array([[True, True, False], [False] * 3]))
    assert ops.convert_to_numpy(out).dtype == np.float16
    np.testing.assert_array_equal(ops.convert_to_numpy(out), [[1.0] * 4, [0.0] * 4])


@pytest.mark.parametrize("axis", [-1, 1])
def test_masked_softmax_matches_numpy(axis):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 3, 5)).astype("float32") * 3
    keep = rng.random((4, 3, 5)) > 0.4
    got = ops.convert_to_numpy(masked_softmax(logits, keep, axis=axis))
    np.testing.assert_allclose(got, np_masked_softmax(logits, keep, axis=axis), rtol=1e-5, atol=1e-7)
    assert np.all(got[~keep] == 0.0), "an entry that is not kept got weight"


def test_masked_softmax_broadcasts_keep():
    # As the gated fusion uses it: keep [B, M, 1] over logits [B, M, D], softmax across M.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 4, 2)).astype("float32")
    keep = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], bool)[:, :, None]
    got = ops.convert_to_numpy(masked_softmax(logits, keep, axis=1))
    np.testing.assert_allclose(got, np_masked_softmax(logits, keep, axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[[0, 2]].sum(axis=1), np.ones((2, 2)), rtol=1e-6)


def test_masked_softmax_of_a_fully_masked_row_is_zeros_with_finite_gradient():
    logits = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    keep = np.array([[True, False, True], [False, False, False]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        out = masked_softmax(logits, keep)
        loss = tf.reduce_sum(out * tf.constant([[1.0, 2.0, 3.0]]))
    out = ops.convert_to_numpy(out)
    np.testing.assert_array_equal(out[1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out[0], [1 / (1 + np.e**2), 0.0, np.e**2 / (1 + np.e**2)], rtol=1e-6)
    grad = tape.gradient(loss, logits).numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad[1] == 0.0)


def test_masked_softmax_float16_has_no_nan():
    logits = np.array([[60000.0, -60000.0, 0.0], [1.0, 2.0, 3.0]], "float16")
    keep = np.array([[False, True, True], [False, False, False]])
    out = ops.convert_to_numpy(masked_softmax(logits, keep))
    assert out.dtype == np.float16 and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("fn", [masked_mean, masked_softmax])
def test_docstring_example_runs_and_gives_the_commented_result(fn):
    match = re.search(r"```python\n(.*?)```", fn.__doc__, re.S)
    assert match, f"{fn.__name__}: the docstring needs a ```python example"
    code = textwrap.dedent(match.group(1)).strip().splitlines()
    expected = eval(code[-1].lstrip("# "))  # the last line is "# <result>"
    namespace = {}
    exec("\n".join(code[:-2]), namespace)
    result = eval(code[-2], namespace)
    np.testing.assert_allclose(ops.convert_to_numpy(result), expected, rtol=1e-6)
