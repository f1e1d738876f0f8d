"""The text-to-image backbone: a text encoder's pooled output, the decoder's condition."""


import keras
import keras_hub

from kerasmm import validation
from kerasmm.models.backbone_parts import resolve_encoders


@keras.saving.register_keras_serializable(package="kerasmm")
class TextToImageBackbone(keras_hub.models.Backbone):
    """A text encoder's pooled output, the condition of a text-to-image decoder.

    Input: `{"text": int32 [B, T]}` token ids (0 = padding). Output: the
    encoder's `pooled` features `[B, D]`.

    Args:
        text_encoder: a registered text encoder name, spec dict or layer.
        sequence_length: int, T.

    Example:
    ```python
    import numpy as np
    from kerasmm.models import TextToImageBackbone
    backbone = TextToImageBackbone({"name": "bow", "vocabulary_size": 20, "output_dim": 8}, sequence_length=6)
    backbone({"text": np.ones((2, 6), "int32")}).shape  # (2, 8)
    ```
    """

    def __init__(self, text_encoder, sequence_length, dtype=None, **kwargs):
        sequence_length = validation.positive_int("sequence_length", sequence_length)
        # === Layers ===
        self.text_encoder = resolve_encoders({"text": text_encoder})["text"]

        # === Functional Model ===
        inputs = {"text": keras.Input(shape=(sequence_length,), dtype="int32", name="text")}
        pooled = self.text_encoder(inputs["text"])["pooled"]
        super().__init__(inputs=inputs, outputs=pooled, dtype=dtype, **kwargs)

        # === Config ===
        self.sequence_length = sequence_length

    @property
    def modalities(self):
        return ["text"]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_encoder": keras.layers.serialize(self.text_encoder),
                "sequence_length": self.sequence_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["text_encoder"] = keras.layers.deserialize(config["text_encoder"])
        return super().from_config(config)
