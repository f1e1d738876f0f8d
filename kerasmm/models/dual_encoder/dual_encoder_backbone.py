"""The dual encoder's backbone: two towers into one normalised embedding space."""


import keras

from kerasmm import validation
from kerasmm.models.backbone_parts import EncodersBackbone, image_pair, model_inputs, resolve_encoders



@keras.saving.register_keras_serializable(package="kerasmm")
class DualEncoderBackbone(EncodersBackbone):
    """Two towers, each encoder → linear projection → L2 normalisation.

    Inputs: the two modalities of the backbone contract (e.g. `"image"` and
    `"text"`). Outputs: `{"<modality>_embedding": [B, E]}` for each, unit length.

    Args:
        encoders: dict with exactly two modalities, "text" and one of "image"
            or "audio", each a registered encoder name, spec dict or layer.
        embedding_dim: int, E.
        image_size, sequence_length, audio_length: input sizes, as for
            `MultimodalBackbone`.

    Example:
    ```python
    import numpy as np
    from kerasmm.models import DualEncoderBackbone
    backbone = DualEncoderBackbone(
        encoders={"image": {"name": "cnn", "output_dim": 16, "filters": [8]},
                  "text": {"name": "bow", "vocabulary_size": 20, "output_dim": 16}},
        embedding_dim=8, image_size=16, sequence_length=6)
    out = backbone({"image": np.zeros((2, 16, 16, 3), "float32"), "text": np.ones((2, 6), "int32")})
    ```
    """

    def __init__(self, encoders, embedding_dim, image_size=None, sequence_length=None, audio_length=None,
                 dtype=None, **kwargs):
        # === Layers ===
        if not isinstance(encoders, dict) or sorted(encoders) not in (["image", "text"], ["audio", "text"]):
            raise ValueError(
                "A dual encoder needs encoders for 'text' and one of 'image' or 'audio'; "
                f"got {sorted(encoders) if isinstance(encoders, dict) else encoders!r}."
            )
        embedding_dim = validation.positive_int("embedding_dim", embedding_dim)
        built = resolve_encoders(encoders, slot="tower")
        self.encoder_layers = built
        # `dtype` (None: the global policy) reaches the projections, so a reloaded backbone keeps
        # its policy; the unit normalisation runs in float32, so embeddings are float32 under
        # mixed precision and the similarities the loss and retrieval compute stay accurate.
        self.projections = {
            m: keras.layers.Dense(embedding_dim, use_bias=False, dtype=dtype, name=f"{m}_projection") for m in built
        }
        self.normalizations = {
            m: keras.layers.UnitNormalization(dtype="float32", name=f"{m}_normalization") for m in built
        }

        # === Functional Model ===
        modalities = sorted(built)
        image_size = image_pair(image_size) if image_size is not None else None
        inputs = model_inputs(modalities, image_size, sequence_length, audio_length)
        inputs = {m: inputs[m] for m in modalities}  # no presence masks: both towers always run
        outputs = {
            f"{m}_embedding": self.normalizations[m](self.projections[m](built[m](inputs[m])["pooled"]))
            for m in modalities
        }
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self._set_inputs(modalities, image_size, sequence_length, audio_length)
        self.embedding_dim = embedding_dim

    @property
    def query_modality(self):
        """The non-text tower's modality ("image" or "audio")."""
        return next(m for m in self.modalities if m != "text")

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim})
        return config
