"""The captioner family's zoo entries (image and/or audio → text) and how an entry's settings become a model."""

from kerasmm.models.captioner.captioner_backbone import CaptionerBackbone
from kerasmm.models.captioner.captioner_preprocessor import CaptionerPreprocessor
from kerasmm.models.captioner.captioner_task import Captioner
from kerasmm.models.captioner.generative_vqa_task import GenerativeVQA
from kerasmm.models.preset_parts import (
    build_encoders,
    compiled,
    component,
    input_sizes,
    preprocessor_for,
    tokenizer_for,
)

# Every setting a captioner entry takes (`zoo.get` overrides are checked against these), with its default.
SETTINGS = {
    "task": "captioning",
    "encoders": None,
    "hidden_dim": 128,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_dim": None,
    "num_encoder_layers": 0,
    "dropout": 0.1,
    "modality_dropout": 0.0,
    # The chance training hides all of an example's image and audio, so the model can write from text alone.
    "context_dropout": 0.0,
    "image_size": 32,
    "sequence_length": 16,
    "audio_length": 4000,
    "vocabulary": None,
    "label_smoothing": 0.0,
    "sampler": "greedy",
    "generate_jit_compile": True,  # XLA-compile generate's decoding loop (independent of the train step's)
    "learning_rate": 1e-3,
    # A pretrained `keras_hub_image` tower (see `preset_parts.IMAGE_TOWER_SETTINGS`): its keras-hub preset
    # (directory, name or handle), else a random CLIP vision tower of these sizes, and its last blocks to train.
    "image_preset": None,
    "image_architecture": None,
    "unfreeze_last": None,
}
# The settings each component takes as they are.
BACKBONE = ("hidden_dim", "num_layers", "num_heads", "intermediate_dim", "num_encoder_layers", "dropout",
            "modality_dropout", "context_dropout", "sequence_length")
TASK = ("label_smoothing", "sampler", "generate_jit_compile")


def build(**settings):
    """A compiled `Captioner` from an entry's settings (see `SETTINGS`)."""
    encoders, _ = build_encoders(settings)
    tokenizer = tokenizer_for(settings["vocabulary"])
    backbone = CaptionerBackbone(encoders=encoders, vocabulary_size=tokenizer.vocabulary_size(),
                                 **input_sizes(settings, encoders), **component(settings, BACKBONE))
    answering = settings["task"] == "vqa_generation"
    preprocessor = preprocessor_for(backbone, tokenizer, CaptionerPreprocessor,
                                    **({"prompt_feature": "text"} if answering else {}))
    task = GenerativeVQA if answering else Captioner
    model = task(backbone, preprocessor=preprocessor, compile=False, **component(settings, TASK))
    return compiled(model, settings["learning_rate"])


# Each entry: its names (later ones are aliases), what it is, and its settings at full and tiny size.
PRESETS = [
    {
        "names": ["captioner"],
        "description": "CNN feature grid (8×8 tokens) → 2-layer causal transformer decoder with cross-attention; "
        "KV-cached greedy/beam/top-k/top-p generation in one graph.",
        "full": {"encoders": {"image": {"name": "cnn", "output_dim": 128, "filters": [32, 64]}}},
        "tiny": {
            "encoders": {"image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]}},
            "hidden_dim": 16,
            "num_layers": 1,
            "num_heads": 2,
        },
    },
    {
        "names": ["crossmodal_lm", "audio_visual_captioner"],
        "description": "A language model whose decoder attends to image tokens, audio (log-mel) tokens or both, "
        "whichever are present, and continues a text prompt (text alone too); modality dropout teaches it "
        "every subset of image and audio.",
        "full": {
            "encoders": {
                "image": {"name": "cnn", "output_dim": 128, "filters": [32, 64]},
                "audio": {"name": "log_mel", "output_dim": 128, "backend": "conv"},
            },
            "modality_dropout": 0.3,
        },
        "tiny": {
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
    },
    {
        "names": ["generative_vqa"],
        "description": "Answers free-form questions: the question is the prompt of the captioner's decoder, "
        "the answer is generated after it (prefix LM); scored with VQA accuracy, exported as bytes + question.",
        "full": {"task": "vqa_generation", "encoders": {"image": {"name": "cnn", "output_dim": 128,
                                                                 "filters": [32, 64]}}},
        "tiny": {
            "task": "vqa_generation",
            "encoders": {"image": {"name": "cnn", "output_dim": 16, "filters": [8, 16]}},
            "hidden_dim": 16,
            "num_layers": 1,
            "num_heads": 2,
        },
    },
    {
        "names": ["clip_captioner"],
        "description": "A pretrained CLIP vision tower's patch tokens (keras-hub clip_vit_base_patch16, frozen; "
        "unfreeze_last=N trains its top blocks) → 2-layer causal transformer decoder with cross-attention; "
        "KV-cached generation in one graph.",
        "full": {
            "encoders": {"image": {"name": "keras_hub_image", "trainable_backbone": False}},
            "image_size": 224,
            "image_preset": "clip_vit_base_patch16",
        },
        "tiny": {
            "encoders": {"image": {"name": "keras_hub_image", "trainable_backbone": False}},
            "hidden_dim": 16,
            "num_layers": 1,
            "num_heads": 2,
            "image_architecture": {},
        },
    },
]
