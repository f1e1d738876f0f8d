"""Time to the end of a model's first `fit`: optimizer built before tracing against Keras' default.

Keras' TensorFlow trainer creates the optimizer's variables inside the
first traced train step unless a distribution strategy is set, and a
`tf.function` that creates variables is traced twice. kerasmm's tasks build
the optimizer when `fit` starts (`ZooTask._build_optimizer`), so the step is
traced once. Each run here builds a fresh zoo model and times one epoch of
two batches of 8 shapes examples, with the build (kerasmm) and without it
(Keras' default, the build switched off), alternating which goes first;
the figure is the best of `--repeats` runs of each.

Run: `.venv/bin/python benchmarks/first_fit.py [--entries captioner dual_encoder ...] [--repeats 2]`.
The last line: Keras' default ÷ kerasmm over all entries' summed times.
"""

import argparse
import time

import kerasmm
from kerasmm.models import ZooTask

DATA = {"captioning": {"task": "captioning"}, "vqa_generation": {"task": "vqa", "answers": "text"},
        "retrieval": {"task": "captioning"}, "text_to_image": {"task": "captioning"}}


def first_fit_seconds(entry, build):
    model = kerasmm.zoo.get(entry)
    task = kerasmm.zoo.entry(entry).task
    data = kerasmm.data.shapes(num_examples=16, batch_size=8, with_audio="audio" in model.backbone.modalities,
                               **DATA.get(task, {"task": task}))
    original = ZooTask._build_optimizer
    if not build:
        ZooTask._build_optimizer = lambda self: None
    try:
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        return time.perf_counter() - start
    finally:
        ZooTask._build_optimizer = original


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", nargs="+",
                        default=["weighted_sum_classifier", "dual_encoder", "captioner", "text_to_image"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    first_fit_seconds("tiny_weighted_sum_classifier", True)  # TensorFlow's own one-off start-up
    totals = {True: 0.0, False: 0.0}
    print("| entry | kerasmm s | Keras default s | default ÷ kerasmm |\n|---|---|---|---|")
    for entry in args.entries:
        best = {True: float("inf"), False: float("inf")}
        for repeat in range(args.repeats):
            for build in ((True, False) if repeat % 2 == 0 else (False, True)):
                best[build] = min(best[build], first_fit_seconds(entry, build))
        for build in best:
            totals[build] += best[build]
        print(f"| {entry} | {best[True]:.2f} | {best[False]:.2f} | {best[False] / best[True]:.2f}× |", flush=True)
    print(f"first fit, Keras' default ÷ optimizer built first: {totals[False] / totals[True]:.2f}×")


if __name__ == "__main__":
    main()
