"""What the family backbones share: symbolic inputs of the backbone contract, encoders from specs and back."""

import keras
import keras_hub

from kerasmm import encoders as encoder_registry
from kerasmm.models.multimodal_preprocessor import MODALITIES
from kerasmm.registry import resolve


def model_inputs(modalities, image_size=None, sequence_length=None, audio_length=None):
    """`keras.Input`s of the backbone contract for `modalities`, masks included."""
    specs = {
        "image": (tuple(image_size or (None, None)) + (3,), "float32"),
        "text": ((sequence_length,), "int32"),
        "audio": ((audio_length,), "float32"),
    }
    inputs = {}
    for m in modalities:
        shape, dtype = specs[m]
        inputs[m] = keras.Input(shape=shape, dtype=dtype, name=m)
        inputs[f"{m}_mask"] = keras.Input(shape=(), dtype="float32", name=f"{m}_mask")
    return inputs


def resolve_encoders(encoders, slot="input"):
    """Encoders by modality from names, spec dicts or layers, each checked against its modality."""
    if not isinstance(encoders, dict) or not encoders:
        raise ValueError(f"encoders must be a non-empty dict modality → encoder, got {encoders!r}.")
    built = {}
    for modality, spec in encoders.items():
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; valid modalities: {list(MODALITIES)}.")
        encoder = resolve(encoder_registry.ENCODERS, spec)
        if encoder.modality != modality:
            raise ValueError(
                f"Encoder {type(encoder).__name__} works on {encoder.modality}, "
                f"but was given for the {modality!r} {slot}."
            )
        built[modality] = encoder
    return built


def serialize_encoders(encoders):
    return {m: keras.layers.serialize(e) for m, e in encoders.items()}


def deserialize_encoders(configs):
    return {m: keras.layers.deserialize(c) for m, c in configs.items()}


def image_pair(size):
    """(height, width) from an int or a pair."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {size!r}.")
    return size


class EncodersBackbone(keras_hub.models.Backbone):
    """Base of the backbones built on encoders by modality: the config of their encoders and input sizes.

    A subclass sets `encoder_layers` before building its functional model,
    calls `_set_inputs` after, and adds its own settings to `get_config`.
    """

    def _set_inputs(self, modalities, image_size, sequence_length, audio_length):
        """Record the modalities and input sizes the backbone was built for (what `get_config` saves)."""
        self.modalities = modalities
        self.image_size = image_size
        self.sequence_length = sequence_length
        self.audio_length = audio_length

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoders": serialize_encoders(self.encoder_layers),
            "image_size": self.image_size,
            "sequence_length": self.sequence_length,
            "audio_length": self.audio_length,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoders"] = deserialize_encoders(config["encoders"])
        return super().from_config(config)
