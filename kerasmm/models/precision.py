"""Mixed precision and XLA switches for models built from outside (the zoo applies them).

`precision_scope(precision)` builds every layer created inside it under one
Keras dtype policy and restores the global policy after, so nothing leaks
into models built later. Each layer records its policy in its config, so a
`.keras` file loads mixed precision again without any global setting.
Under `"mixed_float16"` Keras wraps the optimizer the model is compiled
with in a `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling: a
step with a non-finite gradient is skipped and the scale halved).

What stays float32 under every policy: the variables, the preprocessors
(pixels, token ids and waveforms match the backbone contract whatever the
policy), the losses, and the last layer of each task (classifier logits,
dual-encoder embeddings and logit scale, captioner logits, generated pixels).

Example:
```python
import kerasmm
from kerasmm.models import precision
model = kerasmm.zoo.get("tiny_dual_encoder", precision="mixed_float16", jit_compile=True)
model.optimizer                      # a LossScaleOptimizer around Adam
precision.loss_scale(model)          # 32768.0
precision.set_jit_compile(model, False)
```
"""

import contextlib

import keras

from kerasmm.backend_compat import flatten_layers

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
JIT_COMPILE = (True, False, "auto")


def check_precision(precision):
    """`precision` if it is None (the global policy) or one of `PRECISIONS`, else a ValueError."""
    if precision is None or (isinstance(precision, str) and precision in PRECISIONS):
        return precision
    raise ValueError(
        f"Unknown precision {precision!r}. Valid precisions: {', '.join(PRECISIONS)} "
        "(or None for the global Keras dtype policy)."
    )


def check_jit_compile(jit_compile):
    """`jit_compile` if it is True, False or "auto", else a ValueError."""
    if isinstance(jit_compile, bool) or (isinstance(jit_compile, str) and jit_compile == "auto"):
        return jit_compile
    raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}.")


@contextlib.contextmanager
def precision_scope(precision):
    """Layers created inside use `precision`'s dtype policy; the global policy is restored on exit.

    None leaves the global policy as it is. Keras keeps the policy per
    thread, so the scope does not reach other threads.
    """
    precision = check_precision(precision)
    if precision is None:
        yield keras.config.dtype_policy()
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)


def keep_float32(layer):
    """Give `layer` and its sublayers that have a mixed policy the float32 policy; returns `layer`.

    For layers without weights that must not change dtype with the policy,
    such as preprocessors (a keras_hub `ImageConverter` under
    `mixed_bfloat16` would resize images to bfloat16). The new policy goes
    into the layers' configs, so it survives saving.
    """
    if layer is None:
        return layer
    for sublayer in flatten_layers(layer):
        if sublayer.dtype_policy.name.startswith("mixed_"):
            sublayer.dtype_policy = "float32"
    return layer


def set_jit_compile(model, jit_compile):
    """Compile `model` again with XLA on (True), off (False) or Keras' choice ("auto"); returns `model`.

    The model keeps its optimizer (with its state) and gets its loss and
    metrics again from its compile config, so only `jit_compile` changes
    (metric states restart, as with any `compile`). The setting is stored in
    the compile config and so survives a `.keras` round trip. Keras turns
    `jit_compile=True` off, with a warning, for models with layers that XLA
    cannot compile.
    """
    jit_compile = check_jit_compile(jit_compile)
    if not getattr(model, "compiled", False):
        raise ValueError("set_jit_compile needs a compiled model; call model.compile(...) first.")
    config = model.get_compile_config()
    config = dict(keras.saving.deserialize_keras_object(config)) if config else {}
    # The live optimizer, not a copy: its state (and a LossScaleOptimizer's scale) carries over.
    config["optimizer"] = model.optimizer
    config["jit_compile"] = jit_compile
    model.compile(**config)
    return model


def loss_scale(model):
    """The current dynamic loss scale of a model compiled under `mixed_float16`, else None."""
    optimizer = getattr(model, "optimizer", None)
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    if not optimizer.built:
        return float(optimizer.initial_scale)
    return float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
