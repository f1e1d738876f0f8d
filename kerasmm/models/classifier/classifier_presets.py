"""The multimodal classifier family's zoo entries and how an entry's settings become a model."""

from kerasmm import data
from kerasmm.models.classifier.classifier_backbone import MultimodalBackbone
from kerasmm.models.classifier.classifier_task import MultimodalClassifier
from kerasmm.models.preset_parts import build_encoders, compiled, component, input_sizes, preprocessor_for

# Every setting a classifier entry takes (`zoo.get` overrides are checked against these), with its default.
SETTINGS = {
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
    # Each modality also learns to classify alone (see MultimodalClassifier): on benchmarks/real_data.py's clipart,
    # 30 epochs, the fused weighted_sum_classifier's held-out accuracy was 0.424 with it and 0.407 without (3 seeds).
    "modality_loss_weight": 1.0,
    "learning_rate": 1e-3,
    # A pretrained `keras_hub_image` tower (see `preset_parts.IMAGE_TOWER_SETTINGS`): its keras-hub preset
    # (directory, name or handle), else a random CLIP vision tower of these sizes, and its last blocks to train.
    "image_preset": None,
    "image_architecture": None,
    "unfreeze_last": None,
}
# The settings each component takes as they are.
BACKBONE = ("fusion",)
TASK = ("num_classes", "hidden_dim", "dropout", "class_names", "modality_loss_weight")


def build(**settings):
    """A compiled `MultimodalClassifier` from an entry's settings (see `SETTINGS`)."""
    settings = dict(settings)
    if settings["class_names"] is None and settings["num_classes"] is None:
        settings["class_names"] = list(data.label_names(settings["task"]))
    if settings["num_classes"] is None:
        settings["num_classes"] = len(settings["class_names"])
    encoders, tokenizer = build_encoders(settings)
    backbone = MultimodalBackbone(
        encoders=encoders,
        sequence_length=settings["sequence_length"] if "text" in encoders else None,
        **input_sizes(settings, encoders),
        **component(settings, BACKBONE),
    )
    preprocessor = preprocessor_for(backbone, tokenizer)
    model = MultimodalClassifier(backbone=backbone, preprocessor=preprocessor, compile=False,
                                 **component(settings, TASK))
    return compiled(model, settings["learning_rate"])


# Each entry: its names (later ones are aliases), what it is, and its settings at full and tiny size.
PRESETS = [
    {
        "names": ["weighted_sum_classifier"],
        "description": "Image (CNN) + text (transformer) fused by a learnable softmax-weighted sum: "
        "a·X_image + b·X_text.",
        "full": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
                "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
            },
            "fusion": {"name": "weighted_sum"},
            "hidden_dim": 128,
        },
        "tiny": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
                "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
            },
            "fusion": {"name": "weighted_sum"},
            "sequence_length": 12,
        },
    },
    {
        "names": ["concat_classifier"],
        "description": "BERT-style text encoder + CNN image encoder, concatenated, then an MLP head.",
        "full": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
                "text": {"name": "bert", "num_layers": 2, "num_heads": 4, "hidden_dim": 128, "intermediate_dim": 512},
            },
            "fusion": {"name": "concat"},
            "hidden_dim": 128,
        },
        "tiny": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
                "text": {"name": "bert", "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32},
            },
            "fusion": {"name": "concat"},
            "sequence_length": 12,
            "hidden_dim": 16,
        },
    },
    {
        "names": ["vqa_classifier"],
        "description": "Question tokens attend to ViT image patches (cross-attention), pooled, "
        "then an answer classifier.",
        "full": {
            "task": "vqa",
            "encoders": {
                "image": {"name": "vit", "output_dim": 128, "patch_size": 8, "num_layers": 2, "num_heads": 4},
                "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
            },
            "fusion": {"name": "cross_attention", "query": "text", "context": "image", "num_heads": 4},
            "hidden_dim": 128,
        },
        "tiny": {
            "task": "vqa",
            "encoders": {
                "image": {"name": "vit", "output_dim": 16, "patch_size": 8, "num_layers": 1, "num_heads": 2},
                "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
            },
            "fusion": {"name": "cross_attention", "query": "text", "context": "image", "num_heads": 2},
            "sequence_length": 12,
        },
    },
    {
        "names": ["audio_visual_classifier"],
        "description": "Image (CNN) + audio (log-mel conv) + text (bag of words) fused by a gated multimodal unit "
        "with modality dropout, so any subset of the three can be given.",
        "full": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64, 128]},
                "audio": {"name": "log_mel", "output_dim": 128, "backend": "conv"},
                "text": {"name": "bow", "output_dim": 128},
            },
            "fusion": {"name": "gated", "output_dim": 128, "modality_dropout": 0.2},
            "hidden_dim": 128,
        },
        "tiny": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]},
                "audio": {"name": "log_mel", "output_dim": 16, "backend": "conv", "num_mel_bins": 16},
                "text": {"name": "bow", "output_dim": 16},
            },
            "fusion": {"name": "gated", "output_dim": 16, "modality_dropout": 0.2},
            "sequence_length": 12,
            "audio_length": 1600,
        },
    },    {
        "names": ["clip_classifier"],
        "description": "A pretrained CLIP vision tower (keras-hub clip_vit_base_patch16, frozen; unfreeze_last=N "
        "trains its top blocks) + text (transformer), fused by a learnable softmax-weighted sum.",
        "full": {
            "encoders": {
                "image": {"name": "keras_hub_image", "output_dim": 128, "trainable_backbone": False},
                "text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4},
            },
            "fusion": {"name": "weighted_sum"},
            "hidden_dim": 128,
            "image_size": 224,
            "image_preset": "clip_vit_base_patch16",
        },
        "tiny": {
            "encoders": {
                "image": {"name": "keras_hub_image", "output_dim": 16, "trainable_backbone": False},
                "text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2},
            },
            "fusion": {"name": "weighted_sum"},
            "sequence_length": 12,
            "image_architecture": {},
        },
    },
]
