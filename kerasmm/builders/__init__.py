"""Functional-API builders: encoders + fusion → backbone → task models."""

from kerasmm.builders.backbone import MultimodalBackbone  # noqa: F401
from kerasmm.builders.classifier import MultimodalClassifier  # noqa: F401
from kerasmm.builders.preprocessor import MultimodalPreprocessor  # noqa: F401
