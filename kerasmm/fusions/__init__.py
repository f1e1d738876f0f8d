"""Registered fusions: `kerasmm.fusions.get(name, **config)`.

A fusion takes a dict of modality tensors (plus optional `"<modality>_mask"`
presence flags) and returns one tensor.

Example:
```python
import numpy as np
import kerasmm
fusion = kerasmm.fusions.get("weighted_sum")
fused = fusion({"image": np.ones((2, 8), "float32"), "text": np.zeros((2, 8), "float32")})
```
"""

from kerasmm.registry import Registry

FUSIONS = Registry("fusion")
register = FUSIONS.register
get = FUSIONS.get
list = FUSIONS.list  # noqa: A001 - the registry's public verb
lookup = FUSIONS.lookup

from kerasmm.fusions import (  # noqa: E402,F401
    bilinear,
    concat,
    cross_attention,
    gated,
    product,
    weighted_sum,
)
from kerasmm.fusions.base import Fusion  # noqa: E402,F401
