"""Learning check for `text_to_image` on the embedded shapes data.

Trains the zoo entry on shapes captions (caption → picture), then reports the
held-out pixel MSE against two references computed from the training set:
the mean picture (what a model ignoring the text gets) and, on held-out
single-shape captions ("a small red circle", 48 of them, each drawn dozens
of times in training), each caption's mean training picture (about the best
a squared-error model can do, since positions are not in the caption). It
also generates "a large red circle" and "a large blue circle" and reports how
much redder the first one is, as mean(R - B) over the picture, next to the
same measure on the mean training pictures of those two captions.

Run: `.venv/bin/python zoo/text_to_image/learning_check.py [--epochs 5] [--examples 2000]`
"""

import argparse
import collections
import time

import numpy as np

import kerasmm

PROMPTS = ("a large red circle", "a large blue circle")


def redness(image):
    """mean(R - B) of float images in [0, 1]: 0 on the grey background, ±0.7 inside a red / blue shape."""
    return float(np.mean(image[..., 0] - image[..., 2]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="text_to_image")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    kwargs = dict(task="captioning", image_size=args.image_size)
    train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, shuffle=True, **kwargs)
    validation = kerasmm.data.shapes(num_examples=args.held_out, batch_size=100, split="validation", **kwargs)
    model = kerasmm.zoo.get(args.entry, image_size=args.image_size, learning_rate=args.learning_rate)
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    logs = model.evaluate(validation, verbose=0, return_dict=True)

    features, captions = kerasmm.data.shapes_arrays(num_examples=args.examples, **kwargs)
    pictures = features["image"].astype("float32") / 255.0
    held_features, held_captions = kerasmm.data.shapes_arrays(num_examples=args.held_out, split="validation", **kwargs)
    held = held_features["image"].astype("float32") / 255.0
    rows = collections.defaultdict(list)
    for i, caption in enumerate(captions):
        rows[caption].append(i)
    by_caption = {caption: pictures[index].mean(axis=0) for caption, index in rows.items()}
    single = [i for i, caption in enumerate(held_captions) if len(caption.split()) == 4 and caption in by_caption]
    mean_mse = float(np.mean((held - pictures.mean(axis=0)) ** 2))
    oracle_mse = float(np.mean([(held[i] - by_caption[held_captions[i]]) ** 2 for i in single]))
    model_single_mse = float(np.mean((model.generate(list(held_captions[single])) - held[single]) ** 2))

    red, blue = model.generate(list(PROMPTS))
    margin = redness(red) - redness(blue)
    best = redness(by_caption[PROMPTS[0]]) - redness(by_caption[PROMPTS[1]])
    print(f"\n{args.entry} on shapes: {args.examples} training pictures ({args.image_size}x{args.image_size}), "
          f"{args.epochs} epochs, batch {args.batch_size}, Adam {args.learning_rate:g}, {seconds:.0f} s; "
          f"{args.held_out} held-out pictures")
    print(f"  held-out MSE: {logs['loss']:.4f} (MAE {logs['mae']:.4f})")
    print(f"  reference: the mean training picture: {mean_mse:.4f}")
    print(f"  on the {len(single)} held-out single-shape pictures: model {model_single_mse:.4f}, "
          f"each caption's mean training picture {oracle_mse:.4f}, the mean training picture "
          f"{float(np.mean((held[single] - pictures.mean(axis=0)) ** 2)):.4f}")
    print(f"  mean(R - B): {PROMPTS[0]!r} {redness(red):+.3f}, {PROMPTS[1]!r} {redness(blue):+.3f}")
    print(f"  mean R: {red[..., 0].mean():.3f} vs {blue[..., 0].mean():.3f}; "
          f"mean B: {red[..., 2].mean():.3f} vs {blue[..., 2].mean():.3f}")
    print(f"ratio: red-vs-blue margin {margin:.3f} / best possible {best:.3f} = {margin / best:.2f}")


if __name__ == "__main__":
    main()
