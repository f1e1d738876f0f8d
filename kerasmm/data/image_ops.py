"""Graph-mode image ops for readers: decode any common format to RGB, resize with an aspect policy.

Everything here is plain TensorFlow, so it runs inside tf.data and inside an
exported SavedModel.

Example:
```python
import tensorflow as tf
from kerasmm.data import image_ops
png = tf.io.encode_png(tf.zeros((20, 10, 1), tf.uint8))   # a greyscale PNG
rgb = image_ops.decode_image(png)                          # uint8 [20, 10, 3]
square = image_ops.resize_image(rgb, (16, 16), policy="pad")
```
"""

import tensorflow as tf

ASPECT_POLICIES = ("stretch", "crop", "pad")
_WHITE = 255.0


def decode_image(data):
    """Decode JPEG, PNG, GIF or BMP bytes (a scalar string) to uint8 RGB `[H, W, 3]`.

    Greyscale is repeated over the three channels; palette images come out
    as RGB; an alpha channel is composited onto white (transparent pixels
    become white rather than whatever colour they happen to store). An
    animated GIF gives its first frame.
    """
    image = tf.io.decode_image(data, channels=0, expand_animations=False)
    image = tf.ensure_shape(image, (None, None, None))
    return to_rgb(image)


def to_rgb(image):
    """uint8 `[H, W, C]` with C in 1–4 (grey, grey+alpha, RGB, RGBA) → uint8 `[H, W, 3]`."""
    channels = tf.shape(image)[-1]
    tf.debugging.assert_less_equal(channels, 4, message="an image has at most 4 channels")
    branches = [
        lambda: tf.image.grayscale_to_rgb(image[..., :1]),
        lambda: _over_white(tf.image.grayscale_to_rgb(image[..., :1]), image[..., 1:2]),
        lambda: image[..., :3],
        lambda: _over_white(image[..., :3], image[..., 3:4]),
    ]
    rgb = tf.switch_case(channels - 1, branches)
    return tf.ensure_shape(rgb, (None, None, 3))


def _over_white(rgb, alpha):
    alpha = tf.cast(alpha, tf.float32) / 255.0
    blended = tf.cast(rgb, tf.float32) * alpha + _WHITE * (1.0 - alpha)
    return tf.cast(tf.round(blended), tf.uint8)


def resize_image(image, size, policy="stretch"):
    """Resize `[H, W, 3]` (or a batch) to `size` = (height, width) keeping uint8 if given uint8.

    Policies: "stretch" ignores the aspect ratio; "crop" takes the largest
    centred window of the target aspect ratio, then resizes; "pad" fits the
    whole image inside the target and pads with white.
    """
    if policy not in ASPECT_POLICIES:
        raise ValueError(f"Unknown aspect policy {policy!r}; valid policies: {', '.join(ASPECT_POLICIES)}.")
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    dtype = image.dtype
    pixels = tf.cast(image, tf.float32)
    if policy == "crop":
        pixels = _center_crop_to_aspect(pixels, height / width)
    if policy == "pad":
        # resize_with_pad pads with zeros; shift so the padding comes out white.
        pixels = tf.image.resize_with_pad(pixels - _WHITE, height, width, antialias=True) + _WHITE
    else:
        pixels = tf.image.resize(pixels, (height, width), antialias=True)
    if dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)
    return tf.cast(pixels, dtype)


def _center_crop_to_aspect(pixels, aspect):
    """The largest centred window whose height / width equals `aspect`."""
    shape = tf.shape(pixels)
    h, w = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
    crop_h = tf.minimum(h, w * aspect)
    crop_w = tf.minimum(w, h / aspect)
    crop_h = tf.cast(tf.maximum(tf.round(crop_h), 1.0), tf.int32)
    crop_w = tf.cast(tf.maximum(tf.round(crop_w), 1.0), tf.int32)
    top = (shape[-3] - crop_h) // 2
    left = (shape[-2] - crop_w) // 2
    return tf.image.crop_to_bounding_box(pixels, top, left, crop_h, crop_w)
