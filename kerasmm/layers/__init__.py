"""Small layers shared by encoders, fusions and builders."""

from kerasmm.layers.modality_dropout import ModalityDropout, drop_modalities  # noqa: F401
