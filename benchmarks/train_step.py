"""Training speed and model-FLOPs utilisation (MFU) of the zoo families at a realistic size.

Three zoo entries, built with `kerasmm.zoo.get(name, jit_compile=..., **overrides)`
at width 256, 4 transformer layers (4 heads, feed-forward 1024), batch 64,
64×64 images, 32-token text and a vocabulary of 8000 words, dropout as in
the zoo (0.1):

- `weighted_sum_classifier`: CNN image tower (filters 32/64/128, output 256)
  + 4-layer text transformer (32 tokens), weighted-sum fusion, Dense(256), 4 classes.
- `dual_encoder`: the same two towers, 256-d projections, symmetric InfoNCE.
- `captioner`: CNN (filters 32/64, output 256: a 16×16 grid = 256 context
  tokens) → 4-layer causal decoder with cross-attention, 32 positions,
  tied 8000-word output projection.

Random images and captions of random words go through the model's own
preprocessor once; the preprocessed batch is cached in a
`tf.data.Dataset.from_tensors(batch).repeat()` and the model's own
`train_function` (what `fit` calls each step, here without callbacks) runs
on its iterator. Each step's time is the best of `--repeats` timed blocks of
`--steps` steps after a warm-up, all variants interleaved; CPU time (user +
system, all threads, from `time.process_time`) is shown beside wall time,
since it is disturbed less by other processes on the same cores.

Model FLOPs per example are counted analytically (`model_flops`): convolutions
2·k²·Cin·Cout·H'·W', dense layers 2·in·out per token, attention 2·2·T·S·D per
layer (QKᵀ and AV over the full T×S matrices) plus its four projections, the
tied vocabulary projection, the contrastive logits; a train step is 3× the
forward pass (backward ≈ 2× forward) less the first convolution's input
gradient, which is never computed. Embedding look-ups, normalisation,
activations, softmax, dropout and the optimizer are not counted (the usual
MFU convention). The count is checked against TensorFlow's own per-op FLOP
statistics (`tensorflow.python.profiler`'s registry, the one
`tf.compat.v1.profiler` uses) summed over the matmul and convolution ops
that the traced train-step graph runs (`graph_flops`; ops the runtime prunes,
such as the dual encoder's evaluation-only retrieval metrics that Keras
traces into the step, are left out). Both columns are in the table. TF's
registry miscounts `BatchMatMulV2` with `adj_x`, which every Keras attention
projection's kernel gradient uses (it reads only `transpose_a`), and has no
entry for `Einsum`: `graph_flops` counts those two itself.

The peak is the best fp32 rate of 2048×2048 matmuls in a `tf.function`, in
the same process with the same thread settings, timed in the same interleaved
rounds as the models (so it sees the same load on the cores). MFU = achieved
model FLOP/s ÷ peak FLOP/s (wall time). "MFU of CPU time" = model FLOPs per
CPU-second ÷ the peak's FLOPs per CPU-second: when other processes share the
cores both wall rates drop, and this ratio moves least.

Run: `.venv/bin/python benchmarks/train_step.py` (about 4 minutes on 2 cores).
Options: `--jit off on` (XLA off/on, each a `zoo.get(..., jit_compile=...)`;
default both), `--families ...`, `--batch`, `--image-size`,
`--sequence-length`, `--repeats`, `--steps`, `--precision mixed_bfloat16`
(the zoo's switch; MFU stays relative to the fp32 peak), `--threads INTRA
INTER`; `--einsum keras tf` adds rows whose steps were traced with float
einsums lowered to `tf.einsum` instead of Keras' matmuls (an experiment, see
`einsum_lowering`); `--reference` adds a plain keras-hub GPT-2 of the same
width and depth (64 tokens) for scale; `--device gpu` runs on '/GPU:0'
(skipped with a message when TensorFlow sees no GPU); `--breakdown` times
sub-graphs per family (each encoder or the decoder forward + backward alone,
the optimizer update alone); `--profile DIR` traces steps with the TF
profiler and prints the top ops and the matmul kernels' share; `--ops`
times single layers (dense, attention projection, GELU, layer and group
normalisation, convolutions) forward + backward with XLA off and on; `--scaling`
times a step against batch, sequence length and image size, and on 1 vs 2
replicas (a `MirroredStrategy` over 2 logical CPU devices, each in a
subprocess, since logical devices must be configured before TensorFlow starts).
The last line is the lowest MFU of the zoo families.
"""

import argparse
import collections
import contextlib
import functools
import glob
import json
import math
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

# A replica child must configure its logical devices before TensorFlow initialises.
if "--replicas-child" in sys.argv:
    _replicas = int(sys.argv[sys.argv.index("--replicas-child") + 1])
    if _replicas > 1:
        _cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * _replicas)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasmm  # noqa: E402

FAMILIES = ("weighted_sum_classifier", "dual_encoder", "captioner")
WIDTH, LAYERS, HEADS, VOCABULARY = 256, 4, 4, 8000
CNN_FILTERS = {"weighted_sum_classifier": [32, 64, 128], "dual_encoder": [32, 64, 128], "captioner": [32, 64]}
NUM_CLASSES = 4  # the shapes classification labels, the classifier's default
PEAK_SIZE = 2048


# --- models and data ----------------------------------------------------------------


def vocabulary():
    special = list(kerasmm.data.SPECIAL_TOKENS)
    return special + [f"w{i}" for i in range(VOCABULARY - len(special))]


def overrides(family, image_size, sequence_length):
    """The zoo overrides that set the stated size."""
    cnn = {"name": "cnn", "output_dim": WIDTH, "filters": CNN_FILTERS[family]}
    text = {"name": "text_transformer", "output_dim": WIDTH, "num_layers": LAYERS, "num_heads": HEADS}
    common = {"vocabulary": vocabulary(), "image_size": image_size, "sequence_length": sequence_length}
    if family == "weighted_sum_classifier":
        return {**common, "encoders": {"image": cnn, "text": text}, "hidden_dim": WIDTH}
    if family == "dual_encoder":
        return {**common, "encoders": {"image": cnn, "text": text}, "embedding_dim": WIDTH}
    return {**common, "encoders": {"image": cnn}, "hidden_dim": WIDTH, "num_layers": LAYERS, "num_heads": HEADS}


def build(family, jit_compile, image_size, sequence_length, precision="float32"):
    return kerasmm.zoo.get(family, jit_compile=jit_compile, precision=precision,
                           **overrides(family, image_size, sequence_length))


REFERENCE = "keras-hub GPT-2 (reference)"
REFERENCE_LENGTH = 64


def build_reference(jit_compile):
    """A plain keras-hub causal LM of the same width and depth: 64 tokens, vocabulary 8000, dropout 0.1."""
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY, num_layers=LAYERS, num_heads=HEADS, hidden_dim=WIDTH,
        intermediate_dim=4 * WIDTH, max_sequence_length=REFERENCE_LENGTH,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    return model


def reference_batch(batch, seed=0):
    ids = tf.constant(np.random.default_rng(seed).integers(1, VOCABULARY, (batch, REFERENCE_LENGTH + 1)), tf.int32)
    x = {"token_ids": ids[:, :-1], "padding_mask": tf.ones((batch, REFERENCE_LENGTH), tf.bool)}
    return x, ids[:, 1:], None


def preprocessed_batch(model, family, batch, image_size, sequence_length, seed=0):
    """One batch of random raw examples through the model's preprocessor: `(x, y, sample_weight)`."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)

    def sentences(words):
        return np.array([" ".join(f"w{i}" for i in rng.integers(0, VOCABULARY - 4, words)) for _ in range(batch)])

    if family == "weighted_sum_classifier":
        raw = ({"image": images, "text": sentences(sequence_length)}, rng.integers(0, NUM_CLASSES, batch))
    elif family == "dual_encoder":
        raw = ({"image": images}, sentences(sequence_length))
    else:  # [START] + words + [END] fill sequence_length + 1 ids
        raw = ({"image": images}, sentences(sequence_length - 1))
    return keras.utils.unpack_x_y_sample_weight(model.preprocessor(*raw))


def data_tuple(batch):
    """`(x, y, sample_weight)` without the trailing Nones, as Keras' train step takes it."""
    x, y, sample_weight = batch
    if sample_weight is not None:
        return (x, y, sample_weight)
    return (x,) if y is None else (x, y)


@contextlib.contextmanager
def einsum_lowering(mode):
    """`mode="tf"`: float einsums traced inside run as `tf.einsum` instead of Keras' matmul lowering.

    Keras' TensorFlow backend lowers the einsums of `EinsumDense` (every
    attention projection, e.g. "abc,cde->abde" for [B, T, D] × [D, heads,
    head_dim]) to `tf.matmul` of a rank-3 by a rank-2 tensor: a
    `BatchMatMulV2` that broadcasts the kernel over the batch, whose kernel
    gradient is a batched [B, D, heads·head_dim] product summed over B.
    `tf.einsum` (TF's `Einsum` op) runs the same contraction as one matmul
    over B·T rows, forward and backward. The model, its weights and the
    maths are unchanged; only the graph of the traced step differs (float
    rounding may differ in the last bits). An experiment of this script: the
    library leaves Keras alone.
    """
    if mode == "keras":
        yield
        return
    from keras.src import backend

    original = backend.numpy.einsum

    def einsum(subscripts, *operands, **kwargs):
        tensors = [tf.convert_to_tensor(o) for o in operands]
        if kwargs or len({t.dtype for t in tensors}) != 1 or not tensors[0].dtype.is_floating:
            return original(subscripts, *operands, **kwargs)
        return tf.einsum(subscripts.replace(" ", ""), *tensors)

    backend.numpy.einsum = einsum
    try:
        yield
    finally:
        backend.numpy.einsum = original


class Stepper:
    """A model's own `train_function` on a cached, preprocessed batch (what `fit` runs per step)."""

    def __init__(self, model, batch, strategy=None, einsum="keras"):
        self.model = model
        self.batch = batch
        self.einsum = einsum
        model.preprocessor = None  # the batch is preprocessed already
        dataset = tf.data.Dataset.from_tensors(data_tuple(batch)).repeat()
        if strategy is not None:
            dataset = strategy.experimental_distribute_dataset(dataset)
        self.iterator = iter(dataset)
        with (strategy or tf.distribute.get_strategy()).scope():
            model.optimizer.build(model.trainable_variables)
        model.make_train_function()
        with einsum_lowering(einsum):
            self(1)  # traces (and with XLA compiles) the step under the chosen lowering

    def __call__(self, steps):
        logs = None
        for _ in range(steps):
            logs = self.model.train_function(self.iterator)
        return float(np.asarray(keras.ops.convert_to_numpy(logs["loss"])).ravel()[0])  # waits for the step


def best_times(functions, repeats, steps):
    """Best (wall, cpu) seconds per call of each function, timed in interleaved rounds."""
    best = {name: [math.inf, math.inf] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            function(steps)
            wall, cpu = (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return best


class MatmulPeak:
    """Size×size float32 matmuls inside a tf.function: a callable(steps) like `Stepper`, timed beside the models."""

    def __init__(self, size=PEAK_SIZE, per_step=4):
        self.flops = 2 * size**3 * per_step
        self.a = tf.random.normal((size, size))
        self.b = [tf.random.normal((size, size)) for _ in range(per_step)]  # distinct, so none is folded away

        @tf.function
        def step(a, b):
            return tf.add_n([tf.reduce_sum(tf.matmul(a, m)[:1, :1]) for m in b])

        self.step = step

    def __call__(self, steps):
        for _ in range(steps):
            value = self.step(self.a, self.b)
        return float(value)


# --- analytic FLOP counter -----------------------------------------------------------


def conv_out(size, stride):
    return -(-size // stride)  # "same" padding


def cnn_flops(image_size, filters, output_dim):
    """Forward FLOPs of the CNN encoder per image, and those of its first convolution."""
    h = w = image_size
    cin, total, first = 3, 0, None
    for width in filters:
        for stride in (2, 1):
            h, w = conv_out(h, stride), conv_out(w, stride)
            flops = 2 * 9 * cin * width * h * w
            first = flops if first is None else first
            total += flops
            cin = width
    total += 2 * cin * output_dim * h * w  # 1x1 projection
    return total, first, h * w


def attention_flops(t, s, d):
    """QKᵀ and AV over the full T×S matrices (all heads together)."""
    return 2 * 2 * t * s * d


def encoder_layer_flops(t, d, f):
    return 4 * 2 * t * d * d + attention_flops(t, t, d) + 2 * 2 * t * d * f


def decoder_layer_flops(t, s, d, f):
    self_attention = 4 * 2 * t * d * d + attention_flops(t, t, d)
    cross_attention = 2 * 2 * t * d * d + 2 * 2 * s * d * d + attention_flops(t, s, d)
    return self_attention + cross_attention + 2 * 2 * t * d * f


def model_flops(family, batch, image_size, sequence_length):
    """Per example: `(train-step FLOPs, forward FLOPs, {part: forward FLOPs})`."""
    t, d, f = sequence_length, WIDTH, 4 * WIDTH
    if family == REFERENCE:
        t = REFERENCE_LENGTH
        parts = {"decoder": LAYERS * encoder_layer_flops(t, d, f), "vocabulary projection": 2 * t * d * VOCABULARY}
        forward = sum(parts.values())
        return 3 * forward, forward, parts
    cnn, first_conv, grid = cnn_flops(image_size, CNN_FILTERS[family], WIDTH)
    parts = {"image encoder": cnn}
    if family in ("weighted_sum_classifier", "dual_encoder"):
        parts["text encoder"] = LAYERS * encoder_layer_flops(t, d, f)
        if family == "weighted_sum_classifier":
            parts["head"] = 2 * d * WIDTH + 2 * WIDTH * NUM_CLASSES
        else:
            parts["head"] = 2 * 2 * d * WIDTH + 2 * 2 * batch * WIDTH  # projections, two [B, B] logits / B
    else:
        parts["context projection"] = 2 * grid * d * d
        parts["decoder"] = LAYERS * decoder_layer_flops(t, grid, d, f)
        parts["vocabulary projection"] = 2 * t * d * VOCABULARY
    forward = sum(parts.values())
    return 3 * forward - first_conv, forward, parts


# --- TF's own FLOP statistics of the traced train step -----------------------------

MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Conv2D", "Conv2DBackpropInput",
              "Conv2DBackpropFilter", "Einsum")


def _static_shape(graph, name):
    from tensorflow.python.framework import graph_util

    shape = graph_util.tensor_shape_from_node_def_name(graph, name)
    return shape.as_list() if shape.is_fully_defined() else None


def _batch_matmul_flops(graph, node):
    a, out = _static_shape(graph, node.input[0]), _static_shape(graph, node.name)
    if a is None or out is None:
        return None
    adj = node.attr["adj_x"].b or node.attr["transpose_a"].b
    return 2 * (a[-2] if adj else a[-1]) * int(np.prod(out))


def _einsum_flops(graph, node):
    equation = node.attr["equation"].s.decode()
    inputs, _ = equation.split("->")
    sizes = {}
    for spec, name in zip(inputs.split(","), node.input):
        shape = _static_shape(graph, name)
        if shape is None or "." in spec:
            return None
        sizes.update(zip(spec, shape))
    return 2 * int(np.prod(list(sizes.values())))


_CALLS = {"While": ("cond", "body"), "StatelessWhile": ("cond", "body"), "If": ("then_branch", "else_branch"),
          "StatelessIf": ("then_branch", "else_branch"), "PartitionedCall": ("f",), "StatefulPartitionedCall": ("f",)}


def _live_ops(graph, outputs):
    """The ops of `graph` that `outputs` (tensors and ops) need: what the runtime executes, not what is pruned."""
    stack = [t.op if hasattr(t, "op") else t for t in outputs]
    live = {}
    while stack:
        op = stack.pop()
        if op.name in live:
            continue
        live[op.name] = op
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return list(live.values())


def graph_flops(concrete_function):
    """`{op type: FLOPs}` of the matmul and convolution ops that a traced function runs.

    Only ops that the function's outputs (and its stateful updates) depend on
    are counted, as the runtime prunes the rest: Keras traces the dual
    encoder's retrieval metrics into the train step, whose result the step
    drops. Nested function bodies (while loops, conditionals) of live ops are
    walked too, each counted once.
    """
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.profiler.internal import flops_registry  # noqa: F401  (registers TF's statistics)

    totals = collections.Counter()
    graph = concrete_function.graph
    pending = [(graph, _live_ops(graph, list(graph.outputs) + list(graph.control_outputs)))]
    functions = dict(getattr(graph, "_functions", {}))
    while pending:
        graph, live = pending.pop()
        for op in live:
            for attr in _CALLS.get(op.type, ()):
                body = functions.get(op.get_attr(attr).name)
                if body is not None and hasattr(body, "graph"):
                    functions.update(getattr(body.graph, "_functions", {}))
                    pending.append((body.graph, body.graph.get_operations()))
            if op.type not in MATMUL_OPS:
                continue
            node = op.node_def
            if op.type.startswith("BatchMatMul"):
                flops = _batch_matmul_flops(graph, node)
            elif op.type == "Einsum":
                flops = _einsum_flops(graph, node)
            else:
                flops = tf_ops.get_stats_for_node_def(graph, node, "flops").value
            totals[op.type] += flops or 0
    return totals


def traced_train_step(model, batch):
    return tf.function(model.train_step).get_concrete_function(data_tuple(batch))


# --- sub-graph timing (--breakdown) -------------------------------------------------


def sub_graphs(model, family, batch, jit_compile):
    """`{part: callable(steps)}`: forward + backward of each part alone, and the optimizer update alone."""
    x = batch[0]
    backbone = model.backbone

    def fwd_bwd(forward, variables):
        @tf.function(jit_compile=jit_compile, autograph=False)
        def step():
            with tf.GradientTape() as tape:
                out = forward()
                loss = tf.add_n([tf.reduce_sum(tf.cast(o, "float32")) for o in tf.nest.flatten(out)])
            return loss, tape.gradient(loss, variables)

        return step

    parts = {}
    if family in ("weighted_sum_classifier", "dual_encoder"):
        image, text = backbone.encoder_layers["image"], backbone.encoder_layers["text"]
        parts["image encoder"] = fwd_bwd(lambda: image(x["image"], training=True)["pooled"], image.trainable_variables)
        parts["text encoder"] = fwd_bwd(lambda: text(x["text"], training=True)["pooled"], text.trainable_variables)
    else:
        context, mask = backbone.encode_context(x, training=False)
        encoder_variables = [v for m in backbone.encoder_layers for v in backbone.encoder_layers[m].trainable_variables]
        encoder_variables += [v for m in backbone.context_projections for v in
                              backbone.context_projections[m].trainable_variables]
        parts["image encoder + context"] = fwd_bwd(
            lambda: backbone.encode_context(x, training=True)[0], encoder_variables)
        decoder_variables = [v for v in model.trainable_variables if not any(v is e for e in encoder_variables)]
        y, sample_weight = batch[1], batch[2]

        def decoder():
            h = backbone.embedding_dropout(backbone.embed_tokens(x["tokens"]), training=True)
            for layer in backbone.decoder_layers:
                h = layer(h, encoder_sequence=context, encoder_padding_mask=mask, training=True)
            logits = backbone.token_embedding(backbone.decoder_norm(h), reverse=True)
            return model.loss(y, logits, sample_weight)

        parts["decoder + vocabulary + loss"] = fwd_bwd(decoder, decoder_variables)

    gradients = [tf.zeros_like(v) for v in model.trainable_variables]

    @tf.function(jit_compile=jit_compile, autograph=False)
    def optimizer_step():
        model.optimizer.apply(gradients, model.trainable_variables)
        return tf.constant(0.0)

    parts["optimizer (Adam) update"] = optimizer_step

    return {name: repeated(f) for name, f in parts.items()}


def repeated(function):
    """`function` (no arguments) as a callable(steps) like `Stepper`: runs it `steps` times, waits for the last."""
    def run(steps):
        for _ in range(steps):
            out = function()
        return np.asarray(tf.nest.flatten(out)[0])

    return run


# --- single building blocks (--ops) ------------------------------------------------


def op_timings(repeats, steps, batch, sequence_length, image_size):
    """Forward + backward of single building blocks at the stated size, XLA off and on: ms per call."""
    tokens = (batch, sequence_length)
    cases = {  # name: (layer or function, input shape)
        "Dense 256→1024 (feed-forward)": (keras.layers.Dense(4 * WIDTH), (*tokens, WIDTH)),
        "EinsumDense 256→4×64 (attention projection)": (
            keras.layers.EinsumDense("abc,cde->abde", (None, HEADS, WIDTH // HEADS)), (*tokens, WIDTH)),
        "GELU, exact (feed-forward activation)": (lambda x: keras.activations.gelu(x, approximate=False),
                                                   (*tokens, 4 * WIDTH)),
        "LayerNormalization": (keras.layers.LayerNormalization(epsilon=1e-5), (*tokens, WIDTH)),
        "softmax over keys (attention)": (lambda x: keras.ops.softmax(x, axis=-1),
                                          (batch, HEADS, sequence_length, sequence_length)),
        "Conv2D 3→32, 3×3, stride 2 (first CNN stage)": (
            keras.layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False), (batch, image_size, image_size, 3)),
        "Conv2D 32→32, 3×3 (first CNN stage)": (
            keras.layers.Conv2D(32, 3, padding="same", use_bias=False), (batch, image_size // 2, image_size // 2, 32)),
        "GroupNormalization, 8 groups (first CNN stage)": (
            keras.layers.GroupNormalization(groups=8), (batch, image_size // 2, image_size // 2, 32)),
    }
    functions = {}
    for name, (op, shape) in cases.items():
        x = tf.random.normal(shape)
        if isinstance(op, keras.layers.Layer):
            op.build(shape)
        variables = op.trainable_variables if isinstance(op, keras.layers.Layer) else []
        for jit in (False, True):
            @tf.function(jit_compile=jit)
            def step(x, op=op, variables=variables):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = op(x)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, [x, *variables])

            functions[(name, jit)] = repeated(functools.partial(step, x))
            functions[(name, jit)](1)  # traces (and with XLA compiles)
    times = best_times(functions, repeats, steps)
    print(f"\n### Building blocks (forward + backward of one layer alone; batch {batch}, {sequence_length} tokens, "
          f"{image_size}² images; best of {repeats} × {steps}; ms)\n")
    print("| block | input | XLA off ms | XLA on ms | off ÷ on |")
    print("|---|---|---|---|---|")
    for name, (_, shape) in cases.items():
        off, on = times[(name, False)][0], times[(name, True)][0]
        print(f"| {name} | {list(shape)} | {off * 1e3:.2f} | {on * 1e3:.2f} | {off / on:.2f}× |")


# --- TF profiler (--profile) --------------------------------------------------------

_WRAPPERS = re.compile(r"::|^Eager|^TFE_|^__inference|^one_step|^multi_step|^BlockUntilReady|^end: |^KernelAndDevice"
                       r"|^ParallelFor|^Iterator|^tf_data|^SlinkyThreadPool|^ThunkExecutor|^CpuExecutable|^call(\.\d+)?$")


def profile_top(model, stepper, directory, steps=3, top=12):
    """Trace `steps` train steps; `[(op kind, ms per step, share)]` of the ops' summed time, largest first."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(directory)
    stepper(steps)
    tf.profiler.experimental.stop()
    path = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    kinds, parts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and not name.startswith("end: "):  # a TF kernel: "op name:op type"
                    op, kind = name.rsplit(":", 1)
                    if kind.startswith("__inference") or "/" not in op:
                        continue
                    kind = f"{kind} ({'backward' if 'gradient_tape/' in op else 'forward'})"
                    parts[_component(op)] += event.duration_ps / 1e9 / steps
                elif _WRAPPERS.search(name):
                    continue
                else:  # an XLA thunk: "MatMul.240", "multiply_reduce_fusion.6"
                    kind = re.sub(r"\.\d+$", "", name)
                    kind = "fusion (elementwise/reduce)" if "fusion" in kind and not kind.startswith("ynn") else kind
                kinds[kind] += event.duration_ps / 1e9 / steps
    total = sum(kinds.values())
    matmul = sum(v for k, v in kinds.items() if _MATMUL_KIND.search(k))
    return [(k, v, v / total) for k, v in kinds.most_common(top)], total, parts, matmul


# Kernels that do the counted FLOPs: TF's (oneDNN) matmuls, einsums and convolutions; XLA's dots,
# convolutions and YNNPACK fusions (which XLA builds around dots).
_MATMUL_KIND = re.compile(r"MatMul|Conv2D|Einsum|^dot|^convolution|^ynn_fusion")


_COMPONENTS = (("image encoder", "cnn_image_encoder"), ("text encoder", "text_transformer_encoder"),
               ("decoder", "/decoder_"), ("vocabulary projection/embedding", "token_embedding"),
               ("optimizer", "adam"), ("loss", "loss"))


def _component(op):
    for name, key in _COMPONENTS:
        if key in op.lower():
            return name
    return "other"


# --- scaling (--scaling) ---------------------------------------------------------------


def replica_child(args):
    """Run in a subprocess: one family's step time on `--replicas-child` logical CPU devices; prints JSON."""
    replicas = int(args.replicas_child)
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")][:replicas]) \
        if replicas > 1 else None
    family = args.families[0]
    with (strategy or tf.distribute.get_strategy()).scope():
        model = build(family, args.jit[-1] == "on", args.image_size, args.sequence_length, args.precision)
    batch = preprocessed_batch(model, family, args.batch, args.image_size, args.sequence_length)
    stepper = Stepper(model, batch, strategy, einsum=args.einsum[-1])
    stepper(2)
    wall, cpu = best_times({"step": stepper}, args.repeats, args.steps)["step"]
    print(json.dumps({"replicas": replicas, "wall": wall, "cpu": cpu}))


def scaling(args, jit_compile, einsum):
    print(f"\n### Scaling (XLA {'on' if jit_compile else 'off'}, {einsum} einsum; best of {args.repeats} × "
          f"{args.steps} steps)\n")
    print("| family | setting | value | step ms | CPU ms | ms per example | × step of the base |")
    print("|---|---|---|---|---|---|---|")
    base = {"batch": args.batch, "sequence_length": args.sequence_length, "image_size": args.image_size}
    grid = {"batch": [16, 64, 128], "sequence_length": [16, 32, 64], "image_size": [32, 64, 128]}
    for family in args.families:
        for setting, values in grid.items():
            steppers, examples = {}, {}
            for value in values:
                size = {**base, setting: value}
                model = build(family, jit_compile, size["image_size"], size["sequence_length"], args.precision)
                batch = preprocessed_batch(model, family, size["batch"], size["image_size"], size["sequence_length"])
                steppers[value] = Stepper(model, batch, einsum=einsum)
                steppers[value](2)
                examples[value] = size["batch"]
            times = best_times(steppers, args.repeats, args.steps)
            reference = times[base[setting]][0]
            for value in values:
                wall, cpu = times[value]
                print(f"| {family} | {setting} | {value} | {wall * 1e3:.0f} | {cpu * 1e3:.0f} "
                      f"| {wall * 1e3 / examples[value]:.2f} | {wall / reference:.2f}× |", flush=True)
        # 1 vs 2 replicas, each in a fresh process (logical devices are fixed at start-up).
        results = {}
        for replicas in (1, 2):
            command = [sys.executable, __file__, "--replicas-child", str(replicas), "--families", family,
                       "--batch", str(args.batch), "--image-size", str(args.image_size),
                       "--sequence-length", str(args.sequence_length), "--repeats", str(args.repeats),
                       "--steps", str(args.steps), "--jit", "on" if jit_compile else "off", "--einsum", einsum,
                       "--precision", args.precision] + (["--threads", *map(str, args.threads)] if args.threads else [])
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[replicas] = json.loads(out.strip().splitlines()[-1])
        for replicas in (1, 2):
            r = results[replicas]
            print(f"| {family} | replicas (MirroredStrategy) | {replicas} | {r['wall'] * 1e3:.0f} "
                  f"| {r['cpu'] * 1e3:.0f} | {r['wall'] * 1e3 / args.batch:.2f} "
                  f"| {r['wall'] / results[1]['wall']:.2f}× |", flush=True)


# --- main -------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--jit", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--einsum", nargs="+", default=["keras"], choices=["keras", "tf"],
                        help="how einsums are lowered: Keras' matmuls or tf.einsum (see einsum_lowering)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="the zoo's precision switch; MFU stays relative to the fp32 peak")
    parser.add_argument("--reference", action="store_true",
                        help="add a plain keras-hub GPT-2 of the same width and depth (64 tokens) to the table")
    parser.add_argument("--breakdown", action="store_true", help="time sub-graphs of each family")
    parser.add_argument("--profile", metavar="DIR", help="trace steps with the TF profiler into DIR; print top ops")
    parser.add_argument("--scaling", action="store_true", help="step time against batch, lengths, replicas")
    parser.add_argument("--ops", action="store_true",
                        help="also time single building blocks (dense, projection, GELU, norms, convolutions), XLA off/on")
    parser.add_argument("--threads", type=int, nargs=2, metavar=("INTRA", "INTER"),
                        help="tf.config.threading intra- and inter-op threads (default: TensorFlow's choice)")
    parser.add_argument("--replicas-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:  # before TensorFlow runs anything
        tf.config.threading.set_intra_op_parallelism_threads(args.threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(args.threads[1])
    if args.replicas_child:
        return replica_child(args)

    if args.device == "gpu":
        if not tf.config.list_physical_devices("GPU"):
            print("No GPU visible to TensorFlow: --device gpu skipped (nothing measured).")
            print("\nlowest MFU: skipped (no GPU)")
            return
        device = "/GPU:0"
    else:
        device = "/CPU:0"
    keras.utils.set_random_seed(0)
    variants = [(j == "on", e) for e in args.einsum for j in args.jit]
    threads = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    with tf.device(device):
        peak = MatmulPeak()
        peak(1)
        steppers, flops, graph = {}, {}, {}
        for family in args.families + ([REFERENCE] if args.reference else []):
            flops[family] = model_flops(family, args.batch, args.image_size, args.sequence_length)[0]
            for jit, einsum in variants:
                start = time.perf_counter()
                if family == REFERENCE:
                    model, batch = build_reference(jit), reference_batch(args.batch)
                else:
                    model = build(family, jit, args.image_size, args.sequence_length, args.precision)
                    batch = preprocessed_batch(model, family, args.batch, args.image_size, args.sequence_length)
                if (family, einsum) not in graph:  # the graph before XLA is the same either way
                    with einsum_lowering(einsum):
                        step_flops = graph_flops(traced_train_step(model, batch))
                    graph[(family, einsum)] = sum(step_flops.values()) / args.batch
                steppers[(family, jit, einsum)] = Stepper(model, batch, einsum=einsum)
                print(f"# {family}, XLA {'on' if jit else 'off'}, {einsum} einsum: built, traced and compiled in "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
        # The peak is timed in the same rounds as the models, so it sees the same load on the cores.
        times = best_times({"peak": peak, **steppers}, args.repeats, args.steps)
    peak_wall, peak_cpu = (peak.flops / t for t in times.pop("peak"))

    print(f"\ndevice {device}, tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"intra/inter-op threads {threads[0] or 'default'}/{threads[1] or 'default'}, {args.precision}; "
          f"batch {args.batch}, images {args.image_size}², {args.sequence_length} tokens, width {WIDTH}, "
          f"{LAYERS} layers; best of {args.repeats} × {args.steps} steps")
    print(f"fp32 matmul peak ({PEAK_SIZE}², tf.function, timed with the models): {peak_wall / 1e9:.0f} GFLOP/s; "
          f"{peak_cpu / 1e9:.0f} GFLOP per CPU-second\n")
    print("| family | XLA | einsum | step ms | CPU ms | examples/s | GFLOP/example analytic | TF graph "
          "| GFLOP/s | MFU | MFU of CPU time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    lowest = None
    for (family, jit, einsum), (wall, cpu) in times.items():
        rate = flops[family] * args.batch / wall
        mfu, cpu_mfu = rate / peak_wall, flops[family] * args.batch / cpu / peak_cpu
        if family != REFERENCE and (lowest is None or mfu < lowest[0]):
            lowest = (mfu, family, jit, einsum)
        print(f"| {family} | {'on' if jit else 'off'} | {einsum} | {wall * 1e3:.0f} | {cpu * 1e3:.0f} "
              f"| {args.batch / wall:.0f} | {flops[family] / 1e9:.3f} | {graph[(family, einsum)] / 1e9:.3f} "
              f"| {rate / 1e9:.0f} | {mfu:.0%} | {cpu_mfu:.0%} |")

    if args.breakdown:
        print(f"\n### Sub-graphs (forward + backward of each part alone; best of {args.repeats} × {args.steps}; ms)\n")
        print("| family | XLA | einsum | part | ms | CPU ms | share of the step |")
        print("|---|---|---|---|---|---|---|")
        with tf.device(device):
            for (family, jit, einsum), stepper in steppers.items():
                if family == REFERENCE:
                    continue
                with einsum_lowering(einsum):
                    parts = sub_graphs(stepper.model, family, stepper.batch, jit)
                    for part in parts.values():
                        part(1)
                part_times = best_times({"full step": stepper, **parts}, args.repeats, args.steps)
                step = part_times["full step"][0]
                for name, (wall, cpu) in part_times.items():
                    print(f"| {family} | {'on' if jit else 'off'} | {einsum} | {name} | {wall * 1e3:.0f} "
                          f"| {cpu * 1e3:.0f} | {wall / step:.0%} |", flush=True)

    if args.profile:
        print("\n### TF profiler: top ops by summed time (ms per step; on 2 cores ops overlap, so shares are of the sum)\n")
        with tf.device(device):
            for (family, jit, einsum), stepper in steppers.items():
                top, total, parts, matmul = profile_top(
                    stepper.model, stepper, os.path.join(args.profile, f"{family}_xla_{jit}_{einsum}"))
                listed = ", ".join(f"{k} {v:.0f} ({s:.0%})" for k, v, s in top)
                print(f"- {family}, XLA {'on' if jit else 'off'}, {einsum} einsum: ops sum {total:.0f} ms per step, "
                      f"of which matmul/convolution kernels {matmul:.0f} ms ({matmul / total:.0%}, "
                      f"{flops[family] * args.batch / matmul / 1e6:.0f} GFLOP/s while they run). Top: {listed}")
                if parts:
                    print("  - by component: " + ", ".join(f"{k} {v:.0f} ({v / total:.0%})"
                                                          for k, v in parts.most_common()))

    if args.ops:
        with tf.device(device):
            op_timings(args.repeats, 10, args.batch, args.sequence_length, args.image_size)  # short calls: 10 a round

    if args.scaling:
        with tf.device(device):
            scaling(args, args.jit[0] == "on", args.einsum[0])

    mfu, family, jit, einsum = lowest
    print(f"\nlowest MFU: {family} (XLA {'on' if jit else 'off'}, {einsum} einsum) {mfu:.0%} of the "
          f"{peak_wall / 1e9:.0f} GFLOP/s fp32 matmul peak")


if __name__ == "__main__":
    main()
