"""Image/audio tokens → causal transformer decoder with cross-attention: the captioners' backbone."""

import keras
import keras_hub
from keras import ops

from kerasmm import validation
from kerasmm.models.backbone_parts import EncodersBackbone, image_pair, model_inputs, resolve_encoders
from kerasmm.models.captioner.captioner_preprocessor import CONTEXT_MODALITIES
from kerasmm.layers import ModalityDropout


@keras.saving.register_keras_serializable(package="kerasmm")
class CaptionerBackbone(EncodersBackbone):
    """Context encoders (image and/or audio) and a causal decoder that attends to them.

    Each context encoder's `"sequence"` (ViT patches, a CNN feature grid,
    log-mel frames) is projected to `hidden_dim`, given a learned position
    per token, and concatenated along time; `num_encoder_layers` transformer
    blocks may mix it further. A modality whose presence flag
    `"<modality>_mask"` is 0 for an example is hidden from that example's
    cross-attention, so one model captions from image alone, audio alone or
    both. The decoder is a stack of pre-norm keras_hub `TransformerDecoder`
    blocks over token + position embeddings; the output is its final hidden
    states `[B, L, hidden_dim]` (the task turns them into logits with the
    tied token embedding).

    Inputs: the backbone contract for the context modalities (`"image"`
    float32 `[B,H,W,3]` in [0, 1], `"audio"` float32 `[B,S]`, and their
    `"<modality>_mask"` flags `[B]`) plus `"tokens"` int32 `[B, L]`.

    Args:
        encoders: dict modality → encoder spec or layer, modalities among
            ("image", "audio").
        vocabulary_size: int.
        sequence_length: int, decoder positions (also the longest generation).
        hidden_dim, num_layers, num_heads, intermediate_dim: decoder size.
        num_encoder_layers: int, transformer blocks over the context tokens.
        dropout: float.
        modality_dropout: float, the chance that training hides a context
            modality of an example (never all of them), so that a
            multi-modality model learns to caption from any subset.
        context_dropout: float, the chance that training hides every
            context modality of an example, so that the decoder also trains
            on writing from its prompt (text) alone. An example with no
            modality present attends to nothing (Keras' masked softmax
            gives a fully masked row zero weights): its cross-attention adds
            only the output bias, whatever the placeholders hold.
        image_size: (height, width), needed with an image encoder.
        audio_length: int samples, needed with an audio encoder.

    Example:
    ```python
    import numpy as np
    from kerasmm.models import CaptionerBackbone
    backbone = CaptionerBackbone(
        encoders={"image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]}},
        vocabulary_size=30, sequence_length=8, hidden_dim=16, num_layers=1,
        num_heads=2, image_size=(16, 16))
    hidden = backbone({"image": np.zeros((2, 16, 16, 3), "float32"),
                       "image_mask": np.ones((2,), "float32"),
                       "tokens": np.ones((2, 8), "int32")})   # (2, 8, 16)
    ```
    """

    def __init__(
        self,
        encoders,
        vocabulary_size,
        sequence_length,
        hidden_dim=128,
        num_layers=2,
        num_heads=4,
        intermediate_dim=None,
        num_encoder_layers=0,
        dropout=0.1,
        modality_dropout=0.0,
        context_dropout=0.0,
        image_size=None,
        audio_length=None,
        dtype=None,
        **kwargs,
    ):
        name = type(self).__name__
        for key, value in (
            ("vocabulary_size", vocabulary_size),
            ("sequence_length", sequence_length),
            ("hidden_dim", hidden_dim),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
        ):
            validation.positive_int(f"{name}: {key}", value)
        intermediate_dim = validation.positive_int(f"{name}: intermediate_dim", intermediate_dim, allow_none=True)
        validation.non_negative_int(f"{name}: num_encoder_layers", num_encoder_layers)
        if hidden_dim % num_heads:
            raise ValueError(f"{name}: hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads}).")
        dropout = validation.rate(f"{name}: dropout", dropout)
        context_dropout = validation.rate(f"{name}: context_dropout", context_dropout)
        built = resolve_encoders(encoders, slot="context")
        unknown = [m for m in built if m not in CONTEXT_MODALITIES]
        if unknown:
            raise ValueError(
                f"{name}: a captioner attends to {list(CONTEXT_MODALITIES)}; {unknown} cannot be context "
                "(text is what the decoder writes)."
            )
        modalities = [m for m in CONTEXT_MODALITIES if m in built]
        if "image" in built and image_size is None:
            raise ValueError(f"{name}: an image encoder needs image_size=(height, width).")
        if "audio" in built and not audio_length:
            raise ValueError(f"{name}: an audio encoder needs audio_length (samples per clip).")
        image_size = image_pair(image_size) if "image" in built else None
        intermediate_dim = intermediate_dim or 4 * hidden_dim

        # === Layers ===
        self.encoder_layers = built
        # `dtype` (None: the global policy) reaches every layer, so a reloaded backbone keeps its policy.
        self.context_projections = {
            m: keras.layers.Dense(hidden_dim, dtype=dtype, name=f"{m}_projection") for m in modalities
        }
        # One learned position table per modality, sized by its token count at the first (symbolic) call.
        self.context_positions = {}
        self.modality_dropout = ModalityDropout(
            modality_dropout, drop_all_rate=context_dropout, dtype=dtype, name="modality_dropout"
        )
        self.context_encoder_layers = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim, num_heads, dropout=dropout, normalize_first=True, dtype=dtype,
                name=f"context_encoder_{i}",
            )
            for i in range(num_encoder_layers)
        ]
        self.context_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name="context_norm")
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, hidden_dim, tie_weights=True, reverse_dtype="float32", dtype=dtype, name="token_embedding"
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            sequence_length, dtype=dtype, name="position_embedding"
        )
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embedding_dropout")
        self.decoder_layers = [
            keras_hub.layers.TransformerDecoder(
                intermediate_dim, num_heads, dropout=dropout, normalize_first=True, dtype=dtype, name=f"decoder_{i}"
            )
            for i in range(num_layers)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name="decoder_norm")

        # === Functional Model ===
        inputs = model_inputs(modalities, image_size, audio_length=audio_length)
        inputs["tokens"] = keras.Input(shape=(sequence_length,), dtype="int32", name="tokens")
        context, context_mask = self.encode_context(inputs)
        x = self.embedding_dropout(self.embed_tokens(inputs["tokens"]))
        for layer in self.decoder_layers:
            x = layer(x, encoder_sequence=context, encoder_padding_mask=context_mask)
        outputs = self.decoder_norm(x)
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self._set_inputs(modalities, image_size, sequence_length, audio_length)
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.num_encoder_layers = num_encoder_layers
        self.dropout = dropout

    def encode_context(self, inputs, training=None):
        """`(context [B, S, D], context_mask [B, S] bool)` from the context modalities of `inputs`."""
        sequences, masks = [], []
        presence = self.modality_dropout([inputs[f"{m}_mask"] for m in self.encoder_layers], training=training)
        for m, present in zip(self.encoder_layers, presence):
            encoded = self.encoder_layers[m](inputs[m], training=training)
            sequence = self.context_projections[m](encoded["sequence"])
            if m not in self.context_positions:
                if sequence.shape[1] is None:
                    raise ValueError(f"The {m} encoder gives a sequence of unknown length for its input size.")
                self.context_positions[m] = keras_hub.layers.PositionEmbedding(
                    sequence_length=sequence.shape[1], dtype=self.context_projections[m].dtype_policy,
                    name=f"{m}_position_embedding",
                )
            sequences.append(sequence + self.context_positions[m](sequence))
            masks.append(ops.logical_and(ops.cast(encoded["sequence_mask"], "bool"), present[:, None] > 0.5))
        context = sequences[0] if len(sequences) == 1 else ops.concatenate(sequences, axis=1)
        context_mask = masks[0] if len(masks) == 1 else ops.concatenate(masks, axis=1)
        for layer in self.context_encoder_layers:
            context = layer(context, padding_mask=context_mask, training=training)
        return self.context_norm(context), context_mask

    def embed_tokens(self, tokens, start_index=0):
        embedded = self.token_embedding(tokens)
        return embedded + self.position_embedding(embedded, start_index=start_index)

    def decode_with_cache(self, tokens, context, context_mask, self_caches, index, cross_caches, seed_cross=False):
        """One cached decoder pass over `tokens` placed at position `index`.

        `self_caches` / `cross_caches` hold one `[B, 2, length, heads,
        head_dim]` tensor per layer (kept apart, so no step copies the whole
        cache to stack or slice it). With `seed_cross` the cross-attention
        keys and values are computed from `context` and written to
        `cross_caches`; otherwise the cached ones are read and `context`
        only sizes the mask.
        Returns `(hidden [B, T, D], self_caches, cross_caches)`.
        """
        x = self.embed_tokens(tokens, start_index=index)
        new_self, new_cross = [], []
        for layer, self_cache, cross_cache in zip(self.decoder_layers, self_caches, cross_caches):
            x, self_cache, cross_cache = layer(
                decoder_sequence=x,
                encoder_sequence=context,
                encoder_padding_mask=context_mask,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=0 if seed_cross else None,
            )
            new_self.append(self_cache)
            new_cross.append(cross_cache)
        return self.decoder_norm(x), tuple(new_self), tuple(new_cross) if seed_cross else cross_caches

    def empty_caches(self, batch_size, max_length, context_length):
        """Zero self- and cross-attention caches for `batch_size` rows: a tuple of per-layer tensors each."""
        head_dim = self.hidden_dim // self.num_heads
        self_shape = (batch_size, 2, max_length, self.num_heads, head_dim)
        cross_shape = (batch_size, 2, context_length, self.num_heads, head_dim)
        return (
            tuple(ops.zeros(self_shape, dtype=self.compute_dtype) for _ in self.decoder_layers),
            tuple(ops.zeros(cross_shape, dtype=self.compute_dtype) for _ in self.decoder_layers),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "num_encoder_layers": self.num_encoder_layers,
                "dropout": self.dropout,
                "modality_dropout": self.modality_dropout.rate,
                "context_dropout": self.modality_dropout.drop_all_rate,
            }
        )
        return config
