"""Zoo entries of the multimodal classifier family and their builder."""

import keras

from kerasmm import data
from kerasmm.builders.backbone import MultimodalBackbone
from kerasmm.builders.classifier import MultimodalClassifier
from kerasmm.builders.preprocessor import MultimodalPreprocessor
from kerasmm.zoo import register_with_twin
from kerasmm.zoo.common import build_encoders

# Settings every classifier entry accepts (and `zoo.get` overrides are checked against).
CLASSIFIER_DEFAULTS = {
    "task": "classification",
    "encoders": None,
    "fusion": None,
    "image_size": 32,
    "sequence_length": 16,
    "audio_length": 4000,
    "vocabulary": None,
    "num_classes": None,
    "class_names": None,
    "hidden_dim": None,
    "dropout": 0.1,
    "learning_rate": 1e-3,
}


def build_classifier(
    task,
    encoders,
    fusion,
    image_size,
    sequence_length,
    audio_length,
    vocabulary,
    num_classes,
    class_names,
    hidden_dim,
    dropout,
    learning_rate,
):
    """Build and compile a `MultimodalClassifier` from an architecture dict."""
    if class_names is None and num_classes is None:
        class_names = list(data.label_names(task))
    if num_classes is None:
        num_classes = len(class_names)
    built, tokenizer = build_encoders(encoders, vocabulary, image_size, sequence_length)
    backbone = MultimodalBackbone(
        encoders=built,
        fusion=fusion,
        image_size=image_size if "image" in built else None,
        sequence_length=sequence_length if "text" in built else None,
        audio_length=audio_length if "audio" in built else None,
    )
    preprocessor = MultimodalPreprocessor(
        modalities=backbone.modalities,
        tokenizer=tokenizer,
        sequence_length=backbone.sequence_length,
        image_size=backbone.image_size,
        audio_length=backbone.audio_length,
    )
    model = MultimodalClassifier(
        backbone=backbone,
        num_classes=num_classes,
        preprocessor=preprocessor,
        hidden_dim=hidden_dim,
        dropout=dropout,
        class_names=class_names,
        compile=False,
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def register_classifier(name, description, full, tiny):
    register_with_twin(name, build_classifier, CLASSIFIER_DEFAULTS, full, tiny, description)


register_classifier(
    "weighted_sum_classifier",
    "Image (CNN) + text (transformer) fused by a learnable softmax-weighted sum: a·X_image + b·X_text.",
    full={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
            "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
        },
        "fusion": {"name": "weighted_sum"},
        "hidden_dim": 128,
    },
    tiny={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
            "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
        },
        "fusion": {"name": "weighted_sum"},
        "sequence_length": 12,
    },
)

register_classifier(
    "concat_classifier",
    "BERT-style text encoder + CNN image encoder, concatenated, then an MLP head.",
    full={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
            "text": {"name": "bert", "num_layers": 2, "num_heads": 4, "hidden_dim": 128, "intermediate_dim": 512},
        },
        "fusion": {"name": "concat"},
        "hidden_dim": 128,
    },
    tiny={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
            "text": {"name": "bert", "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32},
        },
        "fusion": {"name": "concat"},
        "sequence_length": 12,
        "hidden_dim": 16,
    },
)

register_classifier(
    "vqa_classifier",
    "Question tokens attend to ViT image patches (cross-attention), pooled, then an answer classifier.",
    full={
        "task": "vqa",
        "encoders": {
            "image": {"name": "vit", "output_dim": 128, "patch_size": 8, "num_layers": 2, "num_heads": 4},
            "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
        },
        "fusion": {"name": "cross_attention", "query": "text", "context": "image", "num_heads": 4},
        "hidden_dim": 128,
    },
    tiny={
        "task": "vqa",
        "encoders": {
            "image": {"name": "vit", "output_dim": 16, "patch_size": 8, "num_layers": 1, "num_heads": 2},
            "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
        },
        "fusion": {"name": "cross_attention", "query": "text", "context": "image", "num_heads": 2},
        "sequence_length": 12,
    },
)

register_classifier(
    "audio_visual_classifier",
    "Image (CNN) + audio (log-mel conv) + text (bag of words) fused by a gated multimodal unit "
    "with modality dropout, so any subset of the three can be given.",
    full={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
            "audio": {"name": "log_mel", "output_dim": 128, "backend": "conv"},
            "text": {"name": "bow", "output_dim": 128},
        },
        "fusion": {"name": "gated", "output_dim": 128, "modality_dropout": 0.2},
        "hidden_dim": 128,
    },
    tiny={
        "encoders": {
            "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
            "audio": {"name": "log_mel", "output_dim": 16, "backend": "conv", "num_mel_bins": 16},
            "text": {"name": "bow", "output_dim": 16},
        },
        "fusion": {"name": "gated", "output_dim": 16, "modality_dropout": 0.2},
        "sequence_length": 12,
        "audio_length": 1600,
    },
)
