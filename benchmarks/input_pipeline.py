"""Input pipeline throughput against what a train step consumes.

Writes JPEG files (shapes drawings, upscaled to `--source-size` pixels) with
a JSONL manifest, then measures, in one process:

1. the pipeline alone: `from_manifest` (read, decode, resize) + the model's
   preprocessor (tokenise, scale), images/s at each image size;
2. the model alone: `weighted_sum_classifier` train steps on one cached,
   preprocessed batch, images/s;
3. `fit` end to end on the real pipeline, images/s, and with `cache=True`
   (decoded images kept in memory after the first epoch).

On 2 cores the pipeline and the train step share the same cores, so the
end-to-end rate without a cache is bounded by 1 / (1/pipeline + 1/model)
(both rates measured with both cores); the table prints that bound.

Run: `python benchmarks/input_pipeline.py [--images 512] [--batch-size 64]`.
The last line is the ratio pipeline ÷ model consumption at 64×64.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasmm  # noqa: E402


def write_dataset(folder, num_images, source_size):
    features, labels = kerasmm.data.shapes_arrays(num_examples=num_images, image_size=64, seed=0)
    images = tf.image.resize(features["image"], (source_size, source_size), method="nearest")
    rows = []
    for i in range(num_images):
        name = f"{i:05d}.jpg"
        tf.io.write_file(os.path.join(folder, name), tf.io.encode_jpeg(tf.cast(images[i], tf.uint8), quality=90))
        rows.append({"image": name, "text": str(features["text"][i]), "label": int(labels[i])})
    path = os.path.join(folder, "manifest.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def images_per_second(dataset, epochs):
    """Throughput of iterating `dataset` (after one warm-up epoch)."""
    for _ in dataset:
        pass
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for _, targets in dataset:
            count += int(targets.shape[0])
    return count / (time.perf_counter() - start)


def fit_images_per_second(model, dataset, steps, batch_size, repeats=2):
    """Best of `repeats` timed `fit` runs of `steps` steps (the machine is noisy)."""
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        best = max(best, steps * batch_size / (time.perf_counter() - start))
    return best


def measure(manifest, image_size, batch_size, epochs):
    model = kerasmm.zoo.get("weighted_sum_classifier", image_size=image_size)
    raw = kerasmm.data.from_manifest(manifest, image_size=image_size, batch_size=batch_size)
    pipeline = raw.map(lambda x, y: model.preprocessor(x, y), num_parallel_calls=tf.data.AUTOTUNE)
    pipeline_rate = images_per_second(pipeline, epochs)
    cached = pipeline.take(1).cache().repeat()
    model.preprocessor = None  # the cached batch is already preprocessed
    steps = max(4, 2 * len(list(raw)))
    model_rate = fit_images_per_second(model, cached, steps, batch_size)
    model = kerasmm.zoo.get("weighted_sum_classifier", image_size=image_size)
    fit_rate = fit_images_per_second(model, raw.repeat(), steps, batch_size)
    cached_raw = kerasmm.data.from_manifest(manifest, image_size=image_size, batch_size=batch_size, cache=True)
    model = kerasmm.zoo.get("weighted_sum_classifier", image_size=image_size)
    cached_fit_rate = fit_images_per_second(model, cached_raw.repeat(), steps, batch_size)
    return pipeline_rate, model_rate, fit_rate, cached_fit_rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    args = parser.parse_args()
    print(f"kerasmm {kerasmm.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs; "
          f"{args.images} JPEGs of {args.source_size}x{args.source_size}, batch {args.batch_size}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        manifest = write_dataset(folder, args.images, args.source_size)
        print(f"{'size':>5} {'pipeline':>9} {'model':>7} {'fit':>7} {'fit cached':>11} "
              f"{'pipeline/model':>15} {'fit/model':>10} {'bound':>6} {'cached/model':>13}   (images/s)")
        for size in args.sizes:
            pipeline_rate, model_rate, fit_rate, cached_rate = measure(manifest, size, args.batch_size, args.epochs)
            results[size] = (pipeline_rate, model_rate, fit_rate, cached_rate)
            bound = 1 / (1 / pipeline_rate + 1 / model_rate) / model_rate
            print(f"{size:>5} {pipeline_rate:>9.0f} {model_rate:>7.0f} {fit_rate:>7.0f} {cached_rate:>11.0f} "
                  f"{pipeline_rate / model_rate:>14.2f}x {fit_rate / model_rate:>9.2f}x {bound:>5.2f}x "
                  f"{cached_rate / model_rate:>12.2f}x", flush=True)
    size = 64 if 64 in results else args.sizes[0]
    pipeline_rate, model_rate, fit_rate, cached_rate = results[size]
    print(f"ratio at {size}x{size}: pipeline/model = {pipeline_rate / model_rate:.2f}x, "
          f"fit end-to-end/model-only = {fit_rate / model_rate:.2f}x ({cached_rate / model_rate:.2f}x cached)")
    return 0 if np.isfinite(pipeline_rate) else 1


if __name__ == "__main__":
    raise SystemExit(main())
