"""Serve exported SavedModels the way a server does: TensorFlow only, no kerasmm, keras or keras_hub.

Usage: python serve_exported.py SPEC.json OUT.npz  (prints a JSON report as its last line)

SPEC.json: {"models": [{"name", "dir", "requests": {signature: [{input: [base64 bytes]}]}}],
            "load": {"model", "signature", "threads", "calls"}}

For each model: the op types core TensorFlow lacks are listed and, if any,
tensorflow-text's op libraries are loaded by path (its Python package,
which needs keras, is never imported); the SavedModel is loaded; every
signature's specs are reported; each request runs as given (outputs saved to
OUT.npz under "model/signature/index/output") and at twice its batch size;
bad requests (bytes that are not an image or WAV file, an empty string, an
empty batch, inputs of different batch sizes) are sent and the errors
recorded. Then one signature is called from many threads at once.
This file must not import kerasmm: it stands for a serving process.
"""

import base64
import glob
import importlib.util
import json
import os
import sys
import threading
import time

BLOCKED = ("kerasmm", "keras", "keras_hub", "tf_keras")
for _name in BLOCKED:
    sys.modules[_name] = None  # `import keras` now fails; TensorFlow carries on without it

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402

_text_ops_loaded = []


def custom_ops(version_dir):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops, functions = set(), set()
    for meta_graph in proto.meta_graphs:
        functions.update(f.signature.name for f in meta_graph.graph_def.library.function)
        ops.update(n.op for n in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(n.op for n in function.node_def)
    return sorted(op for op in ops - functions if op_def_registry.get(op) is None)


def load_text_ops():
    if not _text_ops_loaded:
        spec = importlib.util.find_spec("tensorflow_text")
        folder = os.path.join(list(spec.submodule_search_locations)[0], "python", "ops")
        for library in sorted(glob.glob(os.path.join(folder, "*.so"))):
            tf.load_op_library(library)
            _text_ops_loaded.append(os.path.basename(library))


def spec_of(s):
    return {"dtype": s.dtype.name, "shape": [None if d is None else int(d) for d in s.shape.as_list()]}


def call(function, inputs):
    return {k: v.numpy() for k, v in function(**{k: tf.constant(v, tf.string) for k, v in inputs.items()}).items()}


def error_of(function, inputs):
    """(exception class name, first line of its message) of a call expected to fail, or None."""
    try:
        call(function, inputs)
    except Exception as error:  # noqa: BLE001 - any exception is reported, the process must survive
        message = getattr(error, "message", str(error))
        return type(error).__name__, " ".join(message.split())[:400]
    return None


def largest_difference(a, b):
    worst = 0.0
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        if x.shape != y.shape:
            return float("inf")
        if x.dtype.kind in "OSU":
            if not (x == y).all():
                return float("inf")
        elif x.size:
            worst = max(worst, float(np.max(np.abs(x.astype("float64") - y.astype("float64")))))
    return worst


def bad_requests(function, inputs):
    """Each kind of bad request against `function`, whose example `inputs` are valid."""
    names = list(inputs)
    first = {n: [v[0]] for n, v in inputs.items()}
    cases = {"empty_batch": {n: [] for n in names}}
    for name in names:
        if name.endswith("_bytes"):
            cases[f"{name}:not_encoded"] = {
                n: [v[0], b"this is not an image or a WAV file"] if n == name else [v[0], v[0]]
                for n, v in inputs.items()
            }
            cases[f"{name}:empty_string"] = {**first, name: [b""]}
    if len(names) > 1:
        cases["batch_sizes_differ"] = {**first, names[-1]: first[names[-1]] * 2}
    return {case: error_of(function, request) for case, request in cases.items()}


def main():
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    started = time.perf_counter()
    report, arrays, loaded_models = {"models": {}}, {}, {}
    # Before any op library is loaded: afterwards its ops would look like core ones.
    needed = {entry["name"]: custom_ops(entry["dir"]) for entry in spec["models"]}
    for entry in spec["models"]:
        name, version_dir = entry["name"], entry["dir"]
        ops = needed[name]
        if ops:
            load_text_ops()
        loaded = tf.saved_model.load(version_dir)
        loaded_models[name] = loaded
        model_report = {"custom_ops": ops, "signatures": {}, "bad_requests": {}, "doubled_batch_difference": 0.0}
        for signature, function in loaded.signatures.items():
            model_report["signatures"][signature] = {
                "inputs": {k: spec_of(s) for k, s in function.structured_input_signature[1].items()},
                "outputs": {k: spec_of(s) for k, s in function.structured_outputs.items()},
            }
        for signature, requests in entry["requests"].items():
            function = loaded.signatures[signature]
            for index, request in enumerate(requests):
                inputs = {k: [base64.b64decode(v) for v in values] for k, values in request.items()}
                outputs = call(function, inputs)
                for key, value in outputs.items():
                    arrays[f"{name}/{signature}/{index}/{key}"] = value
                # Row-wise outputs (no unknown dimension past the batch) must not depend on the batch.
                doubled = call(function, {k: v + v for k, v in inputs.items()})
                rows = [k for k, s in function.structured_outputs.items() if None not in s.shape.as_list()[1:]]
                head = {k: doubled[k][tuple(slice(0, n) for n in outputs[k].shape)] for k in rows}
                model_report["doubled_batch_difference"] = max(
                    model_report["doubled_batch_difference"],
                    largest_difference({k: outputs[k] for k in rows}, head),
                )
                if index == 0:
                    model_report["bad_requests"][signature] = bad_requests(function, inputs)
        report["models"][name] = model_report

    load = spec.get("load")
    if load:
        function = loaded_models[load["model"]].signatures[load["signature"]]
        entry = next(e for e in spec["models"] if e["name"] == load["model"])
        request = entry["requests"][load["signature"]][-1]
        inputs = {k: [base64.b64decode(v) for v in values] for k, values in request.items()}
        expected = call(function, inputs)
        errors, mismatches, done = [], [0], [0]
        lock = threading.Lock()

        def worker():
            for _ in range(load["calls"]):
                try:
                    outputs = call(function, inputs)
                except Exception as error:  # noqa: BLE001
                    with lock:
                        errors.append(repr(error)[:300])
                    continue
                with lock:
                    done[0] += 1
                    if largest_difference(expected, outputs) != 0.0:
                        mismatches[0] += 1

        load_started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(load["threads"])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report["load"] = {"calls": done[0], "errors": errors[:5], "error_count": len(errors),
                          "mismatches": mismatches[0], "seconds": round(time.perf_counter() - load_started, 2)}

    report["seconds"] = round(time.perf_counter() - started, 2)
    report["text_op_libraries"] = _text_ops_loaded
    report["imported_blocked_modules"] = sorted(
        m for m, module in sys.modules.items() if m.split(".")[0] in BLOCKED and module is not None
    )
    np.savez(out_path, **arrays)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
