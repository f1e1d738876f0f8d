"""Serving signatures on raw inputs (encoded images, WAV files, strings): the generic part.

`build(model, staging_dir, ...)` returns an `Export`: a `tf.Module` that
tracks the model's variables, the vocabulary and label assets and their
lookup tables, and one `tf.function` per signature, each taking `[None]`
string tensors and returning a dict of tensors with a `None` batch dimension.

Each kerasmm task declares its own signatures: `build` calls the model's
`serving_signatures(module, staging, ...)` and writes its `serving_family`
into the metadata (this module imports no model code). The signatures of
each family are documented beside it, in
`kerasmm/models/<family>/<family>_serving.py`:

- classifier (`MultimodalClassifier`): `serving_default` → `probabilities`,
  `label`, `label_id`, `class_names`.
- dual encoder (`DualEncoder`): `encode_image` / `encode_audio`,
  `encode_text` → `embedding`; `score` (also `serving_default`) →
  `similarity`, `logits`, `probabilities`.
- captioner (`Captioner`): `serving_default` (and `caption_<modality>`) →
  `captions`, `scores`.
- text to image (`TextToImage`): `serving_default` → `images`, `png_bytes`.

This module holds what they share: `signature_function`, `raw_features`,
the asset and lookup-table helpers, example (warm-up) requests and metadata.
"""

import inspect
import json
import os

import keras
import numpy as np
import tensorflow as tf

from kerasmm.backend_compat import portable_slice_updates
from kerasmm.data import image_ops
from kerasmm.export import inputs as raw

FAMILIES = ("classifier", "dual_encoder", "captioner", "text_to_image")
# The kerasmm task classes that declare serving signatures (named only: export imports no model code).
SUPPORTED_TASKS = "MultimodalClassifier, DualEncoder, Captioner and TextToImage"
DEFAULT_SIGNATURE = "serving_default"
VOCABULARY_FILE = "vocabulary.txt"
LABELS_FILE = "labels.txt"
METADATA_FILE = "kerasmm_export.json"


class Export:
    """What `build` returns: the module to save, its signatures, assets, metadata and example requests."""

    def __init__(self, module, functions, metadata, examples):
        self.module = module
        self.functions = functions  # signature name → concrete function
        self.metadata = metadata  # JSON-able dict, also written to assets/kerasmm_export.json
        self.examples = examples  # name → list of requests, each dict input name → list of bytes


def family(model):
    """The family `model`'s task declares (its `serving_family`: "classifier", "dual_encoder", "captioner", ...).

    Raises a ValueError naming the model's type for anything that is not a
    kerasmm task with serving signatures.
    """
    kind = getattr(model, "serving_family", None)
    if not (isinstance(kind, str) and kind) or not callable(getattr(model, "serving_signatures", None)):
        raise ValueError(
            f"Cannot export a {type(model).__name__}: it is not a kerasmm task with serving signatures. "
            f"kerasmm.export serves {SUPPORTED_TASKS} models (from kerasmm.zoo or kerasmm.models)."
        )
    return kind


def signature_function(names, body, name):
    """A `tf.function` of `[None]` string inputs called `names` that returns `body({name: tensor})`."""

    def function(*args):
        return body(dict(zip(names, args)))

    function.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    )
    function.__name__ = name
    specs = [tf.TensorSpec([None], tf.string, name=n) for n in names]
    return tf.function(function, input_signature=specs, autograph=False)


def _write_lines(path, lines, what):
    lines = [str(line) for line in lines]
    bad = [line for line in lines if "\n" in line or "\r" in line]
    if bad:
        raise ValueError(f"Cannot export: the {what} {bad[0]!r} holds a line break.")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def _id_table(asset):
    """int64 id → string table read from a one-entry-per-line asset (line number = id)."""
    initializer = tf.lookup.TextFileInitializer(
        asset, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE
    )
    return tf.lookup.StaticHashTable(initializer, default_value="")


def _preprocessing_constants(preprocessor, sample_rate):
    constants = {}
    converter = getattr(preprocessor, "image_converter", None)
    if converter is not None:
        constants["image_size"] = [int(s) for s in converter.image_size]
        constants["image_resize"] = {
            k: v for k, v in converter.get_config().items()
            if k in ("interpolation", "antialias", "crop_to_aspect_ratio", "pad_to_aspect_ratio", "scale", "offset")
        }
    if getattr(preprocessor, "sequence_length", None):
        constants["sequence_length"] = int(preprocessor.sequence_length)
    if getattr(preprocessor, "audio_length", None):
        constants["audio_length"] = int(preprocessor.audio_length)
        constants["sample_rate"] = int(sample_rate)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is not None:
        constants["tokenizer"] = {
            "class": type(tokenizer).__name__,
            **{k: getattr(tokenizer, k) for k in ("lowercase", "strip_accents", "suffix_indicator", "oov_token")
               if hasattr(tokenizer, k)},
        }
    return constants


def raw_features(preprocessor, modalities, request, sample_rate):
    """Raw features the model's preprocessor takes, from a request of string tensors (checked here).

    Images come back float32 in [0, 1] at the model's image size (resized as
    the readers resize, with the policy of the preprocessor's image converter), audio as float32 waveforms of
    the model's length at `sample_rate`, text as the strings.
    """
    checked = {}
    for m in modalities:
        name = raw.INPUT_NAMES[m]
        checked[name] = raw.checked_text(request[name], name) if m == "text" else raw.checked_bytes(
            request[name], name, m
        )
    checked = raw.same_batch_size(checked)
    features = {}
    for m in modalities:
        value = checked[raw.INPUT_NAMES[m]]
        if m == "image":
            converter = preprocessor.image_converter
            value = raw.decode_images(value, converter.image_size, image_ops.policy_of(converter),
                                      image_ops.interpolation_of(converter))
        elif m == "audio":
            value = raw.decode_waves(value, preprocessor.audio_length, sample_rate)
        features[m] = value
    return features


# --- example requests (warm-up) -------------------------------------------------------------


def example_requests(modalities, image_size=None, audio_length=None, sample_rate=16000, batch_sizes=(1, 2)):
    """Requests of real shapes images (JPEG and PNG), captions and WAV tones: name → list of bytes."""
    from kerasmm.data import shapes_arrays  # the embedded data set; not model code

    count = max(batch_sizes)
    size = max(int(max(image_size)) if image_size else 32, 16)
    seconds = max(audio_length / sample_rate, 0.01) if audio_length else 0.25
    features, _ = shapes_arrays(
        num_examples=count, image_size=size, task="classification", split="test", seed=7,
        with_audio="audio" in modalities, audio_rate=sample_rate, audio_seconds=seconds, caption_dropout=0.0,
    )
    values = {}
    if "image" in modalities:
        values[raw.IMAGE_INPUT] = [
            (tf.io.encode_jpeg(image, quality=95) if i % 2 == 0 else tf.io.encode_png(image)).numpy()
            for i, image in enumerate(features["image"])
        ]
    if "text" in modalities:
        values[raw.TEXT_INPUT] = [str(t).encode("utf-8") for t in features["text"]]
    values[raw.PROMPT_INPUT] = [b"a"] * count  # read only by the signatures that take a prompt
    values[raw.QUESTION_INPUT] = [b"what colour is the circle ?"] * count  # and a question
    if "audio" in modalities:
        values[raw.AUDIO_INPUT] = [
            tf.audio.encode_wav(np.asarray(w, "float32")[:, None], sample_rate).numpy() for w in features["audio"]
        ]
    return [{name: v[:n] for name, v in values.items()} for n in batch_sizes]


def build(model, staging, sampler=None, max_length=None, num_beams=4, sample_rate=16000, scores=True,
          jit_compile=False, prompted=False):
    """The `Export` of `model`; asset files are written under `staging` (copied into the SavedModel).

    The signatures are the model's own (`model.serving_signatures`, see
    `kerasmm.models.ZooTask`); anything else is refused with a ValueError.
    """
    kind = family(model)
    if getattr(model, "preprocessor", None) is None:
        raise ValueError(
            f"Cannot export this {type(model).__name__} on raw inputs: it has no preprocessor. "
            "Give it the preprocessor of its zoo entry."
        )
    module = tf.Module()
    module.model_variables = list(model.variables)
    functions, modalities, extra = model.serving_signatures(
        module, staging, sample_rate=sample_rate, sampler=sampler, max_length=max_length, num_beams=num_beams,
        scores=scores, jit_compile=jit_compile, prompted=prompted,
    )

    tokenizer = getattr(model.preprocessor, "tokenizer", None)
    if tokenizer is not None and not hasattr(module, "vocabulary_asset"):
        module.vocabulary_asset = tf.saved_model.Asset(
            _write_lines(os.path.join(staging, VOCABULARY_FILE), tokenizer.get_vocabulary(), "vocabulary token")
        )
    if tokenizer is not None:
        # Byte-pair (CLIP) and SentencePiece (SigLIP) tokenizers hold TF resources their graph uses (hash
        # tables, a cache, the SentencePiece model): tracking the tokenizer puts them in the SavedModel.
        module.tokenizer = tokenizer
    constants = _preprocessing_constants(model.preprocessor, sample_rate)

    # Trace every signature now (under `portable_slice_updates` unless XLA compiles the loop): the concrete
    # functions name every variable they use (a sampler's seed state, say), which the module must
    # track for the SavedModel to hold it.
    with portable_slice_updates(enabled=not jit_compile):
        concrete = {name: f.get_concrete_function() for name, f in functions.items()}
    # (Keras variables wrap the tf.Variables the functions capture, their `.value`: compare those.)
    seen = {id(v.value if isinstance(v, keras.Variable) else v) for v in module.model_variables}
    module.other_variables = []
    for function in concrete.values():
        for v in function.variables:
            if id(v) not in seen:
                seen.add(id(v))
                module.other_variables.append(v)

    metadata = {
        "family": kind,
        "model_class": type(model).__name__,
        "preprocessing": constants,
        "signatures": {name: describe(f) for name, f in concrete.items()},
        **extra,
    }
    module.metadata_asset = tf.saved_model.Asset(_write_json(os.path.join(staging, METADATA_FILE), metadata))
    examples = {}
    requests = example_requests(
        modalities, constants.get("image_size"), constants.get("audio_length"), sample_rate
    )
    for name, f in concrete.items():
        wanted = [s.name for s in tf.nest.flatten(f.structured_input_signature)]
        examples[name] = [{k: r[k] for k in wanted} for r in requests]
    return Export(module, concrete, metadata, examples)


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def describe(concrete):
    """`{"inputs": {name: {dtype, shape}}, "outputs": {...}}` of a concrete signature function."""

    def spec(s):
        return {"dtype": s.dtype.name, "shape": [None if d is None else int(d) for d in s.shape.as_list()]}

    return {
        "inputs": {s.name: spec(s) for s in tf.nest.flatten(concrete.structured_input_signature)},
        "outputs": {k: spec(s) for k, s in concrete.structured_outputs.items()},
    }
