"""Check an exported SavedModel the way a server sees it: in a fresh process without kerasmm or keras.

`verify(version_dir)` runs this file as a script in a new Python process in
which `kerasmm`, `keras`, `keras_hub` and `tf_keras` cannot be imported
(TensorFlow works without them); there it

- lists the op types the graphs use that core TensorFlow lacks, and, if
  there are any, loads tensorflow-text's op libraries by path (as a
  TF Serving build with those ops would; the tensorflow_text Python package,
  which needs keras, is not imported);
- loads the SavedModel and checks that every signature's inputs and outputs
  have a `None` batch dimension;
- replays the warm-up requests of `assets.extra`, at their batch size and at
  twice it, and checks that the first rows agree (≤ 1e-5, strings equal;
  row-wise outputs only, and not for a captioner with a random sampler).

It returns the report as a dict (raising `RuntimeError` if a check failed).
This module imports only TensorFlow, NumPy and the standard library, so it
also runs on its own: `python kerasmm/export/verify.py out/captioner/1`
prints the report as JSON.

Example:
```python
from kerasmm.export import verify
report = verify("out/captioner/1")
report["signatures"]["serving_default"]["outputs"]   # {"captions": {...}, "scores": {...}}
report["custom_ops"]                                  # [] for a captioner
```
"""

import glob
import importlib.util
import json
import os
import subprocess
import sys

BLOCKED_MODULES = ("kerasmm", "keras", "keras_hub", "tf_keras")


def verify(version_dir, timeout=600):
    """Run the checks on `version_dir` in a fresh process without kerasmm or keras; the report dict."""
    version_dir = os.path.abspath(os.fspath(version_dir))
    if not os.path.isfile(os.path.join(version_dir, "saved_model.pb")):
        raise FileNotFoundError(f"No SavedModel (saved_model.pb) in {version_dir}.")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), version_dir], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=os.path.dirname(version_dir))
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"Verifying {version_dir} failed:\n{done.stderr[-4000:]}")
    report = json.loads(lines[-1])
    if report.get("errors"):
        raise RuntimeError(f"Verifying {version_dir} failed: " + "; ".join(report["errors"]))
    return report


# --- what runs in the fresh process (TensorFlow only) ---------------------------------------


def block_imports(names=BLOCKED_MODULES):
    """Make `import <name>` fail for each of `names` (TensorFlow imports keras only if it can)."""
    for name in names:
        if name in sys.modules and sys.modules[name] is not None:
            raise RuntimeError(f"{name} is already imported; run the check in a fresh process.")
        sys.modules[name] = None


def graph_op_types(version_dir):
    """Op types used by the SavedModel's graph and function library (function calls left out)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops, functions = set(), set()
    for meta_graph in proto.meta_graphs:
        library = meta_graph.graph_def.library
        functions.update(f.signature.name for f in library.function)
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in library.function:
            ops.update(node.op for node in function.node_def)
    return ops - functions


def custom_ops(version_dir):
    """Sorted op types of the SavedModel that core TensorFlow does not define.

    Core ops are those of `tf.raw_ops` (every op TensorFlow exports to
    Python) and internal `_`-prefixed ones; the rest are other packages'
    (tensorflow-text's, say). This check runs where kerasmm cannot be
    imported, so it keeps to TensorFlow's public API.
    """
    import tensorflow as tf

    return sorted(op for op in graph_op_types(version_dir) if not (op.startswith("_") or hasattr(tf.raw_ops, op)))


def xla_ops(version_dir):
    """Sorted op types named `Xla*`: they run outside XLA clusters only through compile-on-demand."""
    return sorted(op for op in graph_op_types(version_dir) if op.startswith("Xla"))


def load_text_ops():
    """Load tensorflow-text's op libraries by path (no Python package import); their count."""
    import tensorflow as tf

    spec = importlib.util.find_spec("tensorflow_text")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The SavedModel uses tensorflow-text ops, and tensorflow-text is not installed.")
    libraries = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "python", "ops", "*.so")))
    for library in libraries:
        tf.load_op_library(library)
    return len(libraries)


def _spec(spec):
    return {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape.as_list()]}


def describe(loaded):
    """Signature name → {"inputs": {name: {dtype, shape}}, "outputs": {...}} of a loaded SavedModel."""
    return {
        name: {
            "inputs": {k: _spec(s) for k, s in function.structured_input_signature[1].items()},
            "outputs": {k: _spec(s) for k, s in function.structured_outputs.items()},
        }
        for name, function in loaded.signatures.items()
    }


def batch_dimension_errors(signatures):
    """Messages for every signature input or output whose first dimension is not `None`."""
    errors = []
    for name, sides in signatures.items():
        for side, specs in sides.items():
            for key, spec in specs.items():
                if not spec["shape"] or spec["shape"][0] is not None:
                    errors.append(f"{name} {side[:-1]} {key} has shape {spec['shape']}, no None batch dimension")
    return errors


def compare(first, second):
    """Largest absolute difference of numeric outputs and whether string outputs are equal."""
    import numpy as np

    difference, strings_equal = 0.0, True
    for key, a in first.items():
        a, b = np.asarray(a), np.asarray(second[key])
        if a.shape != b.shape:
            return float("inf"), False
        if a.dtype.kind in "OSU":
            strings_equal = strings_equal and bool((a == b).all())
        elif a.size:
            difference = max(difference, float(np.max(np.abs(a.astype("float64") - b.astype("float64")))))
    return difference, strings_equal


def check(version_dir, tolerance=1e-5):
    """The checks described in the module docstring; the report dict (`errors` lists failures)."""
    import numpy as np
    import tensorflow as tf

    report = {"version_dir": version_dir, "errors": []}
    report["custom_ops"] = custom_ops(version_dir)
    report["xla_ops"] = xla_ops(version_dir)
    report["text_op_libraries_loaded"] = load_text_ops() if report["custom_ops"] else 0
    loaded = tf.saved_model.load(version_dir)
    report["signatures"] = describe(loaded)
    report["errors"] += batch_dimension_errors(report["signatures"])
    try:
        from kerasmm.export import warmup
    except ImportError:  # run as a script where kerasmm is blocked: the sibling file (TensorFlow only)
        import warmup

    has_warmup = os.path.isfile(os.path.join(version_dir, warmup.WARMUP_DIR, warmup.WARMUP_FILE))
    requests = warmup.read_requests(version_dir) if has_warmup else []
    report["warmup_requests"] = len(requests)
    metadata_path = os.path.join(version_dir, "assets", "kerasmm_export.json")
    metadata = {}
    if os.path.isfile(metadata_path):
        with open(metadata_path, encoding="utf-8") as f:
            metadata = json.load(f)
    # A random sampler (top-k, top-p) writes other captions on every call: run, do not compare.
    report["compared_batch_sizes"] = metadata.get("deterministic", True)
    worst = 0.0
    for _, signature, inputs in requests:
        function = loaded.signatures[signature]
        single = {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        doubled = function(**{k: tf.constant(np.concatenate([v, v])) for k, v in inputs.items()})
        # Row-wise outputs only: one whose shape has other unknown dimensions (the score matrix
        # of a dual encoder) depends on the whole batch, its softmax over the texts above all.
        rows = [k for k, s in function.structured_outputs.items() if s.shape.as_list()[1:].count(None) == 0]
        head = {k: doubled[k].numpy()[tuple(slice(0, n) for n in single[k].shape)] for k in rows}
        difference, strings_equal = compare({k: single[k] for k in rows}, head)
        if not report["compared_batch_sizes"]:
            continue
        worst = max(worst, difference)
        if difference > tolerance or not strings_equal:
            report["errors"].append(f"{signature}: a batch twice the size gives other outputs ({difference:.3g})")
    report["max_difference_across_batch_sizes"] = worst
    return report


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python verify.py EXPORT_DIR/VERSION", file=sys.stderr)
        return 2
    block_imports()
    report = check(os.path.abspath(argv[0]))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED_MODULES and sys.modules[m] is not None)
    report["blocked_modules_imported"] = loaded
    if loaded:
        report["errors"].append(f"modules that must not load were imported: {loaded}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
