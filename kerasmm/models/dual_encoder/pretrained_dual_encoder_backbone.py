"""A whole keras-hub CLIP or SigLIP model as a dual-encoder backbone: towers, projections and all."""

import keras
import keras_hub

HUB_BACKBONES = (keras_hub.models.CLIPBackbone, keras_hub.models.SigLIPBackbone)


@keras.saving.register_keras_serializable(package="kerasmm")
class PretrainedDualEncoderBackbone(keras_hub.models.Backbone):
    """A keras-hub `CLIPBackbone` or `SigLIPBackbone` behind the dual-encoder backbone contract.

    Inputs: `"image"` float32 pixels in [0, 1] at the vision tower's size and
    `"text"` int32 token ids `[B, sequence_length]` packed as the model's own
    preprocessor packs them. The image is normalised inside the model with
    the pretrained mean and standard deviation. Outputs:
    `{"image_embedding", "text_embedding"}`, the pretrained towers'
    projected embeddings, unit length. The pretrained logit scale (and
    SigLIP's bias) are the task's to keep (see `PretrainedDualEncoder`).

    Args:
        hub_backbone: a keras-hub `CLIPBackbone` or `SigLIPBackbone` (or its
            serialized config).
        sequence_length: int, token ids per text.
        mean, std: per-channel image normalisation on [0, 1] pixels.

    Example:
    ```python
    import keras_hub, numpy as np
    from kerasmm.models import PretrainedDualEncoderBackbone
    clip = keras_hub.models.CLIPBackbone(
        vision_encoder=keras_hub.models.CLIPVisionEncoder(patch_size=8, hidden_dim=16, num_layers=1,
            num_heads=2, intermediate_dim=32, image_shape=(32, 32, 3)),
        text_encoder=keras_hub.models.CLIPTextEncoder(vocabulary_size=50, embedding_dim=16,
            hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32, max_sequence_length=8),
        projection_dim=8)
    backbone = PretrainedDualEncoderBackbone(clip, sequence_length=8)
    out = backbone({"image": np.random.rand(2, 32, 32, 3), "text": np.ones((2, 8), "int32")})
    out["image_embedding"].shape   # (2, 8)
    ```
    """

    def __init__(self, hub_backbone, sequence_length, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), dtype=None,
                 **kwargs):
        if isinstance(hub_backbone, dict):
            hub_backbone = keras.layers.deserialize(hub_backbone)
        if not isinstance(hub_backbone, HUB_BACKBONES):
            raise ValueError(f"hub_backbone must be a keras-hub CLIPBackbone or SigLIPBackbone, "
                             f"got {type(hub_backbone).__name__}.")
        mean, std = [float(v) for v in mean], [float(v) for v in std]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must be 3 per-channel values (std > 0), got {mean} and {std}.")
        image_size = tuple(int(s) for s in hub_backbone.vision_encoder.image_shape[:2])

        # === Layers ===
        self.hub_backbone = hub_backbone
        # The hub's head (its logit scale and bias) is not in this graph: the task holds those, initialised
        # from it. Frozen, so the optimizer neither warns of missing gradients nor keeps slots for it.
        hub_backbone.get_layer("siglip_head" if hasattr(hub_backbone, "siglip_head") else "clip_head").trainable = False
        self.normalize = keras.layers.Normalization(mean=mean, variance=[s * s for s in std], dtype="float32",
                                                    name="image_normalize")
        self.normalizations = {m: keras.layers.UnitNormalization(dtype="float32", name=f"{m}_normalization")
                               for m in ("image", "text")}

        # === Functional Model ===
        inputs = {"image": keras.Input((*image_size, 3), name="image"),
                  "text": keras.Input((sequence_length,), dtype="int32", name="text")}
        outputs = {
            "image_embedding": self.normalizations["image"](
                hub_backbone.get_vision_embeddings(self.normalize(inputs["image"]))),
            "text_embedding": self.normalizations["text"](hub_backbone.get_text_embeddings(inputs["text"])),
        }
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.modalities = ["image", "text"]
        self.query_modality = "image"
        self.embedding_dim = int(outputs["image_embedding"].shape[-1])
        self.image_size = image_size
        self.sequence_length = sequence_length
        self.audio_length = None
        self.mean, self.std = mean, std

    def get_config(self):
        config = super().get_config()
        config.update({"hub_backbone": keras.layers.serialize(self.hub_backbone),
                       "sequence_length": self.sequence_length, "mean": self.mean, "std": self.std})
        return config
