"""Pretrained models from the checkpoints people have on disk, as keras-hub models, without torch.

`load_pretrained(owner, preset)` recognises what `preset` is and returns a
`Pretrained(kind, backbone, tokenizer, image_converter)`:

| format | recognised by | becomes |
| --- | --- | --- |
| keras-hub preset | `config.json` written by `save_to_preset` | whatever the preset holds |
| transformers CLIP | `config.json` with `"model_type": "clip"`, `model.safetensors`, `vocab.json`, `merges.txt` | `CLIPBackbone` + `CLIPTokenizer` |
| transformers SigLIP | `config.json` with `"model_type": "siglip"`, `model.safetensors`, `spiece.model` | `SigLIPBackbone` + `SigLIPTokenizer` |
| open_clip | `open_clip_config.json`, `open_clip_model.safetensors`, `vocab.json`, `merges.txt` | `CLIPBackbone` + `CLIPTokenizer` |

A preset name or `kaggle://` / `hf://` handle is downloaded first (see
`kerasmm.encoders.presets`). Weights are read with safetensors and numpy;
a config that does not match its weights is one error naming each missing,
mis-shaped and unexpected tensor. The image converter carries the
checkpoint's own preprocessing (size, resize and crop, bicubic
interpolation, mean and standard deviation as `scale` / `offset` on
0–255 pixels).

Example:
```python
from kerasmm.encoders.checkpoints import load_pretrained
clip = load_pretrained("example", "/data/checkpoints/clip-vit-base-patch32")  # a transformers directory
clip.backbone.get_text_embeddings(clip.tokenizer(["a photo of a cat"]).to_tensor()[:, :77])
```
"""

import collections
import json
import os

import keras
import keras_hub

from kerasmm.encoders.presets import local_preset

Pretrained = collections.namedtuple("Pretrained", ["kind", "backbone", "tokenizer", "image_converter"])
Pretrained.__doc__ = """A loaded checkpoint: `kind` ("clip", "siglip" or None for other keras-hub backbones),
the keras-hub `backbone`, its `tokenizer` and `image_converter` (each None when the checkpoint has none)."""

# What each on-disk format needs, for the error that lists them.
FORMATS = {
    "keras-hub preset": "config.json from save_to_preset (+ tokenizer.json, image_converter.json)",
    "transformers CLIP": 'config.json with "model_type": "clip", model.safetensors, vocab.json, merges.txt',
    "transformers SigLIP": 'config.json with "model_type": "siglip", model.safetensors, spiece.model',
    "open_clip": "open_clip_config.json, open_clip_model.safetensors, vocab.json, merges.txt",
}


def checkpoint_format(path):
    """"keras_hub", "hf_clip", "hf_siglip", "open_clip", or None for a directory that is none of these."""
    if os.path.isfile(os.path.join(path, "open_clip_config.json")):
        return "open_clip"
    config = _json(os.path.join(path, "config.json"))
    if config is None:
        return None
    if "registered_name" in config or "class_name" in config:
        return "keras_hub"
    return {"clip": "hf_clip", "siglip": "hf_siglip"}.get(config.get("model_type"))


def load_pretrained(owner, preset, dtype=None):
    """The `Pretrained` model in `preset`: a directory of any format above, or a preset name or handle."""
    path = local_preset(owner, preset)
    found = checkpoint_format(path)
    if found is None:
        config = _json(os.path.join(path, "config.json"))
        if config is not None and "model_type" in config:
            raise ValueError(
                f"{owner}: {path!r} is a transformers {config['model_type']!r} checkpoint; kerasmm converts "
                "transformers CLIP and SigLIP checkpoints (model_type 'clip' or 'siglip') only."
            )
        formats = "; ".join(f"{name}: {files}" for name, files in FORMATS.items())
        raise ValueError(f"{owner}: {path!r} is not a checkpoint kerasmm reads. Expected one of: {formats}.")
    if found == "keras_hub":
        return _keras_hub_preset(owner, path, dtype)
    from kerasmm.encoders.checkpoints import hf_clip, hf_siglip, open_clip

    convert = {"hf_clip": hf_clip.convert, "hf_siglip": hf_siglip.convert, "open_clip": open_clip.convert}[found]
    return convert(owner, path, dtype=dtype)


def _keras_hub_preset(owner, path, dtype):
    kwargs = {} if dtype is None else {"dtype": dtype}
    try:
        backbone = keras_hub.models.Backbone.from_preset(path, **kwargs)
    except (ValueError, KeyError, OSError, TypeError) as err:
        raise ValueError(f"{owner}: could not load a keras-hub backbone from the preset {path!r}: {err}") from err
    tokenizer = image_converter = None
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(path)
    if os.path.isfile(os.path.join(path, "image_converter.json")):
        image_converter = _image_converter(path)
    kind = {keras_hub.models.CLIPBackbone: "clip", keras_hub.models.SigLIPBackbone: "siglip"}.get(type(backbone))
    return Pretrained(kind, backbone, tokenizer, image_converter)


def _image_converter(path):
    try:
        return keras_hub.layers.ImageConverter.from_preset(path)
    except ValueError:
        # keras-hub ties CLIPImageConverter to CLIPBackbone: a preset of a bare CLIPVisionEncoder with its
        # converter is refused by from_preset, so read the saved converter config itself.
        return keras.saving.deserialize_keras_object(_json(os.path.join(path, "image_converter.json")))


def _json(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path!r} is not valid JSON ({err}).") from None
