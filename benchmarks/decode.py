"""Caption decoding speed: kerasmm's in-graph KV-cached loop against recompute loops and keras-hub.

One captioner (CNN image encoder → 64 context tokens; decoder width 256,
4 layers, 4 heads, vocabulary 8000, 64 positions; random weights, dropout
off) decodes greedily with the same weights, timed against these ways:

- kerasmm: `Captioner.generate_function` — one `tf.function` holding the
  whole `while_loop`; the context and the cross-attention keys/values are
  computed once; each step runs the decoder on one token against the
  self-attention KV cache. XLA-compiled: generation's default
  (`generate_jit_compile=True`), whatever the train step's `jit_compile`.
- kerasmm without XLA: the same function with `jit_compile=False`, the
  default before generation was XLA-compiled on its own (on CPU Keras
  leaves the train step's `jit_compile` off, and generation followed it).
  Its tokens must equal the XLA ones (asserted).
- eager recompute: the keras.io captioning example's way — the context once,
  then a Python loop that runs the whole decoder over the padded 64-token
  prefix at every step and takes the argmax at the current position.
- compiled recompute: the same loop as one `tf.function` (`tf.range` loop).
- keras-hub: `GPT2CausalLM`'s cached `generate_function` with a decoder of
  the same width, depth and vocabulary (no cross-attention), greedy,
  `stop_token_ids=None`.
- keras-hub with cross-attention: `BartSeq2SeqLM`'s cached generate
  function (same decoder size, 64 encoder tokens like the captioner's 64
  context tokens, cached cross-attention keys/values). Its call also runs a
  4-layer text encoder, so it is compared per decoding step: the time at a
  length minus the time at length 2, over the extra steps, for both.
- kerasmm beam search, width 4.

The end token's embedding row is zeroed, so its logit is 0 while the
largest of the 8000 others is positive: every run decodes the full length
and the loops compare like with like. The recompute loops and kerasmm must
produce identical tokens (asserted). Times are the best of `--repeats` runs
after a warm-up (which traces and compiles).

Run: `.venv/bin/python benchmarks/decode.py [--lengths 16 32 64] [--batches 1 16] [--repeats 3] [--jit on]`.
Last two lines, at the last length and batch (64, 16): the speed-up against the
compiled recompute loop, then XLA (the default) against no XLA (the default
before).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasmm  # noqa: E402
from serving import best_times  # noqa: E402  (the scripts' folder is on sys.path: runs alternated, best of each)

WIDTH, LAYERS, HEADS, VOCABULARY, POSITIONS = 256, 4, 4, 8000, 64


def build_captioner(jit_compile):
    vocabulary = list(kerasmm.data.SPECIAL_TOKENS) + [f"w{i}" for i in range(VOCABULARY - 4)]
    model = kerasmm.zoo.get(
        "captioner", vocabulary=vocabulary, hidden_dim=WIDTH, num_layers=LAYERS, num_heads=HEADS,
        sequence_length=POSITIONS, dropout=0.0, jit_compile=jit_compile,
    )
    embeddings = model.backbone.token_embedding.embeddings
    end = model.preprocessor.end_id
    embeddings.assign(tf.tensor_scatter_nd_update(embeddings, [[end]], tf.zeros((1, WIDTH))))
    return model


def build_keras_hub(backbone_class, task_class, jit_compile):
    """A keras-hub generative task with a decoder of the captioner's size, greedy, random weights."""
    backbone = backbone_class(
        vocabulary_size=VOCABULARY, num_layers=LAYERS, num_heads=HEADS, hidden_dim=WIDTH,
        intermediate_dim=4 * WIDTH, max_sequence_length=POSITIONS, dropout=0.0,
    )
    model = task_class(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy", jit_compile=jit_compile)
    return model


def first_token_only(batch, length):
    """A `[batch, length]` padding mask that marks only the first token as prompt: the rest is generated."""
    return tf.constant(np.arange(length)[None, :].repeat(batch, 0) < 1)


def bart_prompt(batch, length):
    return {
        "encoder_token_ids": tf.ones((batch, POSITIONS), tf.int32),
        "encoder_padding_mask": tf.ones((batch, POSITIONS), tf.bool),
        "decoder_token_ids": tf.ones((batch, length), tf.int32),
        "decoder_padding_mask": first_token_only(batch, length),
    }


def full_decoder_logits(backbone, tokens, context, context_mask):
    """Logits `[B, T, V]` of the whole decoder over `tokens`, no cache (same weights)."""
    x = backbone.embed_tokens(tokens)
    for layer in backbone.decoder_layers:
        x = layer(x, encoder_sequence=context, encoder_padding_mask=context_mask)
    return backbone.token_embedding(backbone.decoder_norm(x), reverse=True)


def start_tokens(model, batch):
    tokens = np.zeros((batch, POSITIONS), "int32")
    tokens[:, 0] = model.preprocessor.start_id
    return tokens


def eager_recompute(model, context, context_mask, batch, length):
    tokens = start_tokens(model, batch)
    for index in range(1, length):
        logits = full_decoder_logits(model.backbone, tf.constant(tokens), context, context_mask)
        tokens[:, index] = np.argmax(np.asarray(logits[:, index - 1]), axis=-1)
    return tokens[:, 1:length]


def make_compiled_recompute(model, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def decode(context, context_mask, tokens, length):
        for index in tf.range(1, length):
            logits = full_decoder_logits(model.backbone, tokens, context, context_mask)
            next_token = tf.argmax(logits[:, index - 1], axis=-1, output_type=tf.int32)
            tokens = tokens + next_token[:, None] * tf.one_hot(index, POSITIONS, dtype=tf.int32)[None, :]
        return tokens

    return lambda context, mask, batch, length: decode(
        context, mask, tf.constant(start_tokens(model, batch)), tf.constant(length)
    ).numpy()[:, 1:length]


def best_time(function, repeats):
    function()  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jit", choices=["off", "on"], default="off",
                        help="the train step's jit_compile: XLA for both keras-hub models and the compiled "
                             "recompute loop (kerasmm's generation is timed with and without XLA either way)")
    args = parser.parse_args()
    jit = args.jit == "on"

    keras.utils.set_random_seed(0)
    model = build_captioner(jit)
    gpt2 = build_keras_hub(keras_hub.models.GPT2Backbone, keras_hub.models.GPT2CausalLM, jit)
    bart = build_keras_hub(keras_hub.models.BartBackbone, keras_hub.models.BartSeq2SeqLM, jit)
    gpt2_generate = gpt2.make_generate_function()
    bart_generate = bart.make_generate_function()
    compiled_recompute = make_compiled_recompute(model, jit)
    images = kerasmm.data.shapes_arrays(num_examples=max(args.batches), task="captioning")[0]["image"]
    print(f"decoder width {WIDTH}, {LAYERS} layers, vocabulary {VOCABULARY}; jit_compile: kerasmm generation "
          f"{bool(model.generate_jit_compile)} (train step {bool(model.jit_compile)}), keras-hub "
          f"{bool(gpt2.jit_compile)}; best of {args.repeats}, seconds\n")
    print("| batch | length | kerasmm | kerasmm no XLA | eager recompute | compiled recompute | keras-hub GPT-2 "
          "| keras-hub BART | beam 4 | × no XLA | × eager | × compiled | per token ÷ GPT-2 | per step ÷ BART "
          "| beam ÷ greedy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    last_speedup = last_xla = None
    for batch in args.batches:
        inputs = {k: v for k, v in model.preprocessor({"image": images[:batch]}).items() if k != "tokens"}
        context, context_mask = model.backbone.encode_context(inputs)
        short = model.generate_function("greedy", 2)
        base = {  # fixed costs (encoders, set-up) for the per-step comparison with BART
            "kerasmm": best_time(lambda: np.asarray(short(inputs)), args.repeats),
            "bart": best_time(lambda: np.asarray(bart_generate(bart_prompt(batch, 2), stop_token_ids=None)
                                                 ["decoder_token_ids"]), args.repeats),
        }
        for length in args.lengths:
            greedy = model.generate_function("greedy", length)  # the default: XLA
            plain = model.generate_function("greedy", length, jit_compile=False)  # the default before
            beam = model.generate_function("beam", length, num_beams=4)
            ours = np.asarray(greedy(inputs))
            np.testing.assert_array_equal(ours, np.asarray(plain(inputs)))  # XLA changes no token
            assert (ours != model.preprocessor.end_id).all(), "the end token was generated; timings would differ"
            np.testing.assert_array_equal(ours, eager_recompute(model, context, context_mask, batch, length))
            np.testing.assert_array_equal(ours, compiled_recompute(context, context_mask, batch, length))
            prompt = {
                "token_ids": tf.constant(start_tokens(model, batch)[:, :length]),
                "padding_mask": first_token_only(batch, length),
            }
            # With and without XLA alternate, at least 5 runs each: the ratio the last line reports.
            times = best_times({"kerasmm": lambda: np.asarray(greedy(inputs)),
                                            "plain": lambda: np.asarray(plain(inputs))}, max(5, args.repeats))
            times.update({
                "eager": best_time(lambda: eager_recompute(model, context, context_mask, batch, length),
                                   max(1, args.repeats // 2)),
                "compiled": best_time(lambda: compiled_recompute(context, context_mask, batch, length),
                                      args.repeats),
                "gpt2": best_time(lambda: np.asarray(gpt2_generate(prompt, stop_token_ids=None)), args.repeats),
                "bart": best_time(lambda: np.asarray(bart_generate(bart_prompt(batch, length), stop_token_ids=None)
                                                     ["decoder_token_ids"]), args.repeats),
                "beam": best_time(lambda: np.asarray(beam(inputs)), args.repeats),
            })
            t = times
            last_speedup = t["compiled"] / t["kerasmm"]
            last_xla = t["plain"] / t["kerasmm"]
            # Differences of two timings: only meaningful once the loop is a good deal longer than 2 steps.
            per_step = (f"{(t['kerasmm'] - base['kerasmm']) / (t['bart'] - base['bart']):.2f}"
                        if length >= 8 else "n/a")
            print(f"| {batch} | {length} | {t['kerasmm']:.3f} | {t['plain']:.3f} | {t['eager']:.3f} "
                  f"| {t['compiled']:.3f} | {t['gpt2']:.3f} | {t['bart']:.3f} | {t['beam']:.3f} "
                  f"| {last_xla:.2f}× | {t['eager'] / t['kerasmm']:.1f}× "
                  f"| {last_speedup:.1f}× | {t['kerasmm'] / t['gpt2']:.2f} | {per_step} "
                  f"| {t['beam'] / t['kerasmm']:.2f} |", flush=True)
    print(f"\nratio: kerasmm cached generate vs compiled full-recompute loop at length {args.lengths[-1]}, "
          f"batch {args.batches[-1]}: {last_speedup:.1f}x faster")
    print(f"ratio: kerasmm generate with XLA (the default) vs without (the default before) at length "
          f"{args.lengths[-1]}, batch {args.batches[-1]}, identical tokens: {last_xla:.2f}x faster")


if __name__ == "__main__":
    main()
