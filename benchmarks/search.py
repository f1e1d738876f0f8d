"""Gallery search at scale: approximate against exact `kerasmm.search.Index`, and gallery embedding speed.

1. Search, at each gallery size (default 100,000 and 1,000,000 rows): random
   unit vectors of width 256 (seeded; no cluster structure, the hard case
   for approximate search) and `--queries` random unit query vectors, all
   searched in one call with k = 10:
   - exact search (`method="exact"`, numpy, as `Index` searched before):
     queries/s; its answers are the truth;
   - faiss' own brute force (`IndexFlatIP`, BLAS and a heap): queries/s, a
     stronger exact baseline;
   - approximate search (`method="approximate"`) for each `--dims-per-code`:
     build time (training the codebooks, encoding every row), then for each
     `--candidates` value queries/s and recall@10 against exact search;
   - saving the index with its codes and loading it, against building the
     codes again.
   Rates are the best of `--repeats` rounds, each timing every method in
   turn, so a change in the machine's load hits them alike.
2. Embedding a gallery of JPEG files (`--images` files of `--source-size`
   pixels, shapes drawings upscaled) with a zoo dual encoder (`--model`):
   images/s of the streaming `Index.from_images(paths=...)` against the
   per-file route `Index` took before (reproduced below as `per_file_route`:
   header check, eager decode and resize of each file in a thread pool, then
   `encode_image` per batch); best of `--repeats`, alternated. Both must give
   the same embeddings.

Run: `python benchmarks/search.py [--sizes 100000 1000000] [--queries 1000]`.
The last line gives, at the largest size, the fastest approximate setting
with recall@10 >= 0.95 against exact search, and the embedding ratio.
"""

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import faiss  # pip install kerasmm[search]
import numpy as np
import tensorflow as tf

import kerasmm
from kerasmm import search
from kerasmm.data import image_header, image_ops

WIDTH = 256
K = 10
TARGET_RECALL = 0.95


def unit_vectors(rows, width, seed):
    """`[rows, width]` float32 random directions, drawn a million rows at a time (no float64 copy)."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, width), np.float32)
    for start in range(0, rows, 1 << 20):
        part = rng.standard_normal((min(rows - start, 1 << 20), width), dtype=np.float32)
        out[start: start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def recall(found, truth):
    return float(np.mean([len({k for k, _ in a} & {k for k, _ in b}) / len(b) for a, b in zip(found, truth)]))


def measure_search(rows, num_queries, dims_options, candidate_options, repeats, folder):
    """Rows of the search table at one gallery size. Every rate is the best of `repeats` rounds; each round times
    exact search, faiss' brute force and every approximate setting in turn (this machine's load moves)."""
    gallery = unit_vectors(rows, WIDTH, seed=0)
    queries = unit_vectors(num_queries, WIDTH, seed=1)
    exact = search.Index(gallery, method="exact")  # shares `gallery` (float32 already): no copy
    flat = faiss.IndexFlatIP(WIDTH)  # a stronger exact baseline: faiss' brute force (BLAS and a heap, not numpy)
    flat.add(gallery)
    exact.search(queries[:8], k=K)  # warm-up
    indexes, builds = {}, {}
    settings = [(dims, candidates) for dims in dims_options for candidates in candidate_options]
    for dims in dims_options:
        indexes[dims], build = timed(search.Index, gallery, method="approximate", dims_per_code=dims)
        builds[dims] = build
        indexes[dims].search(queries[:8], k=K)
        print(f"{rows:>9,} approximate, dims_per_code={dims}: built in {build:.1f} s "
              f"({WIDTH // dims // 2} bytes a row)", flush=True)
    best = {"exact": 0.0, "flat": 0.0, **{setting: 0.0 for setting in settings}}
    found = {}
    for _ in range(repeats):
        truth, seconds = timed(exact.search, queries, k=K)
        best["exact"] = max(best["exact"], num_queries / seconds)
        _, seconds = timed(flat.search, queries, K)
        best["flat"] = max(best["flat"], num_queries / seconds)
        for dims, candidates in settings:
            indexes[dims].candidates = candidates
            found[dims, candidates], seconds = timed(indexes[dims].search, queries, k=K)
            best[dims, candidates] = max(best[dims, candidates], num_queries / seconds)
    print(f"{rows:>9,} exact: {best['exact']:,.0f} queries/s; faiss brute force (IndexFlatIP): "
          f"{best['flat']:,.0f} queries/s", flush=True)
    results = []
    for dims, candidates in settings:
        qps = best[dims, candidates]
        results.append({"rows": rows, "dims": dims, "candidates": candidates, "build": builds[dims],
                        "qps": qps, "recall": recall(found[dims, candidates], truth), "exact_qps": best["exact"],
                        "flat_qps": best["flat"]})
        print(f"{rows:>9,}   dims_per_code={dims} candidates={candidates:>5}: {qps:>8,.0f} queries/s, "
              f"{qps / best['exact']:6.1f}x exact, {qps / best['flat']:5.1f}x faiss brute force, "
              f"recall@10 {results[-1]['recall']:.4f}", flush=True)
    dims = dims_options[0]
    path = os.path.join(folder, "index.npz")
    _, save = timed(indexes[dims].save, path)
    loaded, load = timed(search.Index.load, path)
    assert loaded.method == "approximate"
    _, load_exact = timed(search.Index.load, path, method="exact")
    size = os.path.getsize(path) / 2**20
    print(f"{rows:>9,}   dims_per_code={dims}: saved in {save:.1f} s ({size:,.0f} MiB); loaded with its codes in "
          f"{load:.1f} s (embeddings alone {load_exact:.1f} s; building the codes again {builds[dims]:.1f} s)",
          flush=True)
    os.remove(path)
    return results


def write_jpegs(folder, num_images, source_size):
    features, _ = kerasmm.data.shapes_arrays(num_examples=num_images, image_size=64, seed=0)
    images = tf.cast(tf.image.resize(features["image"], (source_size, source_size), method="nearest"), tf.uint8)
    paths = []
    for i in range(num_images):
        paths.append(os.path.join(folder, f"{i:05d}.jpg"))
        tf.io.write_file(paths[-1], tf.io.encode_jpeg(images[i], quality=90))
    return paths


def per_file_route(model, paths, batch_size):
    """Embeddings of `paths` as `Index.from_images` computed them before streaming (kerasmm 2026-12-05)."""
    size = search.model_image_size(model)
    converter = model.preprocessor.image_converter
    policy, interpolation = image_ops.policy_of(converter), image_ops.interpolation_of(converter)

    def load(path):
        if image_header.check_image(path) is not None:
            return None
        with open(path, "rb") as f:
            return image_ops.load_image(tf.constant(f.read()), size, policy, interpolation).numpy()

    chunks = []
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), batch_size):
            batch = [image for image in pool.map(load, paths[start: start + batch_size]) if image is not None]
            chunks.append(model.encode_image(np.stack(batch), batch_size=batch_size, verbose=0))
    return np.concatenate(chunks)


def measure_embedding(model_name, num_images, source_size, batch_size, repeats):
    model = kerasmm.zoo.get(model_name)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, num_images, source_size)

        def new_route():
            return search.Index.from_images(model, paths=paths, batch_size=batch_size).embeddings

        def old_route():
            return per_file_route(model, paths, batch_size)

        np.testing.assert_allclose(new_route(), old_route(), atol=1e-4)  # also the warm-up of both
        best = {"streaming": 0.0, "per-file": 0.0}
        for _ in range(repeats):
            for name, route in (("streaming", new_route), ("per-file", old_route)):
                _, seconds = timed(route)
                best[name] = max(best[name], num_images / seconds)
    print(f"embedding {num_images} JPEGs of {source_size}x{source_size} with {model_name} (batch {batch_size}): "
          f"streaming {best['streaming']:.0f} images/s, per-file {best['per-file']:.0f} images/s, "
          f"{best['streaming'] / best['per-file']:.2f}x", flush=True)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dims-per-code", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--candidates", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--model", default="dual_encoder")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"kerasmm {kerasmm.__version__}, tensorflow {tf.__version__}, numpy {np.__version__}, "
          f"faiss {faiss.__version__}, {os.cpu_count()} CPUs; width {WIDTH}, k {K}, {args.queries} queries")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.sizes:
            results += measure_search(rows, args.queries, args.dims_per_code, args.candidates, args.repeats, folder)
    embedding = measure_embedding(args.model, args.images, args.source_size, args.batch_size, args.repeats)

    largest = max(args.sizes)
    good = [r for r in results if r["rows"] == largest and r["recall"] >= TARGET_RECALL]
    speed = embedding["streaming"] / embedding["per-file"]
    if not good:
        best = max((r for r in results if r["rows"] == largest), key=lambda r: r["recall"])
        print(f"ratio at {largest:,} rows: no setting reached recall@10 {TARGET_RECALL}; best recall "
              f"{best['recall']:.3f} at {best['qps'] / best['exact_qps']:.1f}x exact queries/s "
              f"(dims_per_code={best['dims']}, candidates={best['candidates']}); embedding streaming/per-file "
              f"= {speed:.2f}x")
        return 1
    best = max(good, key=lambda r: r["qps"])
    print(f"ratio at {largest:,} rows: approximate/exact queries/s = {best['qps'] / best['exact_qps']:.1f}x at "
          f"recall@10 {best['recall']:.3f} (dims_per_code={best['dims']}, candidates={best['candidates']}, "
          f"built in {best['build']:.0f} s; {best['qps'] / best['flat_qps']:.1f}x faiss brute force); "
          f"embedding streaming/per-file = {speed:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
