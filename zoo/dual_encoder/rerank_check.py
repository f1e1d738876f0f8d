"""Re-ranking check for `dual_encoder` with its image–text matching head (`matching_layers=1`, `matching_negatives=3`).

Trains the zoo entry with the matching head on shapes captions (image + full
caption pairs), then ranks held-out images (the "test" split) for their
captions: text→image recall@1/5 of the dual encoder's cosine similarity
alone, and after each caption's top `--rerank` images are re-ranked by the
head (`DualEncoder.match`). Captions repeat across images, so a retrieved
image counts when it has the query's caption (as in `learning_check.py`).
`--baseline` also trains the plain entry (no head) for the same epochs;
`--matching-swaps N` adds the word-order negatives (`matching_swaps`).

Run: `.venv/bin/python zoo/dual_encoder/rerank_check.py [--epochs 20] [--seed 0] [--held-out 500] [--rerank 3 10]
[--matching-swaps 2]`
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

    keras.utils.set_random_seed(args.seed)
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
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="the starting weights' and the shuffling's seed")
    parser.add_argument("--rerank", type=int, nargs="+", default=[3, 10],
                        help="images per caption the head re-ranks (one or more)")
    parser.add_argument("--matching-weight", type=float, default=1.0)
    parser.add_argument("--matching-layers", type=int, default=1)
    parser.add_argument("--matching-negatives", type=int, default=3)
    parser.add_argument("--matching-swaps", type=int, default=0,
                        help="negatives per pair made by swapping two tokens of its caption")
    parser.add_argument("--baseline", action="store_true", help="also train the entry without the head")
    args = parser.parse_args()

    features, captions = kerasmm.data.shapes_arrays(num_examples=args.held_out, task="captioning", split="test")
    captions = list(captions)
    same_caption = np.asarray(captions)[:, None] == np.asarray(captions)[None, :]
    chance = float(same_caption.sum(axis=1).mean() / len(captions))

    model, seconds = train(args.entry, args, matching_layers=args.matching_layers,
                           matching_weight=args.matching_weight, matching_negatives=args.matching_negatives,
                           matching_swaps=args.matching_swaps)
    similarity = model.encode_text(captions) @ model.encode_image(features["image"]).T
    order = np.argsort(-similarity, axis=1, kind="stable")
    candidates = max(args.rerank)
    top = order[:, :candidates]
    pairs = np.stack([np.repeat(np.arange(len(captions)), candidates), top.reshape(-1)], axis=1)
    logits = model.match(captions, features["image"], pairs=pairs).reshape(top.shape)

    print(f"\n{args.entry} with matching_layers={args.matching_layers}, matching_negatives={args.matching_negatives}, "
          f"matching_swaps={args.matching_swaps} on shapes: {args.examples} training pairs, {args.epochs} epochs, "
          f"batch {args.batch_size}, {seconds:.0f} s of training; {args.held_out} held-out pairs")
    # One shape ("a small red circle") or two ("... left of a large blue square"): the head's errors differ.
    two_shapes = np.array([any(f" {r} " in c for r in kerasmm.data.RELATIONS) for c in captions])

    def report(name, ranking):
        first = same_caption[np.arange(len(captions)), ranking[:, 0]]
        print(f"  text→image {name}: R@1 {first.mean():.3f}  R@5 {recall_at(ranking, same_caption, 5):.3f}  "
              f"(R@1 one shape {first[~two_shapes].mean():.3f}, two shapes {first[two_shapes].mean():.3f})")
        return first.mean()

    before = report("dual encoder alone", order)
    for k in sorted(args.rerank):
        head_order = np.argsort(-logits[:, :k], axis=1, kind="stable")
        reranked = np.concatenate([np.take_along_axis(top[:, :k], head_order, axis=1), order[:, k:]], axis=1)
        after = report(f"top {k} re-ranked by the head", reranked)
    fixed = (~same_caption[np.arange(len(captions)), order[:, 0]]).nonzero()[0][:3]
    for i in fixed:
        print(f"  e.g. {captions[i]!r}: the dual encoder's first image shows {captions[order[i, 0]]!r}, the head's "
              f"first of the top {candidates} {captions[top[i, np.argmax(logits[i])]]!r}")
    if args.baseline:
        plain, plain_seconds = train(args.entry, args)
        plain_order = np.argsort(-(plain.encode_text(captions) @ plain.encode_image(features["image"]).T), axis=1,
                                 kind="stable")
        print(f"  text→image {args.entry} without the head ({plain_seconds:.0f} s): "
              f"R@1 {recall_at(plain_order, same_caption, 1):.3f}  R@5 {recall_at(plain_order, same_caption, 5):.3f}")
    print(f"  chance R@1 (share of held-out images with the query's caption): {chance:.3f}")
    print(f"ratio: text→image R@1 top {sorted(args.rerank)[-1]} re-ranked / dual encoder alone = "
          f"{after / max(before, 1e-9):.2f}x")


if __name__ == "__main__":
    main()
