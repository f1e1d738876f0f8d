"""kerasmm.validation: each check returns good values and names the argument, value and valid range in its error."""

import re

import numpy as np
import pytest

from kerasmm import validation


def refused(check, *args, match):
    with pytest.raises(ValueError, match=match):
        check(*args)


@pytest.mark.parametrize("check, minimum, what", [
    (validation.positive_int, 1, "a positive int"),
    (validation.non_negative_int, 0, "a non-negative int"),
    (lambda name, value, **kw: validation.int_at_least(name, value, 2, **kw), 2, r"an integer >= 2"),
])
def test_ints(check, minimum, what):
    assert check("n", minimum) == minimum and check("n", 7) == 7
    value = check("n", np.int64(minimum + 1))
    assert value == minimum + 1 and type(value) is int
    assert check("n", None, allow_none=True) is None
    for bad in (minimum - 1, True, False, 2.0, "3", None, [3]):
        refused(check, "n", bad, match=rf"^n must be {what}, got {re.escape(repr(bad))}\.$")
    refused(lambda: check("n", -5, allow_none=True), match=rf"^n must be None or {what}, got -5\.$")


def test_positive_ints():
    assert validation.positive_ints("filters", (8, np.int32(16))) == [8, 16]
    assert validation.positive_ints("filters", [1]) == [1]
    for bad in ([], (8, 0), [8, True], [8, 2.5], 8, "8", None):
        refused(validation.positive_ints, "filters", bad,
                match=rf"^filters must be a non-empty list of positive ints, got {re.escape(repr(bad))}\.$")


@pytest.mark.parametrize("check, good, bad_values, what", [
    (validation.positive_number, (1e-3, 2, np.float32(0.5)), (0, -1.0, float("nan")), "a positive number"),
    (validation.non_negative_number, (0, 2.5, np.float64(3)), (-1e-9, float("nan")), "a non-negative number"),
    (validation.rate, (0, 0.5, 0.999), (1, 1.0, -0.1), r"a float in \[0, 1\)"),
    (validation.probability, (0, 0.5, 1), (1.01, -0.1), r"a float in \[0, 1\]"),
])
def test_numbers(check, good, bad_values, what):
    for value in good:
        assert check("x", value) == float(value) and type(check("x", value)) is float
    for bad in (*bad_values, True, "0.5", None):
        refused(check, "x", bad, match=rf"^x must be {what}, got {re.escape(repr(bad))}\.$")


def test_boolean():
    assert validation.boolean("flag", True) is True and validation.boolean("flag", False) is False
    for bad in (0, 1, "yes", None):
        refused(validation.boolean, "flag", bad, match=rf"^flag must be True or False, got {re.escape(repr(bad))}\.$")


def test_one_of():
    assert validation.one_of("pooling", "max", ("avg", "max")) == "max"
    assert validation.one_of("pooling", "avg", ["avg", "max"]) == "avg"
    assert validation.one_of("order", 1, (0, 1)) == 1
    refused(validation.one_of, "pooling", "sum", ("avg", "max"),
            match=r"^pooling must be one of \('avg', 'max'\), got 'sum'\.$")
    refused(validation.one_of, "order", True, (0, 1), match=r"^order must be one of \(0, 1\), got True\.$")
    refused(validation.one_of, "pooling", ["avg"], ("avg", "max"), match=r"got \['avg'\]")


def test_owner_prefix_reads_naturally():
    refused(validation.positive_int, "TextEncoder: num_heads", 0,
            match=r"^TextEncoder: num_heads must be a positive int, got 0\.$")
