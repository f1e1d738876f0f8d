"""Registered encoders: `kerasmm.encoders.get(name, **config)`.

Every encoder maps one modality to a dict with `"sequence"` `[B,T,D]`,
`"pooled"` `[B,D]` and `"sequence_mask"` `[B,T]`.

Example:
```python
import kerasmm
encoder = kerasmm.encoders.get("cnn", output_dim=32)
kerasmm.encoders.list()
```
"""

from kerasmm.registry import Registry

ENCODERS = Registry("encoder")
register = ENCODERS.register
get = ENCODERS.get
list = ENCODERS.list  # noqa: A001 - the registry's public verb
lookup = ENCODERS.lookup

# Explicit imports fill the registry; each module registers its own classes.
from kerasmm.encoders import audio, image, pretrained, text  # noqa: E402,F401
from kerasmm.encoders.base import Encoder  # noqa: E402,F401


def modality_of(name):
    """The modality ("text", "image", "audio") an encoder name works on."""
    return lookup(name).modality
