"""Losses that Keras' per-example `Loss` API cannot express (they couple rows of a batch)."""

from kerasmm.losses import contrastive  # noqa: F401
