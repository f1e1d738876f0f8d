"""The dual encoder's backbone: two towers into one normalised embedding space."""


import keras

from kerasmm import validation
from kerasmm.models.backbone_parts import EncodersBackbone, image_pair, model_inputs, resolve_encoders
from kerasmm.models.dual_encoder.dual_encoder_matching import ImageTextMatchingHead


@keras.saving.register_keras_serializable(package="kerasmm")
class DualEncoderBackbone(EncodersBackbone):
    """Two towers, each encoder → linear projection → L2 normalisation.

    Inputs: the two modalities of the backbone contract (e.g. `"image"` and
    `"text"`). Outputs: `{"<modality>_embedding": [B, E]}` for each, unit length.

    With `matching_layers > 0` (image and text towers only) the backbone also
    holds an `ImageTextMatchingHead` (`matching_head`) and outputs the towers'
    tokens, `"text_tokens"` `[B, T, D]`, `"text_token_mask"` `[B, T]` (1.0 at
    real positions) and `"image_tokens"` `[B, N, Di]`, and `"match_logit"`
    `[B]`, the head's logit for each row's own (text, image) pair. An image
    encoder that also gives a `"detail_sequence"` (the CNN's `detail_grid`)
    adds that finer grid, projected to Di, before its own tokens.

    Args:
        encoders: dict with exactly two modalities, "text" and one of "image"
            or "audio", each a registered encoder name, spec dict or layer.
        embedding_dim: int, E.
        image_size, sequence_length, audio_length: input sizes, as for
            `MultimodalBackbone`.
        matching_layers: int >= 0, cross-attention blocks of the image–text
            matching head (0: no head).
        matching_heads: positive int, the head's attention heads.

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
                 matching_layers=0, matching_heads=2, dtype=None, **kwargs):
        # === Layers ===
        if not isinstance(encoders, dict) or sorted(encoders) not in (["image", "text"], ["audio", "text"]):
            raise ValueError(
                "A dual encoder needs encoders for 'text' and one of 'image' or 'audio'; "
                f"got {sorted(encoders) if isinstance(encoders, dict) else encoders!r}."
            )
        embedding_dim = validation.positive_int("embedding_dim", embedding_dim)
        matching_layers = validation.non_negative_int("matching_layers", matching_layers)
        matching_heads = validation.positive_int("matching_heads", matching_heads)
        if matching_layers and "image" not in encoders:
            raise ValueError("matching_layers: the image–text matching head needs an image tower; "
                             f"this dual encoder pairs text with {sorted(set(encoders) - {'text'})[0]}.")
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
        self.matching_head = (ImageTextMatchingHead(matching_layers, matching_heads, dtype=dtype, name="matching_head")
                              if matching_layers else None)

        # === Functional Model ===
        modalities = sorted(built)
        image_size = image_pair(image_size) if image_size is not None else None
        inputs = model_inputs(modalities, image_size, sequence_length, audio_length)
        inputs = {m: inputs[m] for m in modalities}  # no presence masks: both towers always run
        encoded = {m: built[m](inputs[m]) for m in modalities}
        outputs = {f"{m}_embedding": self.embed(m, encoded[m]) for m in modalities}
        if self.matching_head is not None:
            text, image = encoded["text"], encoded["image"]
            outputs["text_tokens"] = text["sequence"]
            outputs["text_token_mask"] = self.token_mask(text)
            image_tokens = image["sequence"]
            if "detail_sequence" in image:
                self.detail_projection = keras.layers.Dense(image_tokens.shape[-1], dtype=dtype,
                                                            name="detail_projection")
                image_tokens = keras.ops.concatenate([self.detail_projection(image["detail_sequence"]), image_tokens],
                                                     axis=1)
            outputs["image_tokens"] = image_tokens
            similarity = keras.ops.sum(outputs["text_embedding"] * outputs["image_embedding"], axis=-1)
            outputs["match_logit"] = self.matching_head(text["sequence"], outputs["text_token_mask"], image_tokens,
                                                        similarity)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self._set_inputs(modalities, image_size, sequence_length, audio_length)
        self.embedding_dim = embedding_dim
        self.matching_layers = matching_layers
        self.matching_heads = matching_heads

    def embed(self, modality, encoded):
        """The unit embedding of a tower's output (`encoded`, the encoder's dict): its projected `"pooled"`."""
        return self.normalizations[modality](self.projections[modality](encoded["pooled"]))

    @staticmethod
    def token_mask(encoded):
        """`[B, T]` float32, 1.0 at the real positions of an encoder's `"sequence"` (all, without a mask)."""
        mask = encoded.get("sequence_mask")
        if mask is None:
            mask = keras.ops.ones_like(encoded["sequence"][:, :, 0])
        return keras.ops.cast(mask, "float32")

    @property
    def query_modality(self):
        """The non-text tower's modality ("image" or "audio")."""
        return next(m for m in self.modalities if m != "text")

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim, "matching_layers": self.matching_layers,
                       "matching_heads": self.matching_heads})
        return config
