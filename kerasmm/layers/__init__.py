"""Small layers shared by encoders, fusions and models."""

from kerasmm.layers.modality_dropout import ModalityDropout, drop_modalities  # noqa: F401
