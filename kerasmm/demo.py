"""The main job, `make demo`: fusion beats either modality alone, on the embedded shapes data.

Trains `weighted_sum_classifier` on image + caption, and the same
architecture on the image alone and on the caption alone; prints the
held-out accuracy of all three; then saves the fused model to a `.keras`
file, reloads it with `safe_mode=True` and checks its outputs are unchanged.

Run: `python -m kerasmm.demo [--epochs N] [--examples N] [--out DIR]`.
"""

import argparse
import os
import sys
import time

import numpy as np

import kerasmm

MODEL = "weighted_sum_classifier"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerasmm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="training examples (default 3000)")
    parser.add_argument("--test-examples", type=int, default=1000, help="held-out examples (default 1000)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per model (default 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train_and_evaluate(label, overrides, train, test, epochs, verbose):
    print(f"\n== {label}: {MODEL} {overrides or ''}".rstrip(), flush=True)
    model = kerasmm.zoo.get(MODEL, **overrides)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    print(f"   held-out accuracy {accuracy:.3f}  (trained in {seconds:.0f} s)", flush=True)
    return model, accuracy


def check_keras_round_trip(model, test, path):
    import keras

    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    expected = model.predict(test, verbose=0)
    got = reloaded.predict(test, verbose=0)
    max_diff = float(np.max(np.abs(expected - got)))
    return type(reloaded).__name__, max_diff


def main(argv=None):
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    shapes = dict(image_size=32, batch_size=args.batch_size, seed=args.seed)
    train = kerasmm.data.shapes(num_examples=args.examples, split="train", shuffle=True, **shapes)
    test = kerasmm.data.shapes(num_examples=args.test_examples, split="test", **shapes)
    print(
        f"kerasmm {kerasmm.__version__} demo: shapes classification (which shape does the caption "
        f"describe?), {args.examples} training / {args.test_examples} held-out examples. "
        "Captions sometimes say only 'shape', images sometimes hold two shapes: "
        "each modality alone is only partly informative."
    )
    verbose = 1 if sys.stdout.isatty() else 2
    fused, fused_acc = train_and_evaluate("image + text (fused)", {}, train, test, args.epochs, verbose)
    _, image_acc = train_and_evaluate("image only", {"encoders": {"text": None}}, train, test, args.epochs, verbose)
    _, text_acc = train_and_evaluate("text only", {"encoders": {"image": None}}, train, test, args.epochs, verbose)

    weights = fused.backbone.fusion.modality_weights()
    path = os.path.join(args.out, f"{MODEL}.keras")
    loaded_type, max_diff = check_keras_round_trip(fused, test, path)

    print("\nHeld-out accuracy")
    print(f"  image + text (weighted sum): {fused_acc:.3f}")
    print(f"  image only:                  {image_acc:.3f}")
    print(f"  text only:                   {text_acc:.3f}")
    print("  learned fusion weights:      " + ", ".join(f"{m}={w:.2f}" for m, w in weights.items()))
    print(f"Saved {path}; reloaded with safe_mode=True as {loaded_type}; max output difference {max_diff:.2e}")
    ok = fused_acc > max(image_acc, text_acc) and max_diff <= 1e-5
    print("OK: the fused model beats both single-modality baselines." if ok else "FAILED: see above.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
