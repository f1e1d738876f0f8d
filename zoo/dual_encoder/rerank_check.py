"""Re-ranking check for `dual_encoder` with its image–text matching head (`matching_layers=1`).

Trains the zoo entry with the matching head on shapes captions (image + full
caption pairs), then ranks held-out images (the "test" split) for their
captions: text→image recall@1/5 of the dual encoder's cosine similarity
alone, and after each caption's top `--rerank` images are re-ranked by the
head (`DualEncoder.match`). Captions repeat across images, so a retrieved
image counts when it has the query's caption (as in `learning_check.py`).
`--baseline` also trains the plain entry (no head) for the same epochs.

Run: `.venv/bin/python zoo/dual_encoder/rerank_check.py [--epochs 6] [--examples 4000] [--rerank 10]`
"""

import argparse
import time

import numpy as np

import kerasmm


def recall_at(order, relevant, k):
    """Share of queries (rows) whose first k columns of `order` hold a relevant one."""
    return float(np.mean([relevant[i, order[i, :k]].any() for i in range(len(order))]))


def train(entry, args, **overrides):
    import keras

    keras.utils.set_random_seed(0)
    data = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, task="captioning",
                               shuffle=True)
    model = kerasmm.zoo.get(entry, **overrides)
    start = time.perf_counter()
    model.fit(data, epochs=args.epochs, verbose=2)
    return model, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="dual_encoder")
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rerank", type=int, default=10, help="images per caption the head re-ranks")
    parser.add_argument("--matching-weight", type=float, default=1.0)
    parser.add_argument("--baseline", action="store_true", help="also train the entry without the head")
    args = parser.parse_args()

    features, captions = kerasmm.data.shapes_arrays(num_examples=args.held_out, task="captioning", split="test")
    captions = list(captions)
    same_caption = np.asarray(captions)[:, None] == np.asarray(captions)[None, :]
    chance = float(same_caption.sum(axis=1).mean() / len(captions))

    model, seconds = train(args.entry, args, matching_layers=1, matching_weight=args.matching_weight)
    similarity = model.encode_text(captions) @ model.encode_image(features["image"]).T
    order = np.argsort(-similarity, axis=1, kind="stable")
    top = order[:, :args.rerank]
    pairs = np.stack([np.repeat(np.arange(len(captions)), args.rerank), top.reshape(-1)], axis=1)
    logits = model.match(captions, features["image"], pairs=pairs).reshape(top.shape)
    reranked = np.concatenate([np.take_along_axis(top, np.argsort(-logits, axis=1, kind="stable"), axis=1),
                               order[:, args.rerank:]], axis=1)

    print(f"\n{args.entry} with matching_layers=1 on shapes: {args.examples} training pairs, {args.epochs} epochs, "
          f"batch {args.batch_size}, {seconds:.0f} s of training; {args.held_out} held-out pairs, "
          f"top {args.rerank} re-ranked")
    results = {}
    for name, ranking in (("dual encoder alone", order), ("re-ranked by the head", reranked)):
        results[name] = [recall_at(ranking, same_caption, k) for k in (1, 5)]
        print(f"  text→image {name}: R@1 {results[name][0]:.3f}  R@5 {results[name][1]:.3f}")
    if args.baseline:
        plain, plain_seconds = train(args.entry, args)
        plain_order = np.argsort(-(plain.encode_text(captions) @ plain.encode_image(features["image"]).T), axis=1,
                                 kind="stable")
        print(f"  text→image {args.entry} without the head ({plain_seconds:.0f} s): "
              f"R@1 {recall_at(plain_order, same_caption, 1):.3f}  R@5 {recall_at(plain_order, same_caption, 5):.3f}")
    print(f"  chance R@1 (share of held-out images with the query's caption): {chance:.3f}")
    before, after = results["dual encoder alone"][0], results["re-ranked by the head"][0]
    print(f"ratio: text→image R@1 re-ranked / dual encoder alone = {after / max(before, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
