"""A checkpoint's tensors, read with safetensors and numpy, checked against what a config expects."""

import os

import numpy as np


class CheckpointTensors:
    """The tensors of a `.safetensors` file, handed out by name and shape; every problem named at the end.

    A converter `take`s each tensor its config implies. Missing and
    mis-shaped tensors are recorded (a zero array of the expected shape is
    returned so the conversion can go on and find the rest), and `finish()`
    raises one `ValueError` line naming each missing, mis-shaped and unused
    tensor, so a config that does not match its weights is reported whole.

    Example:
    ```python
    import tempfile, os, numpy as np, safetensors.numpy
    from kerasmm.encoders.checkpoints.tensors import CheckpointTensors
    path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    safetensors.numpy.save_file({"w": np.zeros((2, 3), "float32")}, path)
    tensors = CheckpointTensors("example", path)
    tensors.take("w", (2, 3)).shape   # (2, 3)
    tensors.finish()                  # nothing missing, mis-shaped or left over
    ```
    """

    def __init__(self, owner, path):
        import safetensors.numpy

        self.owner, self.path = owner, os.fspath(path)
        try:
            self._tensors = safetensors.numpy.load_file(self.path)
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ValueError(f"{owner}: cannot read the safetensors file {self.path!r} ({reason}).") from None
        self._used = set()
        self._missing = []
        self._misshaped = []

    def __contains__(self, name):
        return name in self._tensors

    def names(self):
        """Every tensor name in the file."""
        return sorted(self._tensors)

    def take(self, name, shape):
        """The float32 tensor `name`, which the config says has `shape`."""
        shape = tuple(int(s) for s in shape)
        self._used.add(name)
        if name not in self._tensors:
            self._missing.append(name)
            return np.zeros(shape, "float32")
        value = self._tensors[name]
        if tuple(value.shape) != shape:
            self._misshaped.append(f"{name} {tuple(value.shape)} (config: {shape})")
            return np.zeros(shape, "float32")
        return np.asarray(value, "float32")

    def skip(self, *names):
        """Mark tensors the conversion does not need (e.g. buffers such as position ids) as used."""
        self._used.update(names)

    def finish(self):
        """Raise one line naming every missing, mis-shaped and unused tensor, if there is any."""
        unused = sorted(set(self._tensors) - self._used)
        problems = []
        for label, names in (("missing", self._missing), ("mis-shaped", self._misshaped), ("unexpected", unused)):
            if names:
                shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                problems.append(f"{label}: {shown}")
        if problems:
            raise ValueError(
                f"{self.owner}: the weights in {self.path!r} do not match its config ({'; '.join(problems)})."
            )
