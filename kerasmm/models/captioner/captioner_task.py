"""Transformer captioners: context (image/audio) → causal decoder → caption, generated in-graph."""

import threading
import warnings

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from kerasmm import generation, validation
from kerasmm.models.captioner.captioner_backbone import CaptionerBackbone
from kerasmm.models.captioner.captioner_preprocessor import TEXT_FEATURES, CaptionerPreprocessor
from kerasmm.models.task import ZooTask
from kerasmm.losses.sequence import SmoothedSparseCrossentropy
from kerasmm.metrics.caption import Bleu, CiderD, RougeL

# Held-out examples `evaluate` can score with CIDEr-D at once (it keeps every example's ids).
CIDER_CAPACITY = 10000
# References per example the default CIDEr-D holds (COCO images have 5 to 7 captions).
CIDER_REFERENCES = 8
# The preprocessed-features key that carries every reference's ids `[B, R, L]` during `evaluate`.
REFERENCES = "references"
# The generate functions' input holding `[START] prompt…` ids `[B, sequence_length]` (0 after), kept as given.
PROMPT_TOKENS = "prompt_tokens"
# The references (and prompts) of the test step being traced, per thread (each replica of a strategy
# traces in its own).
_STEP = threading.local()


def without_prompt(tokens, prompt_tokens):
    """Generated ids `[B, n]` with the positions each row's prompt fixed set to 0: what was written after it.

    `prompt_tokens` `[B, >= n + 1]` are `[START] prompt…` ids, 0 after, as
    the generate functions take them under `PROMPT_TOKENS`.
    """
    tokens = tf.convert_to_tensor(tokens)
    given = tf.convert_to_tensor(prompt_tokens)[:, 1 : int(tokens.shape[1]) + 1] != 0
    return tf.where(given, tf.zeros_like(tokens), tokens)


@keras.saving.register_keras_serializable(package="kerasmm")
class Captioner(ZooTask):
    """Writes captions for images (and/or audio) with a KV-cached transformer decoder.

    `fit` takes raw `(features, captions)` batches from any kerasmm reader
    (teacher forcing; the loss is masked on padding); `generate` writes
    captions with the whole decoding loop in one TF graph: the context and
    the cross-attention keys/values are computed once, each step runs the
    decoder on one token against a self-attention KV cache, and the loop
    stops when every row has written the end token. `evaluate` generates
    greedily in the graph and reports BLEU-1..4, CIDEr-D and ROUGE-L (as
    pycocoevalcap scores them, on token ids) against the reference captions:
    against every reference of an image when the targets give several, a
    `[B, R]` string batch padded with "" (`from_coco(..., captions="references")`,
    `from_tfds(..., captions="references")`), as the COCO evaluation does;
    the loss and token accuracy then use each image's first caption.

    Args:
        backbone: a `CaptionerBackbone`.
        preprocessor: a `CaptionerPreprocessor` (carries the tokenizer).
        label_smoothing: float in [0, 1), for the training loss.
        sampler: the default sampler of `generate`: "greedy", "beam",
            "random", "top_k", "top_p" or a keras_hub `Sampler`.
        generate_jit_compile: XLA-compile `generate`'s decoding loop
            (default True, CPU included: about 2x faster there, see
            `benchmarks/decode.py`). Independent of the train step's
            `jit_compile`, which Keras leaves off on CPU; where XLA cannot
            compile the loop (e.g. a custom sampler with a non-XLA op),
            `generate` warns once and runs it without XLA.
        start_id, end_id: ids of the tokens that open and close a caption;
            default: the preprocessor's. Kept in the config, so a loaded
            model decodes before its vocabulary asset is read.

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_captioner")
    data = kerasmm.data.shapes(num_examples=8, batch_size=4, task="captioning")
    model.fit(data, epochs=1)
    images, _ = next(iter(data))
    model.generate(images, max_length=12)        # a list of caption strings
    ```
    """

    # What keras-hub's `from_preset` builds this task from.
    backbone_cls = CaptionerBackbone
    preprocessor_cls = CaptionerPreprocessor

    def __init__(self, backbone, preprocessor=None, label_smoothing=0.0, sampler="greedy", start_id=None, end_id=None,
                 generate_jit_compile=True, **kwargs):
        if not isinstance(backbone, CaptionerBackbone):
            raise ValueError(f"backbone must be a CaptionerBackbone, got {type(backbone).__name__}.")
        label_smoothing = validation.rate("label_smoothing", label_smoothing)
        if isinstance(sampler, str):
            generation.get_sampler(sampler)  # unknown names fail here, not at the first generate

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Config === (before the functional init, whose default compile reads it)
        self.label_smoothing = label_smoothing
        self.sampler = sampler
        if preprocessor is not None:
            start_id = preprocessor.start_id if start_id is None else start_id
            end_id = preprocessor.end_id if end_id is None else end_id
        self.start_id = start_id
        self.end_id = end_id
        self.generate_jit_compile = validation.boolean("generate_jit_compile", generate_jit_compile)
        self._generate_functions = {}

        # === Functional Model ===
        inputs = dict(backbone.input)
        hidden = backbone(inputs)
        # float32 logits under mixed precision (the reverse projection computes in float32 too).
        logits = ops.cast(backbone.token_embedding(hidden, reverse=True), "float32")
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.caption_metrics = self._default_caption_metrics()

    # --- training and evaluation -------------------------------------------------

    def compile(self, optimizer="auto", loss="auto", *, weighted_metrics="auto", caption_metrics="auto", **kwargs):
        """`keras.Model.compile` with defaults: Adam(1e-3), masked cross-entropy, token accuracy.

        `caption_metrics` (default BLEU-1..4, CIDEr-D and ROUGE-L) are scored on greedy
        generations during `evaluate` only; pass `[]` to skip generation there.
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if loss == "auto":
            loss = SmoothedSparseCrossentropy(label_smoothing=self.label_smoothing)
        if weighted_metrics == "auto":  # weighted by the preprocessor's padding mask
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")]
        if caption_metrics != "auto":
            self.caption_metrics = list(caption_metrics)
        self._generate_functions = {}
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)

    def _default_caption_metrics(self):
        if self.end_id is None:
            return []
        ids = {"end_id": self.end_id, "ignore_ids": (0, self.start_id)}
        length = self.backbone.sequence_length
        return [
            *[Bleu(max_order=n, name=f"bleu_{n}", **ids) for n in range(1, 5)],
            CiderD(name="cider_d", capacity=CIDER_CAPACITY, max_length=length, max_references=CIDER_REFERENCES,
                   **ids),
            RougeL(name="rouge_l", **ids),
        ]

    def evaluate(self, *args, return_dict=False, **kwargs):
        logs = super().evaluate(*args, return_dict=True, **kwargs)
        # Scored once over the whole set: CIDEr-D needs every reference before it can weigh n-grams,
        # so the test step leaves it out of the per-batch logs.
        logs.update({m.name: float(m.result()) for m in self.caption_metrics})
        return logs if return_dict else [logs[k] for k in ["loss", *[k for k in logs if k != "loss"]]]

    def preprocess_samples(self, x, y=None, sample_weight=None):
        """The preprocessor's batch; while evaluating, `[B, R]` string targets are references.

        The loss and token accuracy use each example's first caption; the ids
        of all of them (`[B, R, sequence_length + 1]`, "" giving an empty,
        missing reference) ride along as `x["references"]` for the caption
        metrics, which `test_step` takes out before the model sees `x`.
        """
        if self.preprocessor is None or y is None or not self.evaluating:
            return super().preprocess_samples(x, y, sample_weight)
        y = tf.convert_to_tensor(y)
        prompts = x.get(self._prompt_feature) if isinstance(x, dict) else None
        if y.dtype == tf.string and y.shape.rank == 1 and prompts is not None:
            y = y[:, None]  # the references must leave the prompt out, as the generated words will
        if y.dtype != tf.string or y.shape.rank != 2:
            return super().preprocess_samples(x, y, sample_weight)
        x, next_tokens, weights = self.preprocessor(x, y[:, 0], sample_weight)
        ids = self.preprocessor.caption_ids(tf.reshape(y, [-1]))
        x = {**x, REFERENCES: tf.reshape(ids, tf.concat([tf.shape(y), tf.shape(ids)[-1:]], axis=0))}
        if prompts is not None:
            x[PROMPT_TOKENS] = self.preprocessor.prompt_ids(prompts)
        return x, next_tokens, weights

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not (isinstance(x, dict) and REFERENCES in x):
            return super().test_step(data)
        x = dict(x)
        _STEP.references = x.pop(REFERENCES)
        _STEP.prompt_tokens = x.pop(PROMPT_TOKENS, None)
        try:
            return super().test_step(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))
        finally:
            _STEP.references = _STEP.prompt_tokens = None

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self.evaluating and self.caption_metrics:
            prompt_tokens = getattr(_STEP, "prompt_tokens", None)
            inputs = x if prompt_tokens is None else {**x, PROMPT_TOKENS: prompt_tokens}
            tokens = self._generate_tokens(inputs, generation.get_sampler("greedy"), self.backbone.sequence_length)
            if prompt_tokens is not None:  # scored on what follows the prompt
                tokens = without_prompt(tokens, prompt_tokens)
            references = getattr(_STEP, "references", None)
            for metric in self.caption_metrics:
                metric.update_state(y if references is None else references, tokens)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        return {k: v for k, v in logs.items() if k not in {m.name for m in self.caption_metrics}}

    # --- generation ----------------------------------------------------------------

    def _special_ids(self):
        if self.start_id is None or self.end_id is None:
            raise ValueError("Generation needs start_id and end_id (or a preprocessor that knows them).")
        return self.start_id, self.end_id

    def _generate_tokens(self, inputs, sampler, max_length):
        """`[B, max_length - 1]` generated ids (start token dropped, end and after → 0), in-graph."""
        start_id, end_id = self._special_ids()
        context, context_mask = self.backbone.encode_context(inputs, training=False)
        batch_size = ops.shape(context)[0]
        if PROMPT_TOKENS in inputs:
            # The sampler keeps the prompt's ids where the mask is set; each enters the cache once, in its step.
            prompt = ops.cast(inputs[PROMPT_TOKENS][:, :max_length], "int32")
            prompt_mask = prompt != 0
        else:
            prompt, prompt_mask = generation.initial_prompt(batch_size, max_length, start_id)
        self_cache, cross_cache = self.backbone.empty_caches(batch_size, max_length, ops.shape(context)[1])
        # One pass on the start token fills the cross-attention keys/values for the whole loop.
        _, _, cross_cache = self.backbone.decode_with_cache(
            prompt[:, :1], context, context_mask, self_cache, 0, cross_cache, seed_cross=True
        )

        # Context, its mask and the cross-attention cache stay outside the loop state: they never
        # change, so the loop neither carries nor (in beam search) reorders them. A beam sampler
        # runs num_beams rows per example, all sharing that example's context.
        beams = sampler.num_beams if isinstance(sampler, keras_hub.samplers.BeamSampler) else 1
        if beams > 1:
            context, context_mask = ops.repeat(context, beams, axis=0), ops.repeat(context_mask, beams, axis=0)
            cross_cache = tuple(ops.repeat(t, beams, axis=0) for t in cross_cache)

        def next(prompt, self_cache, index):
            token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
            hidden, self_cache, _ = self.backbone.decode_with_cache(
                token, context, context_mask, self_cache, index - 1, cross_cache
            )
            hidden = ops.squeeze(hidden, axis=1)
            logits = generation.forbid_padding(ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32"))
            if beams > 1:
                logits = generation.freeze_finished(logits, token[:, 0], end_id)
            return logits, hidden, self_cache

        tokens = sampler(
            next=next,
            prompt=prompt,
            cache=self_cache,
            index=1,
            mask=prompt_mask,
            stop_token_ids=(end_id,),
        )
        return generation.strip_after_end(tokens[:, 1:], end_id)

    def generate_function(self, sampler=None, max_length=None, num_beams=4, jit_compile=None):
        """The compiled `tf.function` mapping preprocessed context inputs → token ids `[B, max_length - 1]`.

        `sampler`: a name in `kerasmm.generation.SAMPLERS` or a keras_hub
        `Sampler` (default the model's). XLA-compiled when `jit_compile`
        (default the model's `generate_jit_compile`) is True; plain Python
        under `run_eagerly`. Cached per (sampler config but its seed,
        max_length, jit_compile).
        """
        function, _ = self._generate_entry(sampler, max_length, num_beams, jit_compile)
        return function

    def _generate_entry(self, sampler, max_length, num_beams, jit_compile):
        """`(function, sampler)` from the cache (see `generate_function`), made on first use."""
        key, sampler, max_length, jit_compile = self._generate_key(sampler, max_length, num_beams, jit_compile)
        if key not in self._generate_functions:

            def generate_step(inputs):
                return self._generate_tokens(inputs, sampler, max_length)

            function = generate_step if self.run_eagerly else tf.function(generate_step, jit_compile=jit_compile)
            self._generate_functions[key] = (function, sampler)
        return self._generate_functions[key]

    def _generate_key(self, sampler, max_length, num_beams, jit_compile):
        """`(cache key, sampler, max_length, jit_compile)` of a generate function, the arguments resolved."""
        max_length = self._check_max_length(max_length)
        sampler = generation.get_sampler(self.sampler if sampler is None else sampler, num_beams=num_beams)
        jit_compile = self._generate_jit(jit_compile)
        # The seed is left out: a sampler's seed generator is reset to it before each `generate`, so
        # one compiled loop serves every seed.
        config = {k: v for k, v in sampler.get_config().items() if k != "seed"}
        return (repr(config), type(sampler).__name__, max_length, jit_compile), sampler, max_length, jit_compile

    def _generate_jit(self, jit_compile=None):
        """Whether generation is XLA-compiled: `jit_compile`, else the model's `generate_jit_compile`."""
        if self.run_eagerly:
            return False
        if jit_compile is None:
            return bool(getattr(self, "generate_jit_compile", True))
        return validation.boolean("jit_compile", jit_compile)

    @staticmethod
    def _reseed(sampler, seed):
        """Start `sampler`'s random stream at `seed` again (keras_hub samplers advance it at every token)."""
        generator = getattr(sampler, "seed_generator", None)
        if seed is not None and generator is not None:
            generator.state.assign(ops.cast(ops.convert_to_tensor([seed, 0]), generator.state.dtype))

    def _run_generate(self, context, sampler, max_length, num_beams, jit_compile, seed):
        """Token ids of one preprocessed batch; an XLA compile failure falls back to plain graph mode (warned once)."""
        function, _ = self._generate_entry(sampler, max_length, num_beams, jit_compile)
        try:
            return function(context)
        except tf.errors.OpError as error:
            if not self._generate_jit(jit_compile):
                raise
            plain, plain_sampler = self._generate_entry(sampler, max_length, num_beams, False)
            self._reseed(plain_sampler, seed)
            tokens = plain(context)  # a genuine error (not XLA's) is raised here again
            # Later calls with these settings go straight to the plain function.
            key = self._generate_key(sampler, max_length, num_beams, jit_compile)[0]
            self._generate_functions[key] = (plain, plain_sampler)
            if not getattr(self, "_warned_xla_fallback", False):
                self._warned_xla_fallback = True
                first_line = str(getattr(error, "message", error)).strip().splitlines()[0][:300]
                warnings.warn(
                    f"generate: XLA could not compile the decoding loop ({type(error).__name__}: {first_line}); "
                    "running it without XLA. Pass jit_compile=False to generate (or set the model's "
                    "generate_jit_compile=False) to skip the attempt.",
                    RuntimeWarning, stacklevel=3,
                )
            return tokens

    def _check_max_length(self, max_length):
        limit = self.backbone.sequence_length
        if max_length is None:
            return limit
        max_length = validation.int_at_least("max_length (the start token + 1 word)", max_length, 2)
        if max_length > limit:
            raise ValueError(
                f"max_length={max_length} is beyond the decoder's positional range: this model has "
                f"{limit} positions (sequence_length)."
            )
        return max_length

    def generate(self, inputs=None, max_length=None, sampler=None, num_beams=4, batch_size=32, return_tokens=False, *,
                 prompt=None, include_prompt=True, temperature=None, top_k=None, top_p=None, seed=None,
                 jit_compile=None):
        """Captions for `inputs`: a list of str (or int token ids with `return_tokens`).

        Args:
            inputs: images `[B, H, W, 3]` (uint8 or float in [0, 1], any size),
                a dict of raw context features (`"image"`, `"audio"`; a
                missing modality is masked out), or a `tf.data.Dataset` of
                such batches (targets, if any, are ignored). None with a
                `prompt`: write from the prompt alone, no image or audio
                (one caption per prompt; `context_dropout` > 0 trains a
                model on such examples too).
            max_length: decoder positions to use, start token included
                (default and maximum: the model's `sequence_length`).
            sampler: "greedy", "beam", "random", "top_k", "top_p" or a
                keras_hub `Sampler`; default the model's `sampler`, or
                "top_p" when `top_p` is given, "top_k" when only `top_k` is.
            num_beams: beam width for "beam".
            batch_size: rows per generation call for array inputs.
            return_tokens: return an int32 array `[N, max_length - 1]` of ids
                (0 after the end token) instead of strings.
            prompt: text each caption continues: one string for every row,
                or a list of one per row (a dataset carries per-row prompts
                as its `"prompt"` feature). Captions begin with their prompt.
            include_prompt: False returns only what was written after each
                row's prompt (e.g. the answer to a question).
            temperature: float > 0 dividing the logits (any named sampler;
                default 1).
            top_k: keep the k likeliest tokens ("top_k"; with "top_p", at
                most k tokens in the nucleus).
            top_p: keep the smallest set of tokens whose probability
                reaches p, in (0, 1] ("top_p").
            seed: int >= 0 for the random samplers; the same seed gives the
                same captions.
            jit_compile: XLA-compile the decoding loop; default the model's
                `generate_jit_compile` (True). Where XLA fails, generation
                warns once and runs without it.

        The keyword options cannot be combined with a sampler object, nor
        with a sampler they do not apply to (a one-line ValueError says
        which).

        Example:
        ```python
        model.generate(images, top_p=0.9, temperature=0.7, seed=1)
        model.generate(images, prompt="a large")   # ["a large red circle", ...]
        model.generate(prompt=["a large", "a small"])  # text alone: no image or audio
        ```
        """
        sampler = generation.resolve_sampler(sampler, self.sampler, num_beams=num_beams, temperature=temperature,
                                             top_k=top_k, top_p=top_p, seed=seed)
        _, cached_sampler = self._generate_entry(sampler, max_length, num_beams, jit_compile)
        self._reseed(cached_sampler, seed)
        include_prompt = validation.boolean("include_prompt", include_prompt)
        batches = self._raw_batches(inputs, batch_size, prompt)
        length = self._check_max_length(max_length)
        outputs = []
        for batch in batches:
            context = self._context_batch(batch, length)
            tokens = self._run_generate(context, sampler, max_length, num_beams, jit_compile, seed)
            if not include_prompt and PROMPT_TOKENS in context:
                tokens = without_prompt(tokens, context[PROMPT_TOKENS])
            outputs.append(tokens)
        if not outputs:
            raise ValueError("generate got an empty batch: no images or audio to caption.")
        tokens = np.concatenate([np.asarray(t) for t in outputs], axis=0)
        return tokens if return_tokens else self.detokenize(tokens)

    def _raw_batches(self, inputs, batch_size, prompt=None):
        if inputs is None:
            inputs = self._text_only_inputs(prompt)
            prompt = [prompt] if isinstance(prompt, str) else prompt
        if prompt is not None and not isinstance(prompt, str):
            if isinstance(inputs, tf.data.Dataset):
                raise ValueError("With a dataset, give one prompt string for every row, or per-row prompts as "
                                 "the dataset's \"prompt\" feature.")
            prompt = list(prompt)
            for i, text in enumerate(prompt):
                if not isinstance(text, str):
                    raise ValueError(f"Prompt {i} is a {type(text).__name__}, not a string.")
        if isinstance(inputs, tf.data.Dataset):
            for batch in inputs:
                batch = batch[0] if isinstance(batch, tuple) else batch
                batch = dict(batch) if isinstance(batch, dict) else {"image": batch}
                if prompt is not None:
                    batch[self._prompt_feature] = tf.fill(tf.shape(next(iter(batch.values())))[:1], prompt)
                yield batch
            return
        if not isinstance(inputs, dict):
            inputs = {"image": inputs}
        inputs = {k: np.asarray(v) for k, v in inputs.items()}
        total = len(next(iter(inputs.values()))) if inputs else 0
        if not inputs and isinstance(prompt, list):  # text alone: one row per prompt
            total = len(prompt)
        if total == 0:
            raise ValueError("generate got an empty batch: no images or audio to caption.")
        if isinstance(prompt, list) and len(prompt) != total:
            raise ValueError(f"Got {len(prompt)} prompts for {total} inputs; give one prompt string for every row, "
                             "or a list of one per row.")
        if prompt is not None:
            inputs[self._prompt_feature] = np.array([prompt] * total if isinstance(prompt, str) else prompt,
                                                    dtype=object)
        for start in range(0, total, batch_size):
            yield {k: v[start : start + batch_size] for k, v in inputs.items()}

    @staticmethod
    def _text_only_inputs(prompt):
        """The (empty) context of a generation from prompts alone."""
        if prompt is None:
            raise ValueError("generate needs inputs (images, audio or a dataset), or a prompt to write from alone.")
        return {}

    @property
    def _prompt_feature(self):
        """The raw feature that holds a prompt: "prompt", or "text" for a question answerer."""
        return getattr(self.preprocessor, "prompt_feature", "prompt")

    def _context_batch(self, raw, max_length=None):
        if self.preprocessor is None:
            return raw
        prompt_feature = self._prompt_feature
        features = self.preprocessor({k: v for k, v in raw.items() if k not in TEXT_FEATURES or k == prompt_feature})
        context = {k: v for k, v in features.items() if k != "tokens"}
        if prompt_feature in raw:
            context[PROMPT_TOKENS] = features["tokens"]
            self._check_prompt_room(raw[prompt_feature], max_length or self.backbone.sequence_length)
        return context

    def _check_prompt_room(self, prompts, max_length):
        """A prompt must leave the decoder a position to write in: the start token and its ids < max_length."""
        prompts = np.asarray(prompts).reshape(-1)
        lengths = self.preprocessor.token_ids(prompts, "Prompts").row_lengths().numpy()
        too_long = np.flatnonzero(lengths + 1 >= max_length)
        if too_long.size:
            i = int(too_long[0])
            text = prompts[i].decode("utf-8") if isinstance(prompts[i], bytes) else str(prompts[i])
            raise ValueError(
                f"Prompt {text!r} is {int(lengths[i])} tokens long, leaving no room to generate within "
                f"max_length={max_length} (the start token included); shorten it or raise max_length."
            )

    def detokenize(self, tokens):
        """Caption strings from token ids (cut at the end token; padding and special tokens dropped).

        Punctuation is re-attached as written ("flag: sweden", "it's", "(a)";
        see `kerasmm.generation.attach_punctuation`), the same in-graph
        function an exported model uses.
        """
        start_id, end_id = self._special_ids()
        tokens = np.asarray(generation.strip_after_end(np.asarray(tokens, "int32"), end_id))
        special = {0, start_id, end_id}
        keep = ~np.isin(tokens, list(special))
        ragged = tf.ragged.boolean_mask(tf.constant(tokens, tf.int32), tf.constant(keep))
        # The function the exported model's detokenisation ends with too (captioner_serving.detokenize).
        text = generation.attach_punctuation(self.preprocessor.tokenizer.detokenize(ragged))
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in np.asarray(text).reshape(-1)]

    # --- serving (kerasmm.export) ---------------------------------------------------

    serving_family = "captioner"

    def serving_signatures(self, module, staging, *, sample_rate=16000, sampler=None, max_length=None, num_beams=4,
                           scores=True, jit_compile=False, prompted=False):
        """Raw-input serving signatures for `kerasmm.export` (see `ZooTask.serving_signatures`).

        `serving_default(image_bytes, [audio_bytes])` (and `caption_<modality>` with several
        modalities) → `captions`, `scores` (see `kerasmm.models.captioner.captioner_serving`).
        """
        from kerasmm.models.captioner import captioner_serving  # imports kerasmm.export, only when exporting

        return captioner_serving.serving_signatures(
            self, module, staging, sample_rate, sampler=sampler, max_length=max_length, num_beams=num_beams,
            scores=scores, jit_compile=jit_compile, prompted=prompted,
        )

    def get_config(self):
        config = super().get_config()
        sampler = self.sampler
        if not isinstance(sampler, str):
            sampler = keras.saving.serialize_keras_object(sampler)
        config.update(
            {"label_smoothing": self.label_smoothing, "sampler": sampler, "start_id": self.start_id,
             "end_id": self.end_id}
        )
        config["generate_jit_compile"] = self.generate_jit_compile
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("sampler"), dict):
            config["sampler"] = keras.saving.deserialize_keras_object(config["sampler"])
        return super().from_config(config)
