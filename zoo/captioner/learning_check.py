"""Learning check for `captioner` on the embedded shapes data.

Trains the zoo entry on shapes captions, then scores greedy captions of
held-out images (the "test" split, never seen in training) with the
model's own graph-mode metrics through `model.evaluate` (BLEU-4, CIDEr-D),
and prints a few captions next to their references. Then it prompts the
same model (`generate(images, prompt=...)`) and counts the captions that
begin with the prompt and go on to name an object of the image: the colour
and shape words after the prompt are a "colour shape" pair of the reference.

Run: `.venv/bin/python zoo/captioner/learning_check.py [--examples 4000] [--epochs 10]`
"""

import argparse
import time

import numpy as np

import kerasmm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="captioner")
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, task="captioning",
                                shuffle=True)
    held_out = kerasmm.data.shapes(num_examples=args.held_out, batch_size=100, task="captioning", split="test")
    model = kerasmm.zoo.get(args.entry)
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    scores = model.evaluate(held_out, verbose=0, return_dict=True)

    features, references = kerasmm.data.shapes_arrays(num_examples=args.held_out, task="captioning", split="test")
    captions = model.generate(features["image"])
    exact = float(np.mean([c == r for c, r in zip(captions, references)]))
    print(f"\n{args.entry} on shapes: {args.examples} training captions, {args.epochs} epochs, batch "
          f"{args.batch_size}, {seconds:.0f} s of training; {args.held_out} held-out images, greedy decoding")
    print(f"  BLEU-4 {scores['bleu_4']:.3f}   CIDEr-D {scores['cider_d']:.3f}   exact match {exact:.3f}")
    for caption, reference in list(zip(captions, references))[:5]:
        print(f"  {caption!r:55} reference {reference!r}")
    print(f"  no prompt: {names_an_object(captions, references, 2):.3f} name an object of the image after their "
          "first two words")
    for prompt in ("a large", "a small"):
        prompted = model.generate(features["image"], prompt=prompt)
        begins = float(np.mean([c.startswith(prompt + " ") for c in prompted]))
        fits = [f"{prompt} " in f"{r} " for r in references]  # images that hold an object the prompt describes
        named = names_an_object(prompted, references, 2, prompt)
        print(f"  prompt {prompt!r}: {begins:.3f} begin with it; {names_an_object(prompted, references, 2):.3f} "
              f"then name an object of the image, {named:.3f} of the {sum(fits)} images with a "
              f"{prompt.split()[-1]} object name one; e.g. {prompted[0]!r} (reference {references[0]!r})")


def names_an_object(captions, references, skip, prefix=None):
    """The share of captions whose two words after the first `skip` are a "colour shape" pair of the reference.

    With `prefix`, only the references holding it count, and the pair must follow it there: "a large" +
    "red circle" must be "a large red circle" in the reference.
    """
    hits = []
    for caption, reference in zip(captions, references):
        pair = " ".join(caption.split()[skip: skip + 2])
        if prefix is None:
            hits.append(f" {pair} " in f" {reference} ")
        elif f"{prefix} " in f"{reference} ":
            hits.append(f"{prefix} {pair} " in f"{reference} ")
    return float(np.mean(hits)) if hits else float("nan")


if __name__ == "__main__":
    main()
