"""Argument checks: each returns the value it checked, or raises a ValueError
naming the argument, the bad value and what would be valid.

```python
from kerasmm import validation

num_heads = validation.positive_int("num_heads", 4)  # 4
dropout = validation.rate("dropout", 0)  # 0.0
pooling = validation.one_of("pooling", "avg", ("avg", "max"))  # "avg"
try:
    validation.positive_int("TextEncoder: num_heads", True)
except ValueError as error:
    print(error)  # TextEncoder: num_heads must be a positive int, got True.
```

`name` is the argument as the message shows it; prefix its owner
("TextEncoder: num_heads") where that helps. Integers refuse bools and accept
numpy integers (returned as `int`); numbers refuse bools and strings and are
returned as `float`. This module is the lowest layer: it imports nothing from
kerasmm.
"""

import numbers


def _int(name, value, minimum, what, allow_none):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be {'None or ' if allow_none else ''}{what}, got {value!r}.")
    return int(value)


def positive_int(name, value, allow_none=False):
    """`value` as an int if it is an integer >= 1 (or None when `allow_none`)."""
    return _int(name, value, 1, "a positive int", allow_none)


def non_negative_int(name, value, allow_none=False):
    """`value` as an int if it is an integer >= 0 (or None when `allow_none`)."""
    return _int(name, value, 0, "a non-negative int", allow_none)


def int_at_least(name, value, minimum, allow_none=False):
    """`value` as an int if it is an integer >= `minimum` (or None when `allow_none`)."""
    return _int(name, value, minimum, f"an integer >= {minimum}", allow_none)


def positive_ints(name, values):
    """`values` as a list if it is a non-empty sequence of integers >= 1."""
    iterable = hasattr(values, "__iter__") and not isinstance(values, (str, bytes, dict))
    items = list(values) if iterable else []
    if not items or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in items):
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {values!r}.")
    return [int(v) for v in items]


def _number(name, value, valid, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not valid(value):
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return float(value)


def positive_number(name, value):
    """`value` as a float if it is a number > 0."""
    return _number(name, value, lambda v: v > 0, "a positive number")


def non_negative_number(name, value):
    """`value` as a float if it is a number >= 0."""
    return _number(name, value, lambda v: v >= 0, "a non-negative number")


def rate(name, value):
    """`value` as a float if it is in [0, 1) (a dropout rate, label smoothing)."""
    return _number(name, value, lambda v: 0 <= v < 1, "a float in [0, 1)")


def probability(name, value):
    """`value` as a float if it is in [0, 1]."""
    return _number(name, value, lambda v: 0 <= v <= 1, "a float in [0, 1]")


def fraction(name, value):
    """`value` as a float if it is in (0, 1) (a share of the data to hold out)."""
    return _number(name, value, lambda v: 0 < v < 1, "a float between 0 and 1 (exclusive)")


def boolean(name, value):
    """`value` if it is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return value


def one_of(name, value, choices):
    """`value` if it equals one of `choices` (a bool never equals 0 or 1 here)."""
    if not any(isinstance(value, bool) == isinstance(c, bool) and value == c for c in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")
    return value


def preview(names, limit=5):
    """`names` for a message: the first `limit`, and how many in all when there are more.

    >>> preview(["ant", "bee", "cat", "dog", "eel", "fox"])
    'ant, bee, cat, dog, eel, ... (6 in all)'
    """
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
