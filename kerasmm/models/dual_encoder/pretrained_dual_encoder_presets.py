"""The `clip` and `siglip` zoo entries: whole pretrained keras-hub CLIP / SigLIP models as dual encoders.

`kerasmm.zoo.get("clip", preset=...)` takes a local keras-hub preset
directory with a `CLIPBackbone` or `SigLIPBackbone` and its tokenizer (and
optionally its image converter), a transformers CLIP / SigLIP checkpoint
directory, an open_clip checkpoint directory (see
`kerasmm.encoders.checkpoints`), or a keras-hub preset name / `kaggle://` /
`hf://` handle, downloaded when named. The towers, projections, pretrained
logit scale (and SigLIP's bias) and image preprocessing are kept. The tiny
twins build small random models with tokenizers made here, for tests: they
never download.
"""

import keras_hub
import numpy as np
import tensorflow as tf

from kerasmm import data
from kerasmm.encoders.checkpoints import clip_weights, load_pretrained
from kerasmm.models.dual_encoder.dual_encoder_preprocessor import PretrainedDualEncoderPreprocessor
from kerasmm.models.dual_encoder.dual_encoder_task import PretrainedDualEncoder
from kerasmm.models.dual_encoder.pretrained_dual_encoder_backbone import PretrainedDualEncoderBackbone
from kerasmm.models.preset_parts import compiled, component

# Every setting a pretrained dual-encoder entry takes (`zoo.get` overrides are checked against these).
SETTINGS = {
    "task": "retrieval",
    "kind": "clip",  # "clip" or "siglip": the packing of texts and the loss
    "preset": None,  # keras-hub preset directory, name or handle; transformers or open_clip checkpoint directory
    "architecture": None,  # without a preset: a small random model (the tiny twins)
    "sequence_length": None,  # None: the text tower's own length
    "loss": None,  # None: "contrastive" for CLIP, "sigmoid" for SigLIP
    "retrieval_groups": "rows",
    "learning_rate": 1e-5,
}
TASK = ("retrieval_groups",)
# How each kind packs its texts (as keras-hub's CLIPPreprocessor / SigLIPPreprocessor do).
PACKING = {
    "clip": {"add_start_token": True, "add_end_token": True, "pad_with_end_token": False, "lowercase": True,
             "canonicalize": False},
    "siglip": {"add_start_token": False, "add_end_token": True, "pad_with_end_token": True, "lowercase": True,
               "canonicalize": True},
}
# keras-hub's CLIP / SigLIP image converters normalise [0, 255] pixels with these.
IMAGE_STATISTICS = {
    "clip": (clip_weights.OPENAI_MEAN, clip_weights.OPENAI_STD),
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
# How each kind resizes when its checkpoint says nothing: CLIP covers and centre-crops, SigLIP stretches.
RESIZE = {"clip": {"crop_to_aspect_ratio": True, "interpolation": "bicubic"},
          "siglip": {"crop_to_aspect_ratio": False, "interpolation": "bicubic"}}


def build(**settings):
    """A compiled `PretrainedDualEncoder` from an entry's settings (see `SETTINGS`)."""
    kind = settings["kind"]
    if kind not in PACKING:
        raise ValueError(f"kind must be one of {tuple(PACKING)}, got {kind!r}.")
    if settings["preset"] is not None:
        hub, tokenizer, converter = _load(kind, settings["preset"])
    elif settings["architecture"] is not None:
        hub, tokenizer = _random(kind, settings["architecture"])
        converter = None
    else:
        raise ValueError(f"The {kind} entry needs preset= (a keras-hub preset directory, name or handle, or a "
                         "transformers / open_clip checkpoint directory).")
    mean, std = _statistics(converter, IMAGE_STATISTICS[kind])
    sequence_length = settings["sequence_length"] or int(hub.text_encoder.max_sequence_length)
    backbone = PretrainedDualEncoderBackbone(hub, sequence_length=sequence_length, mean=mean, std=std)
    preprocessor = PretrainedDualEncoderPreprocessor(tokenizer, sequence_length,
                                                     image_converter=_resizer(kind, converter, backbone.image_size),
                                                     **PACKING[kind])
    head = hub.get_layer("siglip_head" if kind == "siglip" else "clip_head")
    loss = settings["loss"] or ("sigmoid" if kind == "siglip" else "contrastive")
    bias = float(np.asarray(head.logit_bias)) if kind == "siglip" else -10.0
    model = PretrainedDualEncoder(backbone, preprocessor=preprocessor, loss=loss, compile=False,
                                  logit_scale=float(np.asarray(head.logit_scale)), logit_bias=bias,
                                  **component(settings, TASK))
    return compiled(model, settings["learning_rate"])


def _load(kind, preset):
    owner = f"zoo entry {kind!r}"
    pretrained = load_pretrained(owner, preset)
    if pretrained.kind != kind:
        expected = {"clip": "CLIPBackbone", "siglip": "SigLIPBackbone"}[kind]
        other = f"; use the {pretrained.kind!r} entry for it" if pretrained.kind else ""
        raise ValueError(f"{owner}: {preset!r} holds a {type(pretrained.backbone).__name__}, not a {expected}{other}.")
    if pretrained.tokenizer is None:
        raise ValueError(f"{owner}: the preset {preset!r} has no tokenizer.json (save the tokenizer with it).")
    return pretrained.backbone, pretrained.tokenizer, pretrained.image_converter


def _resizer(kind, converter, image_size):
    """A resize-only `ImageConverter` for the preprocessor: the checkpoint's crop and interpolation, else the kind's."""
    resize = RESIZE[kind]
    if converter is not None:
        resize = {"crop_to_aspect_ratio": converter.crop_to_aspect_ratio, "interpolation": converter.interpolation,
                  "pad_to_aspect_ratio": converter.pad_to_aspect_ratio}
    return keras_hub.layers.ImageConverter(image_size=image_size, antialias=True, **resize)


def _statistics(converter, default):
    """(mean, std) on [0, 1] pixels of a converter computing `pixels_0_255 * scale + offset`."""
    if converter is None or converter.scale is None:
        return default
    scale = np.broadcast_to(np.asarray(converter.scale, "float64"), (3,))
    offset = np.broadcast_to(np.asarray(converter.offset if converter.offset is not None else 0.0, "float64"), (3,))
    std = 1.0 / (255.0 * scale)
    return tuple(float(v) for v in -offset * std), tuple(float(v) for v in std)


def _random(kind, architecture):
    """A small randomly initialised hub model and a tokenizer over the shapes captions' words."""
    arch = {"patch_size": 8, "hidden_dim": 16, "num_layers": 1, "num_heads": 2, "intermediate_dim": 32,
            "image_size": 32, "max_sequence_length": 24, "projection_dim": 16, **architecture}
    vision = {k: arch[k] for k in ("patch_size", "hidden_dim", "num_layers", "num_heads", "intermediate_dim")}
    text = {"embedding_dim": arch["hidden_dim"], "hidden_dim": arch["hidden_dim"], "num_layers": arch["num_layers"],
            "num_heads": arch["num_heads"], "intermediate_dim": arch["intermediate_dim"],
            "max_sequence_length": arch["max_sequence_length"]}
    image_shape = (arch["image_size"], arch["image_size"], 3)
    if kind == "siglip":
        words = tf.data.Dataset.from_tensors(" ".join(_words()))
        tokenizer = keras_hub.tokenizers.SigLIPTokenizer(proto=keras_hub.tokenizers.compute_sentence_piece_proto(
            words, vocabulary_size=len(_words()) + 3, model_type="word"))  # + <unk>, <s>, </s>
        hub = keras_hub.models.SigLIPBackbone(
            keras_hub.models.SigLIPVisionEncoder(image_shape=image_shape, **vision),
            keras_hub.models.SigLIPTextEncoder(vocabulary_size=tokenizer.vocabulary_size(), **text))
        return hub, tokenizer
    tokenizer = _tiny_clip_tokenizer()
    hub = keras_hub.models.CLIPBackbone(
        keras_hub.models.CLIPVisionEncoder(image_shape=image_shape, **vision),
        keras_hub.models.CLIPTextEncoder(vocabulary_size=tokenizer.vocabulary_size(), **text),
        projection_dim=arch["projection_dim"])
    return hub, tokenizer


def _words():
    return [w for w in data.shapes_vocabulary() if w.isalpha()]


def _tiny_clip_tokenizer():
    """A byte-pair tokenizer in CLIP's format whose merges spell each shapes word as one token."""
    letters = sorted({c for w in _words() for c in w})
    vocabulary = {**{c: i for i, c in enumerate(letters)}}
    vocabulary.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    merges = []
    for word in _words():
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            vocabulary.setdefault(pieces[0], len(vocabulary))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocabulary[special] = len(vocabulary)
    return keras_hub.tokenizers.CLIPTokenizer(vocabulary=vocabulary, merges=list(dict.fromkeys(merges)))


# Each entry: its names, what it is, and its settings at full and tiny size.
PRESETS = [
    {
        "names": ["clip"],
        "description": "A whole pretrained CLIP (keras-hub CLIPBackbone: towers, projections, logit scale) "
        "as a dual encoder; preset= a keras-hub preset directory, name or handle.",
        "full": {"kind": "clip", "preset": "clip_vit_base_patch16"},
        "tiny": {"kind": "clip", "architecture": {}, "learning_rate": 1e-3},
    },
    {
        "names": ["siglip"],
        "description": "A whole pretrained SigLIP (keras-hub SigLIPBackbone, with its logit bias) as a dual "
        "encoder trained with the sigmoid loss; preset= a keras-hub preset directory, name or handle.",
        "full": {"kind": "siglip", "preset": "siglip_base_patch16_224"},
        "tiny": {"kind": "siglip", "architecture": {}, "learning_rate": 1e-3},
    },
]
