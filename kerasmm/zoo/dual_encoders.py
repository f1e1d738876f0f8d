"""Zoo entries of the dual-encoder (retrieval) family and their builder."""

import keras

from kerasmm.builders.dual_encoder import CLIP_LOGIT_SCALE, DualEncoder, DualEncoderBackbone
from kerasmm.builders.preprocessor import MultimodalPreprocessor
from kerasmm.zoo import register_with_twin
from kerasmm.zoo.common import build_encoders

DUAL_ENCODER_DEFAULTS = {
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
}


def build_dual_encoder(task, encoders, embedding_dim, loss, logit_scale, logit_bias, image_size, sequence_length,
                       audio_length, vocabulary, learning_rate, retrieval_groups):
    """Build and compile a `DualEncoder` from an architecture dict."""
    del task
    built, tokenizer = build_encoders(encoders, vocabulary, image_size, sequence_length)
    backbone = DualEncoderBackbone(
        encoders=built,
        embedding_dim=embedding_dim,
        image_size=image_size if "image" in built else None,
        sequence_length=sequence_length,
        audio_length=audio_length if "audio" in built else None,
    )
    preprocessor = MultimodalPreprocessor(
        modalities=backbone.modalities,
        tokenizer=tokenizer,
        sequence_length=sequence_length,
        image_size=backbone.image_size,
        audio_length=backbone.audio_length,
        presence_masks=False,
        text_from_targets=True,
    )
    model = DualEncoder(backbone, preprocessor=preprocessor, loss=loss, logit_scale=logit_scale,
                        logit_bias=logit_bias, retrieval_groups=retrieval_groups, compile=False)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def register_dual_encoder(name, description, full, tiny):
    register_with_twin(name, build_dual_encoder, DUAL_ENCODER_DEFAULTS, full, tiny, description)


IMAGE_TEXT = {
    "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
    "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
}
TINY_IMAGE_TEXT = {
    "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
    "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
}

register_dual_encoder(
    "dual_encoder",
    "CLIP-style: CNN image tower + transformer text tower, symmetric InfoNCE over the global batch.",
    full={"encoders": IMAGE_TEXT},
    tiny={"encoders": TINY_IMAGE_TEXT, "embedding_dim": 16, "sequence_length": 12},
)
register_dual_encoder(
    "siglip_dual_encoder",
    "SigLIP-style: the same towers with the pairwise sigmoid loss and a learnable bias.",
    full={"encoders": IMAGE_TEXT, "loss": "sigmoid", "logit_scale": 2.302585},  # log 10, as SigLIP
    tiny={"encoders": TINY_IMAGE_TEXT, "embedding_dim": 16, "sequence_length": 12, "loss": "sigmoid",
          "logit_scale": 2.302585},
)
register_dual_encoder(
    "audio_text_dual_encoder",
    "Audio (log-mel conv) tower + transformer text tower, symmetric InfoNCE.",
    full={"encoders": {"audio": {"name": "log_mel", "output_dim": 128, "backend": "conv"},
                       "text": IMAGE_TEXT["text"]}},
    tiny={"encoders": {"audio": {"name": "log_mel", "output_dim": 16, "backend": "conv", "num_mel_bins": 16},
                       "text": TINY_IMAGE_TEXT["text"]},
          "embedding_dim": 16, "sequence_length": 12, "audio_length": 1600},
)
