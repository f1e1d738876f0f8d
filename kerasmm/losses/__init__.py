"""Losses that Keras' per-example `Loss` API cannot express (they couple rows of a batch)."""

from kerasmm.losses import contrastive  # noqa: F401
from kerasmm.losses.sequence import SmoothedSparseCrossentropy  # noqa: F401,E402
