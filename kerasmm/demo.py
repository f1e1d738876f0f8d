"""The main job, `make demo`: the user's day on the embedded shapes data, in about five minutes.

1. trains the `captioner` and scores greedy captions of held-out images
   (BLEU-4, CIDEr-D, with the model's graph-mode metrics);
2. trains the `dual_encoder` and ranks held-out images for held-out
   captions (recall@1 both ways) and draws a retrieval contact sheet;
3. exports the captioner as a TF Serving SavedModel (`demo_out/captioner/1`),
   writes a few held-out images as JPEG files and captions them through the
   exported model alone (its `serving_default` on raw JPEG bytes);
4. writes `demo_out/report.html`: the images with their captions, the loss
   curves, the contact sheet and the numbers; the pictures also as PNG files
   (`captions.png`, `losses.png`, `retrieval.png`).

Run: `python -m kerasmm.demo [--examples N] [--epochs N] [--out DIR]`.
"""

import argparse
import html
import json
import os
import time

import numpy as np

import kerasmm

QUERIES = ("a large red circle", "a small blue square", "a large green triangle")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerasmm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="training examples per model (default 3000)")
    parser.add_argument("--test-examples", type=int, default=300, help="held-out examples (default 300)")
    parser.add_argument("--epochs", type=int, default=10, help="captioner epochs (default 10)")
    parser.add_argument("--retrieval-epochs", type=int, default=6, help="dual encoder epochs (default 6)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=8, help="JPEG files captioned by the exported model")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    parser.add_argument("--tiny", action="store_true", help="the tiny_ zoo twins (a quick check of the pipeline)")
    args = parser.parse_args(argv)
    for name in ("examples", "test_examples", "epochs", "retrieval_epochs", "batch_size", "images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def train_captioner(args, verbose):
    print("\n== captioner: image → caption", flush=True)
    train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, task="captioning",
                                shuffle=True, seed=args.seed)
    held_out = kerasmm.data.shapes(num_examples=args.test_examples, batch_size=100, task="captioning",
                                   split="test", seed=args.seed)
    model = kerasmm.zoo.get(("tiny_" if args.tiny else "") + "captioner")
    start = time.perf_counter()
    history = model.fit(train, epochs=args.epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    scores = model.evaluate(held_out, verbose=0, return_dict=True)
    print(f"   {seconds:.0f} s; held-out BLEU-4 {scores['bleu_4']:.3f}, CIDEr-D {scores['cider_d']:.3f}", flush=True)
    return model, history.history, scores, seconds


def recall_at_1(similarity, relevant):
    return float(np.mean(relevant[np.arange(len(similarity)), np.argmax(similarity, axis=1)]))


def train_dual_encoder(args, verbose, out):
    print("\n== dual_encoder: captions ↔ images", flush=True)
    train = kerasmm.data.shapes(num_examples=args.examples, batch_size=args.batch_size, task="captioning",
                                shuffle=True, seed=args.seed)
    features, captions = kerasmm.data.shapes_arrays(num_examples=args.test_examples, task="captioning",
                                                    split="test", seed=args.seed)
    model = kerasmm.zoo.get(("tiny_" if args.tiny else "") + "dual_encoder")
    start = time.perf_counter()
    history = model.fit(train, epochs=args.retrieval_epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    images = model.encode_image(features["image"])
    similarity = model.encode_text(list(captions)) @ images.T
    # Captions repeat across drawings: an image with the query's caption is a match.
    same = np.asarray(captions)[:, None] == np.asarray(captions)[None, :]
    scores = {"text→image R@1": recall_at_1(similarity, same), "image→text R@1": recall_at_1(similarity.T, same),
              "chance R@1": float(same.sum(axis=1).mean() / len(captions))}
    print(f"   {seconds:.0f} s; held-out text→image R@1 {scores['text→image R@1']:.3f}, image→text R@1 "
          f"{scores['image→text R@1']:.3f} (chance {scores['chance R@1']:.3f})", flush=True)
    query_similarity = model.encode_text(list(QUERIES)) @ images.T
    tiles, labels = [], []
    for query, row in zip(QUERIES, query_similarity):
        for rank, index in enumerate(np.argsort(-row)[:5]):
            tiles.append(features["image"][index])
            labels.append(f"{query}\n#{rank + 1} {row[index]:.2f}" if rank == 0 else f"#{rank + 1} {row[index]:.2f}")
    sheet = kerasmm.search.contact_sheet(tiles, labels, os.path.join(out, "retrieval.png"), columns=5)
    return history.history, scores, seconds, sheet


def caption_through_export(model, args, out):
    """Export the captioner, write JPEGs, caption them with the SavedModel alone; `(rows, seconds)`."""
    import tensorflow as tf
    from PIL import Image

    print("\n== export: TF Serving SavedModel, then captions from JPEG bytes", flush=True)
    start = time.perf_counter()
    version_dir = kerasmm.export.saved_model(model, os.path.join(out, "captioner"), overwrite=True)
    features, references = kerasmm.data.shapes_arrays(num_examples=args.images, image_size=128,
                                                      task="captioning", split="test", seed=args.seed + 1)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    paths = []
    for i, image in enumerate(features["image"]):
        path = os.path.join(out, "images", f"held_out_{i}.jpg")
        Image.fromarray(image).save(path, quality=95)
        paths.append(path)
    served = tf.saved_model.load(version_dir).signatures["serving_default"]
    request = tf.constant([open(p, "rb").read() for p in paths])
    response = served(image_bytes=request)
    seconds = time.perf_counter() - start
    rows = [
        {"image": os.path.relpath(p, out), "caption": c.decode("utf-8"), "score": float(s), "reference": str(r)}
        for p, c, s, r in zip(paths, response["captions"].numpy(), response["scores"].numpy(), references)
    ]
    kerasmm.search.contact_sheet(list(features["image"]), [f"{r['caption']}\n(reference: {r['reference']})"
                                                           for r in rows], os.path.join(out, "captions.png"), columns=4)
    print(f"   {os.path.relpath(version_dir)} ({seconds:.0f} s with the requests)")
    for row in rows:
        print(f"   {row['image']}: {row['caption']!r}  (reference {row['reference']!r})")
    return rows, version_dir


def plot_losses(histories, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3))
    FigureCanvasAgg(figure)
    for axis, (name, history) in zip(figure.subplots(1, len(histories)), histories.items()):
        axis.plot(range(1, len(history["loss"]) + 1), history["loss"], marker="o")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.set_ylabel("training loss")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def write_report(out, numbers, rows, export_dir):
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in numbers.items())
    cards = "".join(
        f'<figure><img src="{html.escape(r["image"])}" width="128"><figcaption><b>{html.escape(r["caption"])}'
        f'</b><br><small>reference: {html.escape(r["reference"])}<br>mean log-prob {r["score"]:.2f}</small>'
        "</figcaption></figure>"
        for r in rows
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kerasmm demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} figure{{display:inline-block;width:150px;
margin:.5em;vertical-align:top}} td{{padding:.2em 1em}} img{{image-rendering:pixelated}}</style></head>
<body><h1>kerasmm demo</h1>
<h2>Captions from the exported SavedModel</h2>
<p>Held-out JPEG files, captioned by <code>{html.escape(os.path.relpath(export_dir, out))}</code>
(<code>serving_default</code> on the raw bytes: decoding, resizing, the encoder, KV-cached greedy
decoding and detokenisation all in the graph).</p>{cards}
<h2>Numbers</h2><table>{table}</table>
<h2>Training loss</h2><img src="losses.png">
<h2>Retrieval</h2><p>Top five held-out images for each query, by the dual encoder.</p>
<img src="retrieval.png" width="700">
</body></html>
"""
    path = os.path.join(out, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def main(argv=None):
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    verbose = 0 if args.quiet else 2
    start = time.perf_counter()
    captioner, caption_history, caption_scores, caption_seconds = train_captioner(args, verbose)
    retrieval_history, retrieval_scores, retrieval_seconds, _ = train_dual_encoder(args, verbose, args.out)
    rows, export_dir = caption_through_export(captioner, args, args.out)
    plot_losses({"captioner": caption_history, "dual_encoder": retrieval_history},
                os.path.join(args.out, "losses.png"))
    numbers = {
        "captioner held-out BLEU-4": f"{caption_scores['bleu_4']:.3f}",
        "captioner held-out CIDEr-D": f"{caption_scores['cider_d']:.3f}",
        **{f"dual_encoder held-out {k}": f"{v:.3f}" for k, v in retrieval_scores.items()},
        "training examples per model": args.examples,
        "held-out examples": args.test_examples,
        "captioner training (s)": f"{caption_seconds:.0f}",
        "dual_encoder training (s)": f"{retrieval_seconds:.0f}",
        "whole demo (s)": f"{time.perf_counter() - start:.0f}",
    }
    with open(os.path.join(args.out, "numbers.json"), "w") as f:
        json.dump(numbers, f, indent=1, ensure_ascii=False)
    report = write_report(args.out, numbers, rows, export_dir)
    print(f"\nreport: {report}")
    print(f"ratio: held-out BLEU-4 {caption_scores['bleu_4']:.3f}, text→image R@1 / chance "
          f"{retrieval_scores['text→image R@1'] / retrieval_scores['chance R@1']:.1f}x")
    return numbers


if __name__ == "__main__":
    main()
