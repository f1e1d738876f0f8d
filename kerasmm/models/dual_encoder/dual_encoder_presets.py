"""The dual-encoder (retrieval) family's zoo entries and how an entry's settings become a model."""

from kerasmm.models.dual_encoder.dual_encoder_backbone import DualEncoderBackbone
from kerasmm.models.dual_encoder.dual_encoder_task import CLIP_LOGIT_SCALE, DualEncoder
from kerasmm.models.preset_parts import build_encoders, compiled, component, input_sizes, preprocessor_for

# Every setting a dual-encoder entry takes (`zoo.get` overrides are checked against these), with its default.
SETTINGS = {
    "task": "retrieval",
    "encoders": None,
    "embedding_dim": 64,
    "loss": "contrastive",
    "logit_scale": CLIP_LOGIT_SCALE,
    "logit_bias": -10.0,
    "image_size": 32,
    "sequence_length": 16,
    "audio_length": 4000,
    "vocabulary": None,
    "learning_rate": 1e-3,
    "retrieval_groups": "rows",
    "matching_layers": 0,
    "matching_heads": 2,
    "matching_weight": 1.0,
    "matching_negatives": 3,
    "matching_swaps": 0,
    "rerank_candidates": 10,
}
# The settings each component takes as they are.
BACKBONE = ("embedding_dim", "sequence_length", "matching_layers", "matching_heads")
TASK = ("loss", "logit_scale", "logit_bias", "retrieval_groups", "matching_weight", "matching_negatives",
        "matching_swaps", "rerank_candidates")


def build(**settings):
    """A compiled `DualEncoder` from an entry's settings (see `SETTINGS`)."""
    image = (settings["encoders"] or {}).get("image")
    if settings["matching_layers"] and isinstance(image, dict) and image.get("name") == "cnn":
        # The matching head re-ranks better reading the CNN's finer grid too: shape details the last
        # grid loses (zoo/dual_encoder/README.md).
        settings = {**settings, "encoders": {**settings["encoders"], "image": {"detail_grid": True, **image}}}
    encoders, tokenizer = build_encoders(settings)
    backbone = DualEncoderBackbone(encoders=encoders, **input_sizes(settings, encoders),
                                   **component(settings, BACKBONE))
    preprocessor = preprocessor_for(backbone, tokenizer, presence_masks=False, text_from_targets=True)
    model = DualEncoder(backbone, preprocessor=preprocessor, compile=False, **component(settings, TASK))
    return compiled(model, settings["learning_rate"])


IMAGE_TEXT = {
    "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
    "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
}
TINY_IMAGE_TEXT = {
    "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
    "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
}
SIGLIP_LOGIT_SCALE = 2.302585  # log 10, SigLIP's initial temperature

# Each entry: its names (later ones are aliases), what it is, and its settings at full and tiny size.
PRESETS = [
    {
        "names": ["dual_encoder"],
        "description": "CLIP-style: CNN image tower + transformer text tower, symmetric InfoNCE over the global batch.",
        "full": {"encoders": IMAGE_TEXT},
        "tiny": {"encoders": TINY_IMAGE_TEXT, "embedding_dim": 16, "sequence_length": 12},
    },
    {
        "names": ["siglip_dual_encoder"],
        "description": "SigLIP-style: the same towers with the pairwise sigmoid loss and a learnable bias.",
        "full": {"encoders": IMAGE_TEXT, "loss": "sigmoid", "logit_scale": SIGLIP_LOGIT_SCALE},
        "tiny": {"encoders": TINY_IMAGE_TEXT, "embedding_dim": 16, "sequence_length": 12, "loss": "sigmoid",
                 "logit_scale": SIGLIP_LOGIT_SCALE},
    },
    {
        "names": ["audio_text_dual_encoder"],
        "description": "Audio (log-mel conv) tower + transformer text tower, symmetric InfoNCE.",
        "full": {"encoders": {"audio": {"name": "log_mel", "output_dim": 128, "backend": "conv"},
                              "text": IMAGE_TEXT["text"]}},
        "tiny": {"encoders": {"audio": {"name": "log_mel", "output_dim": 16, "backend": "conv", "num_mel_bins": 16},
                              "text": TINY_IMAGE_TEXT["text"]},
                 "embedding_dim": 16, "sequence_length": 12, "audio_length": 1600},
    },
]
