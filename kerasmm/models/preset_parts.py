"""What every family's presets share: encoders and tokenizers filled in from the data settings, and the
splitting of an entry's flat settings into the config dict of each component."""

import copy
import inspect
import os

import keras
import keras_hub

from kerasmm import data
from kerasmm import encoders as encoder_registry
from kerasmm.encoders.checkpoints import clip_weights
from kerasmm.encoders.presets import is_remote
from kerasmm.encoders.pretrained import preset_tokenizer
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor
from kerasmm.registry import resolve


def load_vocabulary(vocabulary):
    """A token list from None (the shapes vocabulary), a list, or a one-token-per-line file."""
    if vocabulary is None:
        return data.shapes_vocabulary()
    if isinstance(vocabulary, (str, os.PathLike)):
        vocabulary = data.load_vocabulary(vocabulary)
    vocabulary = [str(t) for t in vocabulary]
    if not vocabulary or vocabulary[0] != "[PAD]" or "[UNK]" not in vocabulary:
        raise ValueError("A vocabulary must start with '[PAD]' (id 0) and contain '[UNK]'.")
    return vocabulary


def is_preset_vocabulary(vocabulary):
    """Whether a vocabulary setting names a keras-hub preset (a directory, or a `kaggle://` / `hf://` handle)."""
    return isinstance(vocabulary, (str, os.PathLike)) and (os.path.isdir(vocabulary) or is_remote(vocabulary))


def tokenizer_for(vocabulary):
    """The tokenizer of a vocabulary setting: a keras-hub preset's own (see `is_preset_vocabulary`), else a
    lowercasing WordPiece tokenizer (see `load_vocabulary`)."""
    if is_preset_vocabulary(vocabulary):
        return preset_tokenizer(vocabulary)
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=load_vocabulary(vocabulary), lowercase=True)


def _init_params(encoder_name):
    return inspect.signature(encoder_registry.lookup(encoder_name).__init__).parameters


def _text_encoder_spec(spec, vocabulary_size, sequence_length):
    """Fill a text encoder spec's vocabulary and length settings from the tokenizer."""
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    params = _init_params(spec["name"])
    if "vocabulary_size" in params:
        spec.setdefault("vocabulary_size", vocabulary_size)
    for length_key in ("sequence_length", "max_sequence_length"):
        if length_key in params:
            spec.setdefault(length_key, sequence_length)
    return spec


def _image_encoder_spec(spec, image_size):
    if isinstance(spec, dict) and "image_size" in _init_params(spec["name"]):
        spec = {**spec}
        spec.setdefault("image_size", image_size)
    return spec


# The random CLIP vision tower of `image_architecture={}` (the tiny twins); keys as `CLIPVisionEncoder`'s,
# plus `image_size`.
TINY_CLIP_VISION = {"patch_size": 8, "hidden_dim": 16, "num_layers": 2, "num_heads": 2, "intermediate_dim": 32,
                    "image_size": 32}
# Entry settings that configure a pretrained (`keras_hub_image`) image tower.
IMAGE_TOWER_SETTINGS = ("image_preset", "image_architecture", "unfreeze_last")


def random_clip_vision(architecture):
    """`(CLIPVisionEncoder, ImageConverter)`: a small random CLIP vision tower and CLIP's normalisation.

    `architecture` overrides `TINY_CLIP_VISION`; nothing is downloaded.
    """
    if not isinstance(architecture, dict):
        raise ValueError(f"image_architecture must be a dict of {sorted(TINY_CLIP_VISION)}, got {architecture!r}.")
    unknown = set(architecture) - set(TINY_CLIP_VISION)
    if unknown:
        raise ValueError(f"image_architecture: unknown keys {sorted(unknown)}; valid: {sorted(TINY_CLIP_VISION)}.")
    arch = {**TINY_CLIP_VISION, **architecture}
    size = arch.pop("image_size")
    tower = keras_hub.models.CLIPVisionEncoder(image_shape=(size, size, 3), **arch)
    return tower, clip_weights.image_converter(size, clip_weights.OPENAI_MEAN, clip_weights.OPENAI_STD)


def _spec_name(spec):
    return spec.get("name") if isinstance(spec, dict) else type(spec).__name__


def _image_tower_spec(spec, settings):
    """A `keras_hub_image` spec with the entry's `image_preset` (else a random tower of
    `image_architecture`) and `unfreeze_last` filled in."""
    given = [name for name in IMAGE_TOWER_SETTINGS if settings.get(name) is not None]
    if not given:
        return spec
    if not isinstance(spec, dict) or spec.get("name") != "keras_hub_image":
        used = "no image encoder" if spec is None else f"the image encoder {_spec_name(spec)!r}"
        raise ValueError(f"{', '.join(given)}: only for a 'keras_hub_image' image encoder; this entry has {used}.")
    spec = dict(spec)
    if settings.get("image_preset") is not None:
        spec["preset"] = settings["image_preset"]
        spec.pop("backbone", None)
        spec.pop("image_converter", None)
    elif settings.get("image_architecture") is not None:
        spec["backbone"], spec["image_converter"] = random_clip_vision(settings["image_architecture"])
    if settings.get("unfreeze_last") is not None:
        spec["unfreeze_last"] = settings["unfreeze_last"]
    return spec


def build_encoders(settings):
    """`(encoders by modality, tokenizer or None)` from an entry's `encoders` specs, with sizes filled in.

    A text encoder gets the `vocabulary`'s tokenizer (returned), its size
    and `sequence_length`; an image encoder that needs it gets `image_size`;
    a `keras_hub_image` one gets the entry's `image_preset` (or a random
    `image_architecture` tower) and `unfreeze_last` (see `IMAGE_TOWER_SETTINGS`).
    """
    encoders = copy.deepcopy(settings["encoders"])
    tokenizer = None
    if "text" in encoders:
        tokenizer = tokenizer_for(settings["vocabulary"])
        encoders["text"] = _text_encoder_spec(encoders["text"], tokenizer.vocabulary_size(),
                                              settings["sequence_length"])
    if "image" in encoders:
        encoders["image"] = _image_encoder_spec(encoders["image"], settings["image_size"])
    image = _image_tower_spec(encoders.get("image"), settings)
    if image is not None:
        encoders["image"] = image
    built = {m: resolve(encoder_registry.ENCODERS, spec) for m, spec in encoders.items()}
    return built, tokenizer


def input_sizes(settings, encoders):
    """The backbone's `image_size` and `audio_length`: the entry's, for the modalities it encodes, else None."""
    return {
        "image_size": settings["image_size"] if "image" in encoders else None,
        "audio_length": settings["audio_length"] if "audio" in encoders else None,
    }


def preprocessor_for(backbone, tokenizer, preprocessor_cls=MultimodalPreprocessor, **options):
    """A preprocessor giving `backbone` the inputs it takes (its modalities and sizes)."""
    return preprocessor_cls(modalities=backbone.modalities, tokenizer=tokenizer,
                            sequence_length=backbone.sequence_length, image_size=backbone.image_size,
                            audio_length=backbone.audio_length, **options)


def component(settings, names):
    """The config dict of one component: the entry `settings` named in `names`."""
    return {name: settings[name] for name in names}


def compiled(model, learning_rate):
    """`model` compiled with its defaults and Adam at `learning_rate`: what `zoo.get` returns."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model
