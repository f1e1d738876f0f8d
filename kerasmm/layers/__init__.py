"""Small layers and masked operations shared by encoders, fusions and models."""

from kerasmm.layers.masked_ops import masked_mean, masked_softmax  # noqa: F401
from kerasmm.layers.modality_dropout import ModalityDropout, drop_modalities, presence_matrix  # noqa: F401
