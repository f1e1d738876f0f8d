"""Serving signatures of `Captioner` on raw inputs (see `kerasmm.export`).

- `serving_default(image_bytes, [audio_bytes])` (the preprocessor's
  modalities) → `captions` `[B]`, `scores` `[B]` (mean log-probability per
  token, unless exported with `scores=False`).
- a model with several context modalities also gets `caption_<modality>`
  (e.g. `caption_image(image_bytes)`) for each one alone, same outputs.
- exported with `prompted=True`, `caption_prompted(image_bytes,
  [audio_bytes], prompt)`: captions that continue each row's `prompt` string
  (as `Captioner.generate(prompt=...)`), scored on the words written after it;
  and `write_from_prompt(prompt)`: the same from the prompt alone, no image or
  audio (as `Captioner.generate(prompt=...)` with no inputs).
- a question answerer (`GenerativeVQA`): only `serving_default(image_bytes,
  [audio_bytes], question)` → `answers` `[B]` (the words written after the
  question, as `GenerativeVQA.answer`), `scores` `[B]` (on those words).

Generation is the model's own decoding loop (`Captioner.generate_function`)
and detokenisation runs in plain TensorFlow on the `vocabulary.txt` asset, re-attaching
punctuation with the same function as `Captioner.detokenize` (`kerasmm.generation.attach_punctuation`).
"""

import os

import tensorflow as tf

from kerasmm.export import inputs as raw
from kerasmm.export.signatures import (
    DEFAULT_SIGNATURE,
    VOCABULARY_FILE,
    _id_table,
    _write_lines,
    raw_features,
    signature_function,
)
from kerasmm.generation import attach_punctuation
from kerasmm.models.captioner.captioner_task import PROMPT_TOKENS, without_prompt

PROMPTED_SIGNATURE = "caption_prompted"
PROMPT_ONLY_SIGNATURE = "write_from_prompt"


def caption_scores(model, context, tokens, start_id, end_id, given=None):
    """Mean log-probability per token of each caption (its words and the end token, when written).

    A teacher-forced pass of the model over `[start] + tokens` (`tokens`
    `[B, n]` as `generate_function` returns them: 0 after the end token,
    which is itself set to 0). Positions up to the last non-zero id are the
    caption's tokens; when that leaves room, the next position is where the
    end token was written and its log-probability counts too. Positions
    where `given` (`[B, n]` bool) holds are a prompt's, not counted.
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
    if given is not None:
        counted = counted & ~given
    chosen = tf.gather(log_probs, tf.cast(targets, tf.int32), batch_dims=2)
    weights = tf.cast(counted, tf.float32)
    return tf.reduce_sum(chosen * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def detokenize(table, tokens, special_ids, suffix_indicator="##"):
    """Caption strings `[B]` from ids `[B, n]`, written as `Captioner.detokenize` writes them.

    `join_wordpieces` (keras_hub's WordPiece detokenisation in plain
    TensorFlow), then `kerasmm.generation.attach_punctuation`, the function
    `Captioner.detokenize` applies too: "flag : sweden" → "flag: sweden".
    """
    return attach_punctuation(join_wordpieces(table, tokens, special_ids, suffix_indicator))


def join_wordpieces(table, tokens, special_ids, suffix_indicator="##"):
    """Token strings `[B]` from ids `[B, n]`: special ids dropped, tokens joined, suffix pieces glued.

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


def serving_signatures(model, module, staging, sample_rate, sampler=None, max_length=None, num_beams=4, scores=True,
                       jit_compile=False, prompted=False, answers=False):
    """`(functions, modalities, extra_metadata)` of a captioner; the vocabulary asset is written under `staging`.

    `sampler` (default the model's), `max_length` (default its
    `sequence_length`) and `num_beams` are fixed in the graph; `scores` adds
    the `scores` output; `jit_compile` XLA-compiles the decoding loop.
    `answers` (a question answerer) makes `serving_default` take a `question`
    beside the bytes and return the `answers` written after it.
    """
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

    @tf.function(jit_compile=bool(jit_compile))
    def generate_and_score_prompted(context, prompt_tokens):
        tokens = generate({**context, PROMPT_TOKENS: prompt_tokens})
        if not scores:
            return tokens, None
        given = prompt_tokens[:, 1:max_length] != 0  # the positions of `tokens` the prompt fixed
        return tokens, caption_scores(model, context, tokens, start_id, end_id, given)

    def caption(subset, prompt_input=None, output="captions", continuation_only=False):
        def body(request):
            features = raw_features(preprocessor, subset, request, sample_rate)
            if prompt_input:
                first = {raw.INPUT_NAMES[m]: request[raw.INPUT_NAMES[m]] for m in subset[:1]}
                prompts = raw.same_batch_size({**first,
                                               prompt_input: raw.checked_text(request[prompt_input], prompt_input)})
                features[preprocessor.prompt_feature] = prompts[prompt_input]
            context = preprocessor(features)
            prompt_tokens = context.pop("tokens")
            if prompt_input:
                room = raw.assert_none(
                    tf.math.count_nonzero(prompt_tokens, axis=1) >= max_length,
                    f"{prompt_input}: element leaves no room to generate within max_length={max_length} "
                    "(the start token included) (index:)")
                with tf.control_dependencies([room]):
                    tokens, log_probs = generate_and_score_prompted(context, tf.identity(prompt_tokens))
                if continuation_only:
                    tokens = without_prompt(tokens, prompt_tokens)
            else:
                tokens, log_probs = generate_and_score(context)
            outputs = {output: detokenize(module.vocabulary_table, tokens, (0, start_id, end_id), suffix)}
            if scores:
                outputs["scores"] = log_probs
            return outputs

        return body

    inputs = [raw.INPUT_NAMES[m] for m in modalities]
    if answers:
        functions = {DEFAULT_SIGNATURE: signature_function(
            [*inputs, raw.QUESTION_INPUT], caption(modalities, raw.QUESTION_INPUT, "answers", True), "answer")}
    else:
        functions = {DEFAULT_SIGNATURE: signature_function(inputs, caption(modalities), "caption")}
        if len(modalities) > 1:
            for m in modalities:
                functions[f"caption_{m}"] = signature_function([raw.INPUT_NAMES[m]], caption([m]), f"caption_{m}")
        if prompted:
            functions[PROMPTED_SIGNATURE] = signature_function(
                [*inputs, raw.PROMPT_INPUT], caption(modalities, raw.PROMPT_INPUT), PROMPTED_SIGNATURE)
            functions[PROMPT_ONLY_SIGNATURE] = signature_function(
                [raw.PROMPT_INPUT], caption([], raw.PROMPT_INPUT), PROMPT_ONLY_SIGNATURE)
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
