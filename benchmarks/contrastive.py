"""Contrastive loss step time and memory: local rows × global columns against the full matrix.

On R replicas (a `MirroredStrategy` over R = 2 logical CPU devices, set up
below before TensorFlow starts) each step computes the symmetric InfoNCE loss
and its gradient with respect to both embedding matrices, inside one
`tf.function`, at each global batch size B:

- local rows (kerasmm): `kerasmm.losses.contrastive.info_nce` inside
  `strategy.run`. Each replica gathers the other tower and computes only its
  B/R local rows against the B global columns: two [B/R, B] logits matrices.
- full matrix (the BASELINE, written in this script): each replica gathers
  both towers, computes the whole [B, B] logits matrix and the full symmetric
  loss (rows and, through the transpose, columns: two [B, B] matrices), and
  keeps its 1/R share so that summed gradients are those of the global mean.

Step time is the best of `--repeats` timings after a warm-up, the two
schemes' timings interleaved; the table also gives the ratio of the best CPU
times (user + system, all threads), which another process sharing the two
cores disturbs far less than wall time. Memory is reported twice: the
analytic logits bytes per replica (B/R × B × 4 × 2 against B × B × 4 × 2, so
R× apart whatever B is), and the measured peak of a step, from
`tf.config.experimental.get_memory_info("CPU:0")`: the step's peak
allocation above what was already allocated, the largest over the timed
steps (it varies with how the replicas' ops interleave). On CPU the logical
devices share one process-wide allocator, so the figure covers both replicas
together. With oneDNN on (TF's default on x86) that allocator hands requests
of 256 KiB or more to a BFC allocator, which keeps the statistics, and
smaller ones to malloc, which does not: the measured peak leaves out tensors
under 256 KiB, so it undercounts at small batches (a [B/2, B] float32 matrix
reaches 256 KiB at B = 512) and is only a fair comparison from there up.
MiB throughout.

Multiply-adds are not what differs: with R = 2, two [B/2, B] matmuls equal one
[B, B] matmul, forward and backward. The full matrix does R× the softmax and
cross-entropy work and holds R× the logits.

Before timing, the script checks once, at the smallest size, that both
schemes and a single-device `info_nce` on the whole batch give the same loss
and gradients (within 1e-5).

Run: `python benchmarks/contrastive.py [--sizes 64 128 ... 4096] [--dim 256] [--repeats 5]`
(about 40 s on 2 cores).
The last line is the ratio full-matrix ÷ local-rows at the largest size.
"""

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

REPLICAS = 2
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)

import numpy as np  # noqa: E402

import kerasmm  # noqa: E402
from kerasmm.losses import contrastive  # noqa: E402

LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature
MIB = 1024 * 1024


def local_rows_loss(a, b):
    """kerasmm's scheme: this replica's rows against the gathered global batch, its 1/R share."""
    return contrastive.replica_share(contrastive.info_nce(a, b, LOGIT_SCALE))


def full_matrix_loss(a, b):
    """BASELINE (naive scheme): every replica builds the whole [B, B] logits and the full loss."""
    a, b = contrastive.check_pair(a, b)
    scale = contrastive.checked_scale(LOGIT_SCALE)
    global_a, _ = contrastive.gather_global(a)
    global_b, _ = contrastive.gather_global(b)
    logits = tf.matmul(global_a, global_b, transpose_b=True) * scale  # [global, global]
    labels = tf.range(tf.shape(global_a)[0])
    loss_a = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    loss_b = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits))
    return contrastive.replica_share(tf.reduce_mean(loss_a + loss_b) / 2.0)


SCHEMES = {"local rows": local_rows_loss, "full matrix": full_matrix_loss}


def make_step(strategy, replica_loss):
    """A `tf.function`: loss summed over replicas and each replica's gradients for its local rows."""

    def replica_step(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            loss = replica_loss(a, b)
        grad_a, grad_b = tape.gradient(loss, [a, b])
        return loss, grad_a, grad_b

    @tf.function
    def step(a, b):
        loss, grad_a, grad_b = strategy.run(replica_step, args=(a, b))
        return strategy.reduce("SUM", loss, axis=None), grad_a, grad_b

    return step


def embeddings(batch, dim, seed):
    """Two L2-normalised [batch, dim] towers, as a dual encoder's projections give them."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal((batch, dim)).astype("float32") for _ in range(2))
    b = 0.5 * a + b  # related pairs, so the loss is not at its chance value
    return [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b)]


def distribute(strategy, x):
    """`x` split by rows: replica r holds rows r·B/R … (r+1)·B/R, on its own device."""
    rows = x.shape[0] // strategy.num_replicas_in_sync

    def value(context):
        r = context.replica_id_in_sync_group
        return tf.constant(x[r * rows:(r + 1) * rows])

    return strategy.experimental_distribute_values_from_function(value)


def global_grad(strategy, per_replica):
    """The replicas' local-row gradients, stacked back into the global [B, dim] gradient."""
    return np.concatenate([t.numpy() for t in strategy.experimental_local_results(per_replica)])


def check(strategy, batch, dim):
    """Largest |Δ| in loss and gradients: each scheme against one device's info_nce on the whole batch."""
    a, b = embeddings(batch, dim, seed=1)
    with tf.GradientTape() as tape:
        ta, tb = tf.constant(a), tf.constant(b)
        tape.watch([ta, tb])
        reference = contrastive.info_nce(ta, tb, LOGIT_SCALE)
    ref_grads = [g.numpy() for g in tape.gradient(reference, [ta, tb])]
    diffs = {}
    for name, loss_fn in SCHEMES.items():
        loss, grad_a, grad_b = make_step(strategy, loss_fn)(distribute(strategy, a), distribute(strategy, b))
        grads = [global_grad(strategy, g) for g in (grad_a, grad_b)]
        diffs[name] = (abs(float(loss) - float(reference)),
                       max(float(np.max(np.abs(g - r))) for g, r in zip(grads, ref_grads)), float(loss))
    return float(reference), diffs


def measure(steps, a, b, repeats, seconds=0.5):
    """Per scheme: best wall seconds per step, best CPU seconds per step, measured peak bytes (or None).

    Each timing runs enough steps to last about `seconds`. The schemes'
    timings are interleaved (alternating which goes first), so a slow spell on
    the noisy machine hits both rather than one. CPU time is this process's
    (all threads, user + system): it barely moves when another process takes
    a core, when wall time can double. The peak is the largest over the timed
    steps of the allocator's peak above what was allocated before.
    """
    def run(step):
        loss, _, _ = step(a, b)
        return float(loss)  # on CPU the call returns when the step is done; this also syncs

    calls = {}
    for name, step in steps.items():
        run(step)  # trace and warm up
        start = time.perf_counter()
        run(step)
        calls[name] = max(1, min(100, round(seconds / max(time.perf_counter() - start, 1e-6))))
    best = dict.fromkeys(steps, float("inf"))
    best_cpu = dict.fromkeys(steps, float("inf"))
    peaks = dict.fromkeys(steps, 0)
    for repeat in range(repeats):
        for name in (list(steps) if repeat % 2 == 0 else list(steps)[::-1]):
            try:
                tf.config.experimental.reset_memory_stats("CPU:0")
                before = tf.config.experimental.get_memory_info("CPU:0")["current"]
            except (ValueError, RuntimeError):
                before = None  # this TF keeps no allocator statistics on CPU
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls[name]):
                run(steps[name])
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
            best_cpu[name] = min(best_cpu[name], (time.process_time() - start_cpu) / calls[name])
            if before is None:
                peaks[name] = None
            else:
                peak = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
                peaks[name] = max(peaks[name], peak)
    return best, best_cpu, peaks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2 ** k for k in range(6, 13)],
                        help="global batch sizes (multiples of the replica count)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{r}" for r in range(REPLICAS)])
    bad = [s for s in args.sizes if s % REPLICAS]
    if bad:
        parser.error(f"sizes must be multiples of the {REPLICAS} replicas: {bad}")
    print(f"kerasmm {kerasmm.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs; "
          f"{REPLICAS} replicas (MirroredStrategy over logical CPU devices), embedding dim {args.dim}, "
          f"best of {args.repeats}")

    size = min(args.sizes)
    reference, diffs = check(strategy, size, args.dim)
    worst = max(max(d[0], d[1]) for d in diffs.values())
    print(f"check at {size}: single-device info_nce = {reference:.6f}; " + "; ".join(
        f"{name} loss {d[2]:.6f} (|Δloss| {d[0]:.1e}, max |Δgrad| {d[1]:.1e})" for name, d in diffs.items())
        + (" — OK (≤ 1e-5)" if worst <= 1e-5 else " — MISMATCH (> 1e-5)"), flush=True)

    steps = {name: make_step(strategy, fn) for name, fn in SCHEMES.items()}
    print(f"{'batch':>6} {'local ms':>9} {'full ms':>8} {'full/local':>11} {'CPU full/local':>15} "
          f"{'logits MiB local':>17} {'logits MiB full':>16} {'peak MiB local':>15} {'peak MiB full':>14} "
          f"{'peak full/local':>16}   (logits: analytic, per replica; "
          f"peak: measured, get_memory_info('CPU:0'), max over steps, both replicas, tensors >= 256 KiB only)")
    results = {}
    for batch in sorted(args.sizes):
        a, b = embeddings(batch, args.dim, seed=batch)
        a, b = distribute(strategy, a), distribute(strategy, b)
        times, cpu_times, peaks = measure(steps, a, b, args.repeats)
        (local_s, full_s), (local_cpu, full_cpu) = times.values(), cpu_times.values()
        local_peak, full_peak = peaks.values()
        local_bytes = batch // REPLICAS * batch * 4 * 2
        full_bytes = batch * batch * 4 * 2
        results[batch] = (local_s, full_s, full_cpu / local_cpu, local_bytes, full_bytes, local_peak, full_peak)
        if local_peak is None or full_peak is None:
            peak_text = f"{'n/a':>15} {'n/a':>14} {'n/a':>16}"
        else:
            ratio = f"{full_peak / local_peak:>15.2f}x" if local_peak else f"{'n/a':>16}"
            peak_text = f"{local_peak / MIB:>15.1f} {full_peak / MIB:>14.1f} {ratio}"
        print(f"{batch:>6} {local_s * 1e3:>9.2f} {full_s * 1e3:>8.2f} {full_s / local_s:>10.2f}x "
              f"{full_cpu / local_cpu:>14.2f}x "
              f"{local_bytes / MIB:>17.2f} {full_bytes / MIB:>16.2f} {peak_text}", flush=True)

    batch = max(results)
    local_s, full_s, cpu_ratio, local_bytes, full_bytes, local_peak, full_peak = results[batch]
    measured = f", measured step peak = {full_peak / local_peak:.2f}x" if local_peak and full_peak else ""
    print(f"ratio at {batch}: full-matrix / local-rows step time = {full_s / local_s:.2f}x "
          f"(CPU time {cpu_ratio:.2f}x), "
          f"logits memory = {full_bytes / local_bytes:.2f}x{measured}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
