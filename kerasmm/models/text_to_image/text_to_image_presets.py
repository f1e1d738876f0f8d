"""The text-to-image family's zoo entries and how an entry's settings become a model."""

from kerasmm.models.preset_parts import build_encoders, compiled
from kerasmm.models.text_to_image.text_to_image_backbone import TextToImageBackbone
from kerasmm.models.text_to_image.text_to_image_preprocessor import TextToImagePreprocessor
from kerasmm.models.text_to_image.text_to_image_task import TextToImage

# Every setting a text-to-image entry takes (`zoo.get` overrides are checked against these), with its default.
SETTINGS = {
    "task": "text_to_image",
    "encoders": None,
    "filters": None,
    "image_size": 32,
    "sequence_length": 16,
    "vocabulary": None,
    "learning_rate": 1e-3,
}


def build(**settings):
    """A compiled `TextToImage` from an entry's settings (see `SETTINGS`)."""
    encoders = settings["encoders"]
    if not isinstance(encoders, dict) or set(encoders) != {"text"}:
        raise ValueError(
            "A text-to-image model takes exactly one encoder, encoders={'text': ...}; "
            f"got {sorted(encoders) if isinstance(encoders, dict) else encoders!r}."
        )
    image_size, sequence_length = settings["image_size"], settings["sequence_length"]
    built, tokenizer = build_encoders(settings)
    backbone = TextToImageBackbone(built["text"], sequence_length=sequence_length)
    preprocessor = TextToImagePreprocessor(tokenizer=tokenizer, sequence_length=sequence_length, image_size=image_size)
    model = TextToImage(backbone, image_size=image_size, filters=settings["filters"], preprocessor=preprocessor,
                        compile=False)
    return compiled(model, settings["learning_rate"])


# Each entry: its names (later ones are aliases), what it is, and its settings at full and tiny size.
PRESETS = [
    {
        "names": ["text_to_image"],
        "description": "Transformer text encoder (mean-pooled) → dense 4×4 grid → three upsampling conv blocks "
        "(batch norm) → sigmoid RGB 32×32, trained with squared error.",
        "full": {
            "encoders": {"text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4}},
            "filters": [128, 64, 32],
        },
        "tiny": {
            "encoders": {"text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2}},
            "filters": [16, 16],
            "sequence_length": 12,
        },
    },
]
