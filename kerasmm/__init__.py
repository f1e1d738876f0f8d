"""kerasmm: a Keras 3 model zoo for multimodal learning.

Example:
```python
import kerasmm
model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
model.fit(kerasmm.data.shapes(num_examples=64, batch_size=16), epochs=1)
```
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from kerasmm import data, distribute, encoders, export, fusions, losses, metrics, models, search, testing, zoo  # noqa: E402,F401
from kerasmm.version import __version__  # noqa: E402,F401
