"""Zoo entries of the captioner family (image and/or audio → text) and their builder."""

import keras

from kerasmm.builders.captioner import Captioner
from kerasmm.builders.captioner_backbone import CaptionerBackbone
from kerasmm.builders.captioner_preprocessor import CaptionerPreprocessor
from kerasmm.zoo import register_with_twin
from kerasmm.zoo.common import build_encoders, tokenizer_for

CAPTIONER_DEFAULTS = {
    "task": "captioning",
    "encoders": None,
    "hidden_dim": 128,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_dim": None,
    "num_encoder_layers": 0,
    "dropout": 0.1,
    "modality_dropout": 0.0,
    "image_size": 32,
    "sequence_length": 16,
    "audio_length": 4000,
    "vocabulary": None,
    "label_smoothing": 0.0,
    "sampler": "greedy",
    "learning_rate": 1e-3,
}


def build_captioner(task, encoders, hidden_dim, num_layers, num_heads, intermediate_dim, num_encoder_layers, dropout,
                    modality_dropout, image_size, sequence_length, audio_length, vocabulary, label_smoothing, sampler,
                    learning_rate):
    """Build and compile a `Captioner` from an architecture dict."""
    del task
    built, _ = build_encoders(encoders, vocabulary, image_size, sequence_length)
    tokenizer = tokenizer_for(vocabulary)
    backbone = CaptionerBackbone(
        encoders=built,
        vocabulary_size=tokenizer.vocabulary_size(),
        sequence_length=sequence_length,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        num_encoder_layers=num_encoder_layers,
        dropout=dropout,
        modality_dropout=modality_dropout,
        image_size=image_size if "image" in built else None,
        audio_length=audio_length if "audio" in built else None,
    )
    preprocessor = CaptionerPreprocessor(
        modalities=backbone.modalities,
        tokenizer=tokenizer,
        sequence_length=sequence_length,
        image_size=backbone.image_size,
        audio_length=backbone.audio_length,
    )
    model = Captioner(backbone, preprocessor=preprocessor, label_smoothing=label_smoothing, sampler=sampler,
                      compile=False)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def register_captioner(names, description, full, tiny):
    register_with_twin(names, build_captioner, CAPTIONER_DEFAULTS, full, tiny, description)


register_captioner(
    ["captioner"],
    "CNN feature grid (8×8 tokens) → 2-layer causal transformer decoder with cross-attention; "
    "KV-cached greedy/beam/top-k/top-p generation in one graph.",
    full={"encoders": {"image": {"name": "cnn", "output_dim": 128, "filters": [32, 64]}}},
    tiny={
        "encoders": {"image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]}},
        "hidden_dim": 16,
        "num_layers": 1,
        "num_heads": 2,
    },
)

register_captioner(
    ["crossmodal_lm", "audio_visual_captioner"],
    "A language model whose decoder attends to image tokens, audio (log-mel) tokens or both, "
    "whichever are present; modality dropout teaches it every subset.",
    full={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64]},
            "audio": {"name": "log_mel", "output_dim": 128, "backend": "conv"},
        },
        "modality_dropout": 0.3,
    },
    tiny={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
            "audio": {"name": "log_mel", "output_dim": 16, "backend": "conv", "num_mel_bins": 16},
        },
        "hidden_dim": 16,
        "num_layers": 1,
        "num_heads": 2,
        "modality_dropout": 0.3,
        "audio_length": 1600,
    },
)
