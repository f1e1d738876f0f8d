"""Small real data: what the zoo's default entries learn in a fixed CPU budget, on items they never saw.

The sets are built from Debian packages by `benchmarks/sets/real_data_sets.py`
(app icons with their applications' summaries, Open Clip Art drawings with
their titles, Oxygen theme icons with their names; 64×64 pictures, a fixed
20 % of items held out). Each model is built by the one-call route,
`kerasmm.zoo.get(entry, data=train)` (classes, vocabulary, text length and
image size from the data), trained with `fit` until
`--budget` seconds of wall time on this machine have passed (checked after
every step), then scored on the held-out items:

- classification (`weighted_sum_classifier`: image + caption → category):
  accuracy of the fused model, of the same entry with the image encoder
  only and with the text encoder only, each over `--seeds` seeds;
- retrieval (`dual_encoder`, trained on every caption of the training
  items): recall@1/5/10 text → image over the held-out pictures and image →
  text over all their captions, each ÷ the recall of a random ranking;
- captioning (`captioner`, every caption of the training items): BLEU-2 and
  CIDEr-D of greedy captions against every caption of a held-out picture,
  beside a nearest-neighbour baseline: the first caption of the training
  picture closest in pixels (64×64 colour, centred, unit length). Both
  sides are scored lower-case, as words (punctuation dropped), with
  `kerasmm.metrics.caption_scores`.

theme_icons is not scored for classification: its names give the category
away (`UNSCORED`).

Run: `.venv/bin/python benchmarks/real_data.py [--sets app_icons clipart
theme_icons] [--families classification retrieval captioning] [--budget 180]
[--seeds 3] [--first-seed 0] [--overrides JSON] [--root DIR]` (builds the
sets first, with apt, if DIR lacks them; about (3 × seeds + 2) × budget per
set). `--overrides` tries a setting on real data, e.g. `--families
captioning --overrides '{"label_smoothing": 0.1}'`. The last line gives, for each
set, fused accuracy ÷ the best single modality's, recall@5 ÷ chance both
ways and captioner BLEU-2 ÷ the baseline's.
"""

import argparse
import json
import math
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasmm  # noqa: E402
from kerasmm.metrics import caption_scores  # noqa: E402
from kerasmm.metrics.retrieval import paired_retrieval_scores  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "sets"))
import real_data_sets  # noqa: E402

IMAGE_SIZE = 64
BATCH_SIZE = 32
KS = (1, 5, 10)
CLASSIFIER = "weighted_sum_classifier"
VARIANTS = {"fused": {}, "image only": {"encoders": {"text": None}}, "text only": {"encoders": {"image": None}}}
# theme_icons' file names give their category away (actions/, devices/, ...): a classifier's caption-only
# score there says nothing, so it is scored for retrieval and captioning only.
UNSCORED = {"classification": ("theme_icons",)}


class TimeBudget(keras.callbacks.Callback):
    """Stop `fit` after the step that passes `seconds` of wall time since training began."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.perf_counter() - self.start >= self.seconds:
            self.model.stop_training = True


def read(set_dir, manifest, target, seed=0, shuffle=False, keep=("image", "text")):
    """A kerasmm reader's dataset of `manifest` with only the `keep` features (the sets carry speech too)."""
    dataset = kerasmm.data.from_manifest(os.path.join(set_dir, manifest), target=target, image_size=IMAGE_SIZE,
                                         batch_size=BATCH_SIZE, shuffle=shuffle, seed=seed, cache=True)
    names = getattr(dataset, "class_names", None)
    dataset = dataset.map(lambda features, targets: ({k: v for k, v in features.items() if k in keep}, targets))
    if names is not None:
        dataset.class_names = names
    return dataset


def train(entry, data, budget, seed, **overrides):
    """`(model, steps)`: `zoo.get(entry, data=data)` fitted for `budget` seconds."""
    keras.utils.set_random_seed(seed)
    model = kerasmm.zoo.get(entry, data=data, **overrides)
    clock = TimeBudget(budget)
    model.fit(data, epochs=100_000, verbose=0, callbacks=[clock])
    return model, clock.steps


def classification(set_dir, budget, seeds, overrides=None):
    rows = {}
    for name, variant in VARIANTS.items():
        settings = {**(overrides or {}), **variant}
        if "encoders" in variant and "encoders" in (overrides or {}):  # the variant removes one of the given towers
            settings["encoders"] = {**overrides["encoders"], **variant["encoders"]}
        accuracies = []
        for seed in seeds:
            data = read(set_dir, "train.jsonl", "label", seed=seed, shuffle=True)
            model, steps = train(CLASSIFIER, data, budget, seed, **settings)
            accuracy = model.evaluate(read(set_dir, "test.jsonl", "label"), return_dict=True, verbose=0)["accuracy"]
            accuracies.append(accuracy)
            print(f"  {name}, seed {seed}: accuracy {accuracy:.3f} ({steps} steps)", flush=True)
        rows[name] = accuracies
    return rows


def items(set_dir, split):
    with open(os.path.join(set_dir, "items.jsonl"), encoding="utf-8") as f:
        return [row for row in map(json.loads, f) if row["split"] == split]


def pictures(set_dir, rows):
    return np.stack([keras.utils.img_to_array(keras.utils.load_img(os.path.join(set_dir, r["image"]))) for r in rows]
                    ).astype("uint8")


def random_recall(positives, total, k):
    """Recall@k of a random ranking: the chance that one of `positives` of `total` candidates is in the top k."""
    return 1.0 - math.comb(total - positives, k) / math.comb(total, k)


def retrieval(set_dir, budget, seed=0, overrides=None):
    model, steps = train("dual_encoder", read(set_dir, "train_captions.jsonl", "text", seed, True), budget, seed,
                         **(overrides or {}))
    held_out = items(set_dir, "test")
    captions = [c for row in held_out for c in row["captions"]]
    groups = np.repeat(np.arange(len(held_out)), [len(row["captions"]) for row in held_out])
    images = model.encode_image(pictures(set_dir, held_out), verbose=0)
    scores = paired_retrieval_scores(images[groups], model.encode_text(captions, verbose=0), groups=groups, ks=KS)
    result = {"steps": steps, "images": len(held_out), "captions": len(captions)}
    for k in KS:
        text_chance = random_recall(1, len(held_out), k)
        image_chance = np.mean([random_recall(len(r["captions"]), len(captions), k) for r in held_out])
        result[f"text_to_image@{k}"] = float(scores[f"text_to_image_recall@{k}"]) / text_chance
        result[f"image_to_text@{k}"] = float(scores[f"image_to_text_recall@{k}"]) / image_chance
    return result


def words(text):
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def nearest_neighbour_captions(set_dir, train_rows, test_rows):
    def unit(rows):
        x = pictures(set_dir, rows).reshape(len(rows), -1).astype("float32")
        x -= x.mean(axis=1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)

    nearest = np.argmax(unit(test_rows) @ unit(train_rows).T, axis=1)
    return [train_rows[i]["captions"][0] for i in nearest]


def captioning(set_dir, budget, seed=0, overrides=None):
    model, steps = train("captioner", read(set_dir, "train_captions.jsonl", "text", seed, True), budget, seed,
                         **(overrides or {}))
    held_out = items(set_dir, "test")
    references = [[words(c) for c in row["captions"]] for row in held_out]
    generated = model.generate(pictures(set_dir, held_out))
    baseline = nearest_neighbour_captions(set_dir, items(set_dir, "train"), held_out)
    ours, theirs = caption_scores(references, [words(c) for c in generated]), caption_scores(
        references, [words(c) for c in baseline])
    print("  samples: " + " | ".join(f"{g!r} ({row['captions'][0]!r})" for g, row in zip(generated[:4], held_out)))
    return {"steps": steps, "bleu_2": ours["bleu_2"], "cider_d": ours["cider_d"], "baseline_bleu_2": theirs["bleu_2"],
            "baseline_cider_d": theirs["cider_d"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.expanduser("~/.cache/kerasmm/real_data_sets"))
    parser.add_argument("--sets", nargs="+", default=sorted(real_data_sets.SETS), choices=sorted(real_data_sets.SETS))
    parser.add_argument("--families", nargs="+", default=["classification", "retrieval", "captioning"],
                        choices=["classification", "retrieval", "captioning"])
    parser.add_argument("--budget", type=float, default=180.0, help="seconds of training per model")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per classifier variant")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the classifiers' seeds start here; the dual encoder and the captioner use it")
    parser.add_argument("--overrides", type=json.loads, default={},
                        help='settings given to zoo.get for every model, as JSON: \'{"label_smoothing": 0.1}\'')
    args = parser.parse_args()
    print(f"budget {args.budget:.0f} s per model, {args.seeds} seed(s) per classifier from seed {args.first_seed}; "
          f"overrides {args.overrides}; {os.cpu_count()} CPUs")
    summary = {}
    for name in args.sets:
        set_dir = os.path.join(args.root, name)
        if not os.path.isfile(os.path.join(set_dir, "items.jsonl")):
            real_data_sets.SETS[name](args.root)
        print(f"\n## {name}", flush=True)
        if "classification" in args.families and name not in UNSCORED["classification"]:
            rows = classification(set_dir, args.budget, range(args.first_seed, args.first_seed + args.seeds),
                                  args.overrides)
            for variant, values in rows.items():
                print(f"| {name} | {variant} | {np.mean(values):.3f} ± {np.std(values):.3f} | "
                      f"{', '.join(f'{v:.3f}' for v in values)} |")
            summary[f"{name} fused ÷ best single accuracy"] = np.mean(rows["fused"]) / max(
                np.mean(rows["image only"]), np.mean(rows["text only"]))
        if "retrieval" in args.families:
            result = retrieval(set_dir, args.budget, args.first_seed, args.overrides)
            print(f"| {name} | retrieval ({result['images']} pictures, {result['captions']} captions, "
                  f"{result['steps']} steps) | " + " | ".join(
                      f"{d} @{k} {result[f'{d}@{k}']:.1f}× chance" for d in ("text_to_image", "image_to_text")
                      for k in KS) + " |")
            summary[f"{name} recall@5 ÷ chance t → i"] = result["text_to_image@5"]
            summary[f"{name} recall@5 ÷ chance i → t"] = result["image_to_text@5"]
        if "captioning" in args.families:
            result = captioning(set_dir, args.budget, args.first_seed, args.overrides)
            print(f"| {name} | captioner ({result['steps']} steps) | BLEU-2 {result['bleu_2']:.4f} | CIDEr-D "
                  f"{result['cider_d']:.4f} | nearest neighbour BLEU-2 {result['baseline_bleu_2']:.4f} | CIDEr-D "
                  f"{result['baseline_cider_d']:.4f} |")
            summary[f"{name} captioner ÷ nearest-neighbour BLEU-2"] = result["bleu_2"] / max(
                result["baseline_bleu_2"], 1e-9)
    print("\nratio: " + ", ".join(f"{k} = {v:.2f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
