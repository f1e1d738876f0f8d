"""Datasets for kerasmm: readers for the formats users have, and `shapes`, the embedded default.

Every reader returns a batched `tf.data.Dataset` of `(features, targets)`
that the matching zoo model takes as it is, and follows the bad-record
policy of `kerasmm.data.errors` (`on_error="raise"` or `"skip"`).

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
from kerasmm.data import audio_ops, image_header, image_ops  # noqa: E402,F401
from kerasmm.data.coco import from_coco  # noqa: E402,F401
from kerasmm.data.errors import BadRecordError, SkippedRecords  # noqa: E402,F401
from kerasmm.data.folder import from_folder  # noqa: E402,F401
from kerasmm.data.manifest import from_manifest  # noqa: E402,F401
from kerasmm.data.text import load_vocabulary, save_vocabulary, train_vocabulary  # noqa: E402,F401
from kerasmm.data.tfrecord import from_tfrecord, to_tfrecord  # noqa: E402,F401


def __getattr__(name):
    # tensorflow_datasets loads only when its reader is first used.
    if name == "from_tfds":
        from kerasmm.data.tfds import from_tfds

        return from_tfds
    raise AttributeError(f"module 'kerasmm.data' has no attribute {name!r}")
