"""Learning check for `dual_encoder` on the embedded shapes data.

Trains the zoo entry on shapes captions (image + full caption pairs), then
ranks held-out images for held-out captions and reports text→image and
image→text recall@1/5 against chance. Captions repeat across images (a
"small red circle" is drawn many times), so a caption's match counts as
found when the retrieved image has the same caption.

Run: `.venv/bin/python zoo/dual_encoder/learning_check.py [--epochs 6] [--examples 4000]`
"""

import argparse
import time

import numpy as np

import kerasmm


def recall_at(similarity, relevant, k):
    """Share of queries (rows) whose top-k columns hold a relevant one."""
    top = np.argsort(-similarity, axis=1)[:, :k]
    return float(np.mean([relevant[i, top[i]].any() for i in range(len(top))]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, task="captioning",
                                shuffle=True)
    features, captions = kerasmm.data.shapes_arrays(num_examples=args.held_out, task="captioning", split="test")
    model = kerasmm.zoo.get("dual_encoder")
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start

    images = model.encode_image(features["image"])
    texts = model.encode_text(list(captions))
    similarity = texts @ images.T
    same_caption = np.asarray(captions)[:, None] == np.asarray(captions)[None, :]
    chance = float(same_caption.sum(axis=1).mean() / len(captions))
    results = {
        "text→image R@1": recall_at(similarity, same_caption, 1),
        "text→image R@5": recall_at(similarity, same_caption, 5),
        "image→text R@1": recall_at(similarity.T, same_caption, 1),
        "image→text R@5": recall_at(similarity.T, same_caption, 5),
    }
    print(f"\ndual_encoder on shapes: {args.examples} training pairs, {args.epochs} epochs, "
          f"batch {args.batch_size}, {seconds:.0f} s; {args.held_out} held-out pairs")
    for name, value in results.items():
        print(f"  {name}: {value:.3f}")
    print(f"  chance R@1 (share of held-out images with the query's caption): {chance:.3f}")
    print(f"ratio: text→image R@1 / chance = {results['text→image R@1'] / chance:.1f}x")


if __name__ == "__main__":
    main()
