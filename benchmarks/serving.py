"""Serving speed: the exported captioner SavedModel against in-process `Captioner.generate`.

One captioner (the zoo's "captioner": CNN image encoder → 16 context
tokens; decoder width 128, 2 layers, 4 heads, 16 positions; random weights,
dropout off) captions the same shapes images two ways:

- in-process: `model.generate(pixels)` — decoded uint8 pixels in, caption
  strings out: the preprocessor, the cached `generate_function` (XLA when
  the model's `jit_compile` is on, i.e. on a GPU) and `detokenize`.
- exported: `kerasmm.export.saved_model(model, ...)` reloaded with
  `tf.saved_model.load`, `signatures["serving_default"](image_bytes=...)` —
  JPEG bytes in, captions and scores out: decoding, resizing, the same
  decoding loop (no XLA by default, for stock TF Serving), the teacher-forced
  scoring pass and the in-graph detokenisation.
- exported, no scores: the same without the scoring pass (`scores=False`).
- exported, XLA (GPU only): `jit_compile=True`, the loop compiled as in-process.

The end token's embedding row is zeroed, so every run decodes all 15
tokens and the ways compare like with like; the captions of all ways must
be identical (asserted). Latency is the best of `--repeats` calls after a
warm-up (which traces and compiles), the ways called in turn so that a
change in the machine's load hits them alike; throughput is images per
second.

Run: `.venv/bin/python benchmarks/serving.py [--batches 1 16] [--repeats 5]`.
Last line: exported ÷ in-process latency at the largest batch, the export
compiled as the in-process loop is (XLA on a GPU, not on a CPU); target ≤ 1.1.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasmm  # noqa: E402


def build_captioner():
    model = kerasmm.zoo.get("captioner", dropout=0.0)
    embeddings = model.backbone.token_embedding.embeddings
    end = model.preprocessor.end_id
    embeddings.assign(tf.tensor_scatter_nd_update(embeddings, [[end]], tf.zeros((1, embeddings.shape[1]))))
    return model


def best_times(functions, repeats):
    """Best of `repeats` seconds per function, the functions timed in turn (so load drift hits all alike)."""
    for function in functions.values():
        function()  # warm-up: traces and compiles
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = build_captioner()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    ways = {"exported": {}, "exported, no scores": {"scores": False}}
    if gpu:
        ways["exported, XLA"] = {"jit_compile": True}
    root = tempfile.mkdtemp(prefix="kerasmm_serving_")
    served = {}
    for i, (name, options) in enumerate(ways.items()):
        path = kerasmm.export.saved_model(model, os.path.join(root, f"way{i}"), warmup_requests=False, **options)
        served[name] = tf.saved_model.load(path).signatures["serving_default"]

    images = kerasmm.data.shapes_arrays(num_examples=max(args.batches), task="captioning", seed=1)[0]["image"]
    jpegs = np.array([tf.io.encode_jpeg(image, quality=100).numpy() for image in images], dtype=object)
    # In-process inputs: the very pixels the exported model decodes from the JPEGs.
    pixels = np.stack([tf.io.decode_jpeg(data, channels=3).numpy() for data in jpegs])

    device = tf.config.list_physical_devices("GPU")[0].name if gpu else "CPU"
    print(f"captioner: decoder width {model.backbone.hidden_dim}, {model.backbone.num_layers} layers, "
          f"{model.backbone.sequence_length} positions; device {device}; in-process jit_compile "
          f"{bool(model.jit_compile)}; best of {args.repeats}, seconds\n")
    print("| batch | in-process generate | " + " | ".join(ways) + " | exported ÷ in-process |")
    print("|---" * (len(ways) + 3) + "|")
    latency = {}
    for batch in args.batches:
        reference = model.generate(pixels[:batch])
        for name, serve in served.items():
            captions = [c.decode() for c in serve(image_bytes=tf.constant(jpegs[:batch]))["captions"].numpy()]
            assert captions == reference, f"{name} wrote other captions than generate"
        calls = {"in-process": lambda: model.generate(pixels[:batch])}
        for name, serve in served.items():
            calls[name] = lambda serve=serve: serve(image_bytes=tf.constant(jpegs[:batch]))["captions"].numpy()
        times = best_times(calls, args.repeats)
        latency[batch] = times
        print(f"| {batch} | {times['in-process']:.4f} | " + " | ".join(f"{times[n]:.4f}" for n in ways)
              + f" | {times['exported'] / times['in-process']:.2f} |", flush=True)

    small, large = min(args.batches), max(args.batches)
    print(f"\nthroughput, images/s (batch {large} vs batch {small}):\n")
    print("| way | batch " + f"{small} | batch {large} | gain |")
    print("|---|---|---|---|")
    for name in ["in-process", *ways]:
        low, high = small / latency[small][name], large / latency[large][name]
        print(f"| {name} | {low:.0f} | {high:.0f} | {high / low:.1f}× |")
    # Like for like: the export whose decoding loop is compiled as the in-process one is.
    same = "exported, XLA" if bool(model.jit_compile) and "exported, XLA" in ways else "exported"
    ratio = latency[large][same] / latency[large]["in-process"]
    print(f"\nratio: {same} SavedModel latency / in-process generate at batch {large}: {ratio:.2f} "
          f"(target <= 1.1)")


if __name__ == "__main__":
    main()
