"""Zoo entries of the text-to-image family and their builder."""

import keras

from kerasmm.builders.text_to_image import TextToImage, TextToImageBackbone, TextToImagePreprocessor
from kerasmm.zoo import register_with_twin
from kerasmm.zoo.common import build_encoders

TEXT_TO_IMAGE_DEFAULTS = {
    "task": "text_to_image",
    "encoders": None,
    "filters": None,
    "image_size": 32,
    "sequence_length": 16,
    "vocabulary": None,
    "learning_rate": 1e-3,
}


def build_text_to_image(task, encoders, filters, image_size, sequence_length, vocabulary, learning_rate):
    """Build and compile a `TextToImage` from an architecture dict."""
    del task
    if not isinstance(encoders, dict) or set(encoders) != {"text"}:
        raise ValueError(
            "A text-to-image model takes exactly one encoder, encoders={'text': ...}; "
            f"got {sorted(encoders) if isinstance(encoders, dict) else encoders!r}."
        )
    built, tokenizer = build_encoders(encoders, vocabulary, image_size, sequence_length)
    backbone = TextToImageBackbone(built["text"], sequence_length=sequence_length)
    preprocessor = TextToImagePreprocessor(tokenizer=tokenizer, sequence_length=sequence_length, image_size=image_size)
    model = TextToImage(backbone, image_size=image_size, filters=filters, preprocessor=preprocessor, compile=False)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def register_text_to_image(name, description, full, tiny):
    register_with_twin(name, build_text_to_image, TEXT_TO_IMAGE_DEFAULTS, full, tiny, description)


register_text_to_image(
    "text_to_image",
    "Transformer text encoder (mean-pooled) → dense 4×4 grid → three upsampling conv blocks "
    "(batch norm) → sigmoid RGB 32×32, trained with squared error.",
    full={
        "encoders": {"text": {"name": "text_transformer", "output_dim": 128, "num_layers": 2, "num_heads": 4}},
        "filters": [128, 64, 32],
    },
    tiny={
        "encoders": {"text": {"name": "text_transformer", "output_dim": 16, "num_layers": 1, "num_heads": 2}},
        "filters": [16, 16],
        "sequence_length": 12,
    },
)
