"""The classifier family's backbone: encoders + fusion as one functional model."""

import keras

from kerasmm import fusions as fusion_registry
from kerasmm.models.backbone_parts import EncodersBackbone, image_pair, model_inputs, resolve_encoders
from kerasmm.models.multimodal_preprocessor import MODALITIES
from kerasmm.registry import resolve


@keras.saving.register_keras_serializable(package="kerasmm")
class MultimodalBackbone(EncodersBackbone):
    """Per-modality encoders whose outputs a fusion layer combines.

    Inputs follow the backbone contract: `"image"` float32 `[B,H,W,3]` in
    [0, 1], `"text"` int32 `[B,T]` (0 = padding), `"audio"` float32 `[B,S]`,
    and for each modality a presence flag `"<modality>_mask"` `[B]`. The
    output is the fused `[B, D]` tensor.

    Args:
        encoders: dict modality → encoder (a registered name, a
            `{"name": ..., **config}` dict, or an encoder layer). Keys are
            among "image", "text", "audio" and must match the encoder's modality.
        fusion: a registered fusion name, spec dict or layer.
        image_size: (height, width) of the image input.
        sequence_length: int, length of the text input.
        audio_length: int, samples of the audio input.

    Example:
    ```python
    import numpy as np
    from kerasmm.models import MultimodalBackbone
    backbone = MultimodalBackbone(
        encoders={"image": {"name": "cnn", "output_dim": 16, "filters": [8]},
                  "text": {"name": "bow", "vocabulary_size": 20, "output_dim": 16}},
        fusion="weighted_sum", image_size=(16, 16), sequence_length=6)
    fused = backbone({"image": np.zeros((2, 16, 16, 3), "float32"),
                      "image_mask": np.ones((2,), "float32"),
                      "text": np.ones((2, 6), "int32"),
                      "text_mask": np.ones((2,), "float32")})
    ```
    """

    def __init__(
        self,
        encoders,
        fusion,
        image_size=None,
        sequence_length=None,
        audio_length=None,
        dtype=None,
        **kwargs,
    ):
        # === Layers ===
        built = resolve_encoders(encoders)
        modalities = [m for m in MODALITIES if m in built]
        image_size = image_pair(image_size) if image_size is not None else None
        if "text" in built and not sequence_length:
            raise ValueError("A text encoder needs sequence_length (token ids per text).")
        if "audio" in built and not audio_length:
            raise ValueError("An audio encoder needs audio_length (samples per clip).")
        self.encoder_layers = built
        self.fusion = resolve(fusion_registry.FUSIONS, fusion)

        # === Functional Model ===
        inputs = model_inputs(modalities, image_size, sequence_length, audio_length)
        fusion_inputs = {}
        pooled = {}
        for m in modalities:
            encoded = built[m](inputs[m])
            pooled[m] = encoded["pooled"]
            if self.fusion.input_kind == "sequence":
                fusion_inputs[m] = encoded["sequence"]
                fusion_inputs[f"{m}_padding_mask"] = encoded["sequence_mask"]
            else:
                fusion_inputs[m] = encoded["pooled"]
            fusion_inputs[f"{m}_mask"] = inputs[f"{m}_mask"]
        fused = self.fusion(fusion_inputs)
        super().__init__(inputs=inputs, outputs=fused, dtype=dtype, **kwargs)
        # Symbolic: each modality's pooled [B, D] encoding, for heads that also train on one modality alone.
        self.modality_features = pooled

        # === Config ===
        self._set_inputs(modalities, image_size, sequence_length, audio_length)

    def get_config(self):
        config = super().get_config()
        config.update({"fusion": keras.layers.serialize(self.fusion)})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fusion"] = keras.layers.deserialize(config["fusion"])
        return super().from_config(config)
