"""Prompt check for `crossmodal_lm`: writing from a text prompt alone, and the cost to captioning.

Trains the entry twice on the recipe's data (shapes captions with their
tones): as registered (`context_dropout=0`: every example has its image, its
tone or both) and with `context_dropout=0.1` (one example in ten trains with
neither, as text alone). Each model then writes
from prompts alone (no image, no audio: both masked out), sampling with
top-p 0.9, and the check counts how many of those captions follow the shapes
captions' grammar and begin with their prompt. The held-out captions score
both models twice: with image and tone (what the text-only examples cost
the captioner), and with neither, as a language model (the loss: the
model's masked cross-entropy, summed over caption tokens and divided by all
positions, padding included, as Keras reduces it).

Run: `.venv/bin/python zoo/crossmodal_lm/prompt_check.py [--epochs 4] [--samples 50]`
"""

import argparse
import re
import time

import numpy as np
import tensorflow as tf

import kerasmm
from kerasmm.data.shapes_data import COLORS, RELATIONS, SHAPES, SIZES

PROMPTS = ("a", "a large", "a small red", "a large blue circle right of")


def alternatives(words):
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


def phrase(kinds):
    return f"a {alternatives(SIZES)} {alternatives(COLORS)} {alternatives(kinds)}"


# "a small red circle", "a large shape" (a dropped kind word) "above a small blue square".
GRAMMAR = re.compile(f"{phrase(SHAPES + ('shape',))}(?: {alternatives(RELATIONS)} {phrase(SHAPES)})?")


def written_from_prompts(model, samples, seed):
    """Captions per prompt, `samples` each, with image and audio both absent (masked placeholders)."""
    out = {}
    for prompt in PROMPTS:
        absent = {"image": np.zeros((samples, *model.preprocessor.image_size, 3), "float32"),
                  "image_mask": np.zeros(samples, "float32"),
                  "audio": np.zeros((samples, model.preprocessor.audio_length), "float32"),
                  "audio_mask": np.zeros(samples, "float32")}
        out[prompt] = model.generate(absent, prompt=[prompt] * samples, top_p=0.9, seed=seed)
    return out


def without_context(features, captions):
    """A held-out batch with its image and tone masked out: the captions scored as text alone."""
    absent = tf.zeros_like(features["image_mask"]) if "image_mask" in features else tf.zeros(tf.shape(captions)[:1])
    return {**features, "image_mask": absent, "audio_mask": absent}, captions


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1500)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=50, help="captions sampled per prompt")
    args = parser.parse_args()

    import keras

    data = {"task": "captioning", "with_audio": True}
    rows = []
    for context_dropout in (0.0, 0.1):
        keras.utils.set_random_seed(0)
        train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, shuffle=True, **data)
        held_out = kerasmm.data.shapes(num_examples=args.held_out, batch_size=100, split="test", **data)
        model = kerasmm.zoo.get("crossmodal_lm", context_dropout=context_dropout)
        start = time.perf_counter()
        model.fit(train, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        scores = model.evaluate(held_out, verbose=0, return_dict=True)
        text_only = model.evaluate(held_out.map(without_context), verbose=0, return_dict=True)
        written = written_from_prompts(model, args.samples, seed=1)
        captions = [c for cs in written.values() for c in cs]
        grammatical = np.mean([bool(GRAMMAR.fullmatch(c)) for c in captions])
        prompted = np.mean([c.startswith(p) for p, cs in written.items() for c in cs])
        rows.append((context_dropout, seconds, scores, text_only["loss"], grammatical, prompted, written))

    print(f"\ncrossmodal_lm on shapes captions with tones: {args.examples} examples, {args.epochs} epochs, batch "
          f"{args.batch_size}; held out: {args.held_out} test-split examples (greedy); from prompts alone: "
          f"{args.samples} top-p 0.9 samples for each of {len(PROMPTS)} prompts")
    print("| context_dropout | training s | BLEU-4 | CIDEr-D | loss | text alone: loss "
          "| from a prompt alone: grammatical | begins with it |")
    print("|---|---|---|---|---|---|---|---|")
    for context_dropout, seconds, scores, text_loss, grammatical, prompted, _ in rows:
        print(f"| {context_dropout} | {seconds:.0f} | {scores['bleu_4']:.3f} | {scores['cider_d']:.3f} "
              f"| {scores['loss']:.3f} | {text_loss:.3f} | {grammatical:.3f} "
              f"| {prompted:.3f} |")
    for context_dropout, *_, written in rows:
        for prompt, captions in written.items():
            print(f"  context_dropout {context_dropout}, {prompt!r:32} -> {captions[:2]}")
    without, with_dropout = rows[0][3], rows[1][3]
    print(f"held-out loss from text alone, context_dropout 0 / 0.1: {without:.3f} / {with_dropout:.3f} = "
          f"{without / with_dropout:.2f}x")


if __name__ == "__main__":
    main()
