"""Datasets for kerasmm; `shapes` is the embedded default (no downloads).

Example:
```python
from kerasmm import data
ds = data.shapes(num_examples=64, batch_size=16, task="vqa")
print(data.label_names("vqa"))
```
"""

from kerasmm.data.shapes_data import (  # noqa: F401
    ANSWERS,
    BACKGROUND_GREY,
    COLOR_RGB,
    COLORS,
    COUNTS,
    PIXEL_NOISE,
    RELATIONS,
    SHAPES,
    SIZE_RADIUS_FRACTIONS,
    SIZES,
    SPECIAL_TOKENS,
    SPLITS,
    TASKS,
    TONE_FREQUENCIES,
    label_names,
    shapes,
    shapes_arrays,
    shapes_vocabulary,
)
from kerasmm.data import image_ops  # noqa: E402,F401
