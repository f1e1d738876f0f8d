"""The model zoo: `kerasmm.zoo.get(name, **overrides)` → a compiled model.

Each entry is a small architecture dict plus the builder that turns it into
a model; each family's entries are in `kerasmm/models/<family>/<family>_presets.py`.
Every entry has a `tiny_<name>` twin for tests; `list()` leaves the tiny
twins out unless asked.

Example:
```python
import kerasmm
kerasmm.zoo.list()                        # ['audio_visual_classifier', ...]
model = kerasmm.zoo.get("tiny_weighted_sum_classifier", learning_rate=3e-3)
model = kerasmm.zoo.get("tiny_dual_encoder", precision="mixed_bfloat16", jit_compile=True)
model = kerasmm.zoo.get("tiny_captioner", data=kerasmm.data.shapes(num_examples=32, task="captioning"))
```
"""

import copy

from kerasmm.models.precision import (
    check_jit_compile,
    check_precision,
    keep_float32,
    precision_scope,
    set_jit_compile,
)
from kerasmm.models.captioner import captioner_presets
from kerasmm.models.classifier import classifier_presets
from kerasmm.models.dual_encoder import dual_encoder_presets, pretrained_dual_encoder_presets
from kerasmm.models.text_to_image import text_to_image_presets
from kerasmm.registry import Registry
from kerasmm.zoo import data_fit

# Each family's presets module: SETTINGS (every setting and its default), build(**settings) and PRESETS.
FAMILY_PRESETS = (classifier_presets, dual_encoder_presets, pretrained_dual_encoder_presets, captioner_presets,
                  text_to_image_presets)

ZOO = Registry("zoo entry", keras_serializable=False)
TINY_PREFIX = "tiny_"


class ZooEntry:
    """A named architecture: `builder(**config)` returns a compiled model."""

    def __init__(self, name, builder, config, task, description="", alias_of=None):
        self.name = name
        self.alias_of = alias_of
        self.builder = builder
        self.config = config
        self.task = task
        self.description = description

    def __call__(self, precision=None, jit_compile="auto", data=None, **overrides):
        """A new compiled model; see `get` for `precision`, `jit_compile` and `data`."""
        precision = check_precision(precision)
        jit_compile = check_jit_compile(jit_compile)
        if data is not None:
            fitted, notes = data_fit.fit_settings(self, data, overrides)
            data_fit.report(self.name, notes)
            overrides = {**fitted, **overrides}
        config = merge_config(self.config, overrides, self.name)
        with precision_scope(precision):
            model = self.builder(**config)
        # Preprocessing has no weights and must keep the backbone contract's
        # dtypes (float32 pixels and waveforms) whatever the policy.
        keep_float32(getattr(model, "preprocessor", None))
        if jit_compile != "auto":
            set_jit_compile(model, jit_compile)
        return model

    def __repr__(self):
        return f"ZooEntry({self.name!r}, task={self.task!r})"


def register(name, builder, config, task, description="", alias_of=None):
    """Register an architecture dict under `name`; names are unique (`alias_of` names the entry it repeats)."""
    return ZOO.register(name, ZooEntry(name, builder, copy.deepcopy(config), task, description, alias_of))


def register_with_twin(names, builder, defaults, full, tiny, description):
    """Register each of `names` (aliases share one architecture) and its `tiny_` twin.

    `full` and `tiny` are completed with the family's `defaults`; a setting
    the family does not have is an error, and the task is `defaults["task"]`.
    """
    names = [names] if isinstance(names, str) else [*names]  # (`list` is this module's own)
    for name in names:
        alias_of = names[0] if name != names[0] else None
        for prefix, config in (("", full), (TINY_PREFIX, tiny)):
            unknown = set(config) - set(defaults)
            if unknown:
                raise ValueError(f"{prefix}{name}: unknown settings {sorted(unknown)}.")
            merged = {**defaults, **config}
            register(prefix + name, builder, merged, task=merged["task"], description=description,
                     alias_of=alias_of and prefix + alias_of)


def get(name, precision=None, jit_compile="auto", data=None, **overrides):
    """A new compiled model for the entry `name`, with `overrides` merged into its config.

    Args:
        name: a registered entry (see `list`).
        precision: None (the global Keras dtype policy), "float32",
            "mixed_bfloat16" or "mixed_float16": the dtype policy every layer
            of the model is built with (variables stay float32; losses, the
            task's output layer and the preprocessor compute in float32). It
            is saved with the model. Under "mixed_float16" the optimizer is a
            `keras.optimizers.LossScaleOptimizer`.
        jit_compile: True or False to compile the train, test and predict
            steps with XLA or not; "auto" keeps Keras' choice (XLA on GPUs
            and TPUs when no distribution strategy is active).
        data: the training data, a `tf.data.Dataset` of `(features,
            targets)` batches (a kerasmm reader's): read once to set the
            class names and count, the vocabulary and the sequence length
            from it, each choice printed (see `kerasmm.zoo.data_fit`).
        **overrides: settings of the entry's architecture dict.
    """
    return ZOO.get(name, precision=precision, jit_compile=jit_compile, data=data, **overrides)


def entry(name):
    """The `ZooEntry` registered under `name`."""
    return ZOO.lookup(name)


def list(pattern=None, include_tiny=False, include_aliases=True):  # noqa: A001 - the registry's public verb
    """Sorted entry names (optionally matching a glob `pattern`); tiny twins only on request.

    `include_aliases=False` leaves out names that repeat another entry's
    architecture (e.g. `audio_visual_captioner` for `crossmodal_lm`).
    """
    names = ZOO.list(pattern)
    return [
        n for n in names
        if (include_tiny or not n.startswith(TINY_PREFIX)) and (include_aliases or ZOO.lookup(n).alias_of is None)
    ]


def merge_config(base, overrides, name="entry"):
    """`base` with `overrides` merged in; nested dicts merge key by key.

    A nested dict whose "name" differs from the base's (say another encoder)
    replaces it rather than merging, since the old settings would not apply;
    a nested value of None removes the key (e.g. `encoders={"text": None}`
    makes an image-only model).
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if key not in merged:
            raise ValueError(f"{name} has no setting {key!r}. Valid settings: {', '.join(sorted(merged))}.")
        old = merged[key]
        if isinstance(old, dict) and isinstance(value, dict) and value.get("name", old.get("name")) == old.get("name"):
            merged[key] = _merge_nested(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_nested(old, new):
    out = dict(old)
    for key, value in new.items():
        if value is None:
            out.pop(key, None)
        elif (
            isinstance(out.get(key), dict)
            and isinstance(value, dict)
            and value.get("name", out[key].get("name")) == out[key].get("name")
        ):
            out[key] = _merge_nested(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _register_family(presets):
    for preset in presets.PRESETS:
        register_with_twin(preset["names"], presets.build, presets.SETTINGS, preset["full"], preset["tiny"],
                           preset["description"])


for _family in FAMILY_PRESETS:
    _register_family(_family)
