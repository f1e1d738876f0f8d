"""kerasmm: a Keras 3 model zoo for multimodal learning.

Example:
```python
import kerasmm
model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
model.fit(kerasmm.data.shapes(num_examples=64, batch_size=16), epochs=1)
```

`import kerasmm` imports every part and so registers every encoder, fusion
and model with Keras (a script may then `keras.saving.load_model` a kerasmm
file). Only the `kerasmm` command itself starts light, so `kerasmm --help`
and `kerasmm --version` answer without TensorFlow: there each public part
(`kerasmm.zoo`, `kerasmm.data`, ...) is imported on first use (PEP 562), and
`kerasmm.load_all()` imports them all (what loading a `.keras` file needs).
"""

import importlib
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from kerasmm.version import __version__  # noqa: E402,F401

# The public parts, imported on first use; each of them imports TensorFlow.
SUBPACKAGES = ("data", "distribute", "encoders", "export", "fusions", "losses", "metrics", "models", "search",
               "testing", "zoo")
__all__ = [*SUBPACKAGES, "__version__", "load_all"]


_loading = False


def __getattr__(name):
    if name in SUBPACKAGES:
        # Only that part (and what it imports): loading them all here would re-enter a part still being
        # imported when it asks for another (`from kerasmm import encoders`). `load_all()` registers everything.
        return importlib.import_module(f"{__name__}.{name}")  # also sets it as this module's attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *SUBPACKAGES})


def load_all():
    """Import every public part now: registers all encoders, fusions, models and zoo entries with Keras."""
    global _loading
    if _loading:  # a part being imported asked for another: it is imported on its own, in that part's order
        return
    _loading = True
    try:
        for name in SUBPACKAGES:
            importlib.import_module(f"{__name__}.{name}")
    finally:
        _loading = False


def _started_as_the_command():
    """Whether this process is the `kerasmm` command: its console script, or `python -m kerasmm.<module>`
    (while runpy imports the package of an `-m` target, `sys.argv[0]` is "-m")."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return program in ("kerasmm", "kerasmm.exe", "-m")


if not _started_as_the_command() or "keras" in sys.modules:
    load_all()
