"""The serving signatures of each zoo family, on raw inputs (encoded images, WAV files, strings).

`build(model, staging_dir, ...)` returns an `Export`: a `tf.Module` that
tracks the model's variables, the vocabulary and label assets and their
lookup tables, and one `tf.function` per signature, each taking `[None]`
string tensors and returning a dict of tensors with a `None` batch dimension.

Families (found from what the model can do, so this module imports no model
code):

- classifier (`MultimodalClassifier`): `serving_default(image_bytes, text,
  [audio_bytes])` → `probabilities` `[B, C]`, `label` `[B]`, `label_id`
  `[B]`, `class_names` `[B, C]`.
- dual encoder (`DualEncoder`): `encode_image(image_bytes)` (or
  `encode_audio(audio_bytes)`) and `encode_text(text)` → `embedding`
  `[B, E]`; `score(image_bytes, text)` → `similarity` (cosine), `logits`
  and `probabilities` `[N_images, N_texts]`, also `serving_default`.
- captioner (`Captioner`): `serving_default(image_bytes, [audio_bytes])` →
  `captions` `[B]`, `scores` `[B]`; a model with several context
  modalities also gets `caption_<modality>` for each one alone.
- text to image (`TextToImage`): `serving_default(text)` → `images`
  `[B, H, W, 3]` float32 in [0, 1] and `png_bytes` `[B]`.
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
    """The family of `model` ("classifier", "dual_encoder", "captioner", "text_to_image"), from its methods."""
    if callable(getattr(model, "generate_function", None)) and callable(getattr(model, "detokenize", None)):
        return "captioner"
    if hasattr(model, "logit_scale_variable") and hasattr(model, "query_modality"):
        return "dual_encoder"
    if hasattr(model, "num_classes") and hasattr(model, "class_names"):
        return "classifier"
    if hasattr(model, "filters") and callable(getattr(model, "generate", None)):
        return "text_to_image"
    raise ValueError(
        f"Cannot export a {type(model).__name__}: kerasmm.export serves zoo classifiers, dual encoders, "
        "captioners and text-to-image models."
    )


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
            value = raw.decode_images(value, converter.image_size, image_ops.policy_of(converter))
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
    if "audio" in modalities:
        values[raw.AUDIO_INPUT] = [
            tf.audio.encode_wav(np.asarray(w, "float32")[:, None], sample_rate).numpy() for w in features["audio"]
        ]
    return [{name: v[:n] for name, v in values.items()} for n in batch_sizes]


# --- families -------------------------------------------------------------------------------


def _classifier(model, module, staging, sample_rate):
    preprocessor = model.preprocessor
    modalities = list(preprocessor.modalities)
    names = [raw.INPUT_NAMES[m] for m in modalities]
    num_classes = int(model.num_classes)
    class_names = list(model.class_names) if model.class_names else [str(i) for i in range(num_classes)]
    module.labels_asset = tf.saved_model.Asset(_write_lines(os.path.join(staging, LABELS_FILE), class_names,
                                                            "class name"))
    module.labels_table = _id_table(module.labels_asset)
    apply_softmax = getattr(model, "activation", None) is None

    def body(request):
        x = preprocessor(raw_features(preprocessor, modalities, request, sample_rate))
        outputs = tf.cast(model(x, training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs, axis=-1) if apply_softmax else outputs
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        classes = module.labels_table.lookup(tf.range(num_classes, dtype=tf.int64))
        return {
            "probabilities": probabilities,
            "label": module.labels_table.lookup(tf.cast(label_id, tf.int64)),
            "label_id": label_id,
            "class_names": tf.tile(classes[None, :], [tf.shape(probabilities)[0], 1]),
        }

    functions = {DEFAULT_SIGNATURE: signature_function(names, body, "classify")}
    return functions, modalities, {"num_classes": num_classes, "class_names_file": LABELS_FILE}


def _dual_encoder(model, module, staging, sample_rate):
    import keras  # only to cut the two towers out of the backbone

    from kerasmm.losses.contrastive import MAX_LOGIT_SCALE

    preprocessor = model.preprocessor
    backbone = model.backbone
    query = model.query_modality
    towers = {
        m: keras.Model(backbone.input[m], backbone.get_layer(f"{m}_normalization").output, name=f"{m}_tower")
        for m in (query, "text")
    }
    sigmoid = getattr(model, "contrastive_loss", "contrastive") == "sigmoid"

    def embed(modality, request):
        features = raw_features(preprocessor, [modality], request, sample_rate)
        prepared = preprocessor.prepare(modality, features[modality])
        return tf.cast(towers[modality](prepared, training=False), tf.float32)

    def encode(modality):
        return lambda request: {"embedding": embed(modality, request)}

    def score(request):
        queries, texts = embed(query, request), embed("text", request)
        similarity = tf.matmul(queries, texts, transpose_b=True)
        scale = tf.exp(tf.minimum(tf.cast(model.logit_scale_variable, tf.float32), MAX_LOGIT_SCALE))
        logits = scale * similarity
        if sigmoid:
            logits = logits + tf.cast(model.logit_bias_variable, tf.float32)
            probabilities = tf.sigmoid(logits)
        else:
            probabilities = tf.nn.softmax(logits, axis=-1)
        return {"similarity": similarity, "logits": logits, "probabilities": probabilities}

    q_name = raw.INPUT_NAMES[query]
    score_function = signature_function([q_name, raw.TEXT_INPUT], score, "score")
    functions = {
        f"encode_{query}": signature_function([q_name], encode(query), f"encode_{query}"),
        "encode_text": signature_function([raw.TEXT_INPUT], encode("text"), "encode_text"),
        "score": score_function,
        DEFAULT_SIGNATURE: score_function,
    }
    extra = {"embedding_dim": int(backbone.embedding_dim), "loss": "sigmoid" if sigmoid else "contrastive",
             "probabilities": "sigmoid of logits" if sigmoid else "softmax of logits over the texts"}
    return functions, [query, "text"], extra


def caption_scores(model, context, tokens, start_id, end_id):
    """Mean log-probability per token of each caption (its words and the end token, when written).

    A teacher-forced pass of the model over `[start] + tokens` (`tokens`
    `[B, n]` as `generate_function` returns them: 0 after the end token,
    which is itself set to 0). Positions up to the last non-zero id are the
    caption's tokens; when that leaves room, the next position is where the
    end token was written and its log-probability counts too.
    """
    length = model.backbone.sequence_length
    n = int(tokens.shape[1])
    batch = tf.shape(tokens)[0]
    prompt = tf.concat([tf.fill([batch, 1], tf.cast(start_id, tokens.dtype)), tokens], axis=1)
    prompt = tf.pad(prompt, [[0, 0], [0, length - n - 1]])
    logits = model({**context, "tokens": tf.ensure_shape(prompt, (None, length))}, training=False)[:, :n]
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    positions = tf.range(n)[None, :]
    words = tf.reduce_max(tf.where(tokens != 0, positions + 1, 0), axis=1)[:, None]
    targets = tf.where(positions < words, tokens, tf.where(positions == words, end_id, 0))
    counted = positions < words + tf.cast(words < n, tf.int32)
    chosen = tf.gather(log_probs, tf.cast(targets, tf.int32), batch_dims=2)
    weights = tf.cast(counted, tf.float32)
    return tf.reduce_sum(chosen * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def detokenize(table, tokens, special_ids, suffix_indicator="##"):
    """Caption strings `[B]` from ids `[B, n]`: special ids dropped, tokens joined, suffix pieces glued.

    Plain TensorFlow (no tensorflow_text op): a token after the first that
    starts with `suffix_indicator` and has more after it joins the previous
    word; other tokens are separated by one space (as keras_hub's
    WordPieceTokenizer.detokenize).
    """
    tokens = tf.cast(tokens, tf.int64)
    keep = tf.ones_like(tokens, tf.bool)
    for special in special_ids:
        keep = keep & tf.not_equal(tokens, special)
    pieces = tf.ragged.boolean_mask(tokens, keep)
    words = tf.ragged.map_flat_values(table.lookup, pieces)
    text = tf.strings.reduce_join(words, axis=1, separator=" ")
    return tf.strings.regex_replace(text, " " + _re2_escape(suffix_indicator) + r"(\S)", r"\1")


def _re2_escape(text):
    return "".join("\\" + c if not c.isalnum() else c for c in text)


def _captioner(model, module, staging, sample_rate, sampler, max_length, num_beams, scores, jit_compile):
    preprocessor = model.preprocessor
    modalities = list(preprocessor.modalities)
    tokenizer = preprocessor.tokenizer
    start_id, end_id = int(model.start_id), int(model.end_id)
    max_length = int(max_length or model.backbone.sequence_length)
    sampler = model.sampler if sampler is None else sampler
    # The model's own decoding loop (KV cache, sampler, stop on the end token), traced afresh here so
    # that `portable_slice_updates` applies and `jit_compile` is the export's choice.
    generate = model.generate_function(sampler, max_length, num_beams)
    generate = getattr(generate, "python_function", generate)
    module.vocabulary_asset = tf.saved_model.Asset(
        _write_lines(os.path.join(staging, VOCABULARY_FILE), tokenizer.get_vocabulary(), "vocabulary token")
    )
    module.vocabulary_table = _id_table(module.vocabulary_asset)
    suffix = getattr(tokenizer, "suffix_indicator", "##")

    @tf.function(jit_compile=bool(jit_compile))  # autograph on, as in the model's own generate_function
    def generate_and_score(context):
        tokens = generate(context)
        if not scores:
            return tokens, None
        return tokens, caption_scores(model, context, tokens, start_id, end_id)

    def caption(subset):
        def body(request):
            context = preprocessor(raw_features(preprocessor, subset, request, sample_rate))
            context = {k: v for k, v in context.items() if k != "tokens"}
            tokens, log_probs = generate_and_score(context)
            outputs = {"captions": detokenize(module.vocabulary_table, tokens, (0, start_id, end_id), suffix)}
            if scores:
                outputs["scores"] = log_probs
            return outputs

        return body

    functions = {DEFAULT_SIGNATURE: signature_function(
        [raw.INPUT_NAMES[m] for m in modalities], caption(modalities), "caption")}
    if len(modalities) > 1:
        for m in modalities:
            functions[f"caption_{m}"] = signature_function([raw.INPUT_NAMES[m]], caption([m]), f"caption_{m}")
    sampler_name = sampler if isinstance(sampler, str) else type(sampler).__name__
    deterministic = sampler_name.lower().replace("sampler", "") in ("greedy", "beam")
    extra = {
        "deterministic": deterministic,
        "generation": {"sampler": sampler_name, "max_length": max_length, "num_beams": int(num_beams),
                       "start_id": start_id, "end_id": end_id, "jit_compile": bool(jit_compile)},
        "vocabulary_file": VOCABULARY_FILE,
        "scores": "mean log-probability per token (caption tokens + end token), teacher-forced" if scores else None,
    }
    return functions, modalities, extra


def _text_to_image(model, module, staging, sample_rate):
    preprocessor = model.preprocessor

    def body(request):
        text = raw.checked_text(request[raw.TEXT_INPUT], raw.TEXT_INPUT)
        images = tf.cast(model({"text": preprocessor.prepare_text(text)}, training=False), tf.float32)
        png = tf.map_fn(
            lambda image: tf.io.encode_png(tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)),
            images, fn_output_signature=tf.TensorSpec((), tf.string),
        )
        return {"images": images, "png_bytes": png}

    functions = {DEFAULT_SIGNATURE: signature_function([raw.TEXT_INPUT], body, "generate_images")}
    return functions, ["text"], {"image_size": [int(s) for s in model.image_size]}


def build(model, staging, sampler=None, max_length=None, num_beams=4, sample_rate=16000, scores=True,
          jit_compile=False):
    """The `Export` of `model`; asset files are written under `staging` (copied into the SavedModel)."""
    kind = family(model)
    if getattr(model, "preprocessor", None) is None:
        raise ValueError(
            f"Cannot export this {type(model).__name__} on raw inputs: it has no preprocessor. "
            "Give it the preprocessor of its zoo entry."
        )
    module = tf.Module()
    module.model_variables = list(model.variables)
    if kind == "captioner":
        functions, modalities, extra = _captioner(
            model, module, staging, sample_rate, sampler, max_length, num_beams, scores, jit_compile
        )
    elif kind == "classifier":
        functions, modalities, extra = _classifier(model, module, staging, sample_rate)
    elif kind == "dual_encoder":
        functions, modalities, extra = _dual_encoder(model, module, staging, sample_rate)
    else:
        functions, modalities, extra = _text_to_image(model, module, staging, sample_rate)

    tokenizer = getattr(model.preprocessor, "tokenizer", None)
    if tokenizer is not None and not hasattr(module, "vocabulary_asset"):
        module.vocabulary_asset = tf.saved_model.Asset(
            _write_lines(os.path.join(staging, VOCABULARY_FILE), tokenizer.get_vocabulary(), "vocabulary token")
        )
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
