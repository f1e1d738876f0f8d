"""Where a keras-hub preset lives: a local directory, or a download the user asked for by name.

`local_preset(owner, preset)` takes what keras-hub's `from_preset` takes:
a local preset directory, a built-in preset name (`"clip_vit_base_patch16"`),
a `kaggle://` handle or an `hf://` handle. A remote one is downloaded whole,
once, into the cache keras-hub itself uses (kagglehub's, by default
`~/.cache/kagglehub`, or Hugging Face's, `~/.cache/huggingface`), and its
local directory returned. Nothing downloads unless a preset name or handle is
given; offline, that is a one-line `ValueError` saying how to fetch the
preset elsewhere and pass its directory.

Example:
```python
import tempfile, keras_hub
from kerasmm.encoders.presets import local_preset
preset = tempfile.mkdtemp()
keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                              intermediate_dim=16).save_to_preset(preset)
local_preset("example", preset)         # the absolute path, nothing fetched
```
"""

import os

import keras_hub

KAGGLE, HUGGING_FACE = "kaggle://", "hf://"


def is_remote(preset):
    """Whether `preset` names something to download: a `scheme://` handle or a built-in preset name."""
    preset = os.fspath(preset)
    return "://" in preset or (not os.path.exists(preset) and preset in keras_hub.models.Backbone.presets)


def local_preset(owner, preset):
    """The absolute directory of `preset`, downloading a named one first (see the module docstring)."""
    if not isinstance(preset, (str, os.PathLike)):
        raise ValueError(f"{owner}: preset must be a keras-hub preset name, handle or local directory, got {preset!r}.")
    preset = os.fspath(preset)
    path = _download(owner, preset) if is_remote(preset) else preset
    if not os.path.isdir(path):
        raise ValueError(
            f"{owner}: {preset!r} is neither a local preset directory nor a keras-hub preset name "
            "(see keras_hub.models.Backbone.presets) or kaggle:// / hf:// handle.")
    path = os.path.abspath(path)  # keras-hub reads built-in names before local directories
    if not any(os.path.isfile(os.path.join(path, name)) for name in ("config.json", "open_clip_config.json")):
        raise ValueError(f"{owner}: the directory {path!r} has no config.json (nor open_clip_config.json), so it is "
                         "not a keras-hub preset or a checkpoint kerasmm converts.")
    return path


def _download(owner, preset):
    handle = keras_hub.models.Backbone.presets.get(preset, {}).get("kaggle_handle", preset)
    try:
        if handle.startswith(KAGGLE):
            import kagglehub

            return kagglehub.model_download(handle[len(KAGGLE):])
        if handle.startswith(HUGGING_FACE):
            import huggingface_hub

            return huggingface_hub.snapshot_download(handle[len(HUGGING_FACE):])
    except Exception as err:  # noqa: BLE001 - whatever the hub client raised, the user needs the one line below
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"{owner}: cannot download the keras-hub preset {preset!r} ({type(err).__name__}: {reason}). "
            f"Without network here, run `keras_hub.models.Backbone.from_preset({preset!r})` (and the tokenizer's) "
            "on a machine with network, `save_to_preset(DIR)` them, copy DIR here and pass DIR as the preset."
        ) from None
    raise ValueError(f"{owner}: kerasmm fetches presets from kaggle:// and hf:// handles only, got {preset!r}.")
