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

import os

import tensorflow as tf

ASPECT_POLICIES = ("stretch", "crop", "pad")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
_WHITE = 255.0


def decode_image(data, min_size=None):
    """Decode JPEG, PNG, GIF or BMP bytes (a scalar string) to uint8 RGB `[H, W, 3]`.

    Greyscale is repeated over the three channels; palette images come out
    as RGB; an alpha channel is composited onto white (transparent pixels
    become white rather than whatever colour they happen to store). An
    animated GIF gives its first frame.

    With `min_size=(height, width)` a JPEG is decoded at the smallest of
    1/1, 1/2, 1/4, 1/8 scale that still covers `min_size` (libjpeg scales in
    the DCT domain, several times faster than decoding in full and resizing).
    """
    if min_size is not None:
        return tf.cond(
            tf.io.is_jpeg(data), lambda: _decode_jpeg_at_least(data, min_size), lambda: decode_image(data)
        )
    image = tf.io.decode_image(data, channels=0, expand_animations=False)
    image = tf.ensure_shape(image, (None, None, None))
    return to_rgb(image)


_JPEG_RATIOS = (1, 2, 4, 8)


def _decode_jpeg_at_least(data, min_size):
    shape = tf.image.extract_jpeg_shape(data)
    room = tf.minimum(shape[0] // min_size[0], shape[1] // min_size[1])  # how many times larger it is
    index = tf.reduce_sum(tf.cast(room >= tf.constant(_JPEG_RATIOS[1:], shape.dtype), tf.int32))
    branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in _JPEG_RATIOS]
    return tf.ensure_shape(tf.switch_case(index, branches), (None, None, 3))


def to_rgb(image):
    """uint8 `[H, W, C]` with C in 1–4 (grey, grey+alpha, RGB, RGBA) → uint8 `[H, W, 3]`."""
    # Gathers and arithmetic rather than tf.switch_case: a Case op counts as
    # stateful, and a stateful op makes the tf.data iterator uncheckpointable.
    channels = tf.shape(image)[-1]
    colour = tf.where(channels >= 3, tf.constant([0, 1, 2]), tf.constant([0, 0, 0]))
    rgb = tf.gather(image, colour, axis=-1)
    has_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))
    alpha = tf.cast(tf.gather(image, [channels - 1], axis=-1), tf.float32) / 255.0
    alpha = tf.where(has_alpha, alpha, tf.ones_like(alpha))
    return tf.ensure_shape(_over_white(rgb, alpha), (None, None, 3))


def _over_white(rgb, alpha):
    """Composite uint8 `rgb` with float `alpha` in [0, 1] onto white."""
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


def augment_image(image, seed, crop_scale=(0.8, 1.0), brightness=0.1, contrast=0.1, saturation=0.1):
    """Random flip, crop-and-resize and colour jitter of a uint8 `[H, W, 3]` image, for training.

    Uses stateless random ops: the same `seed` (an int `[2]` tensor) gives
    the same result, so a pipeline's randomness lives in its seeds and the
    pipeline stays checkpointable.
    """
    flip_seed, crop_seed, scale_seed, colour_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    )
    shape = tf.shape(image)
    pixels = tf.image.stateless_random_flip_left_right(tf.cast(image, tf.float32) / 255.0, flip_seed)
    scale = tf.random.stateless_uniform((), scale_seed, crop_scale[0], crop_scale[1])
    crop_h = tf.maximum(tf.cast(tf.cast(shape[0], tf.float32) * scale, tf.int32), 1)
    crop_w = tf.maximum(tf.cast(tf.cast(shape[1], tf.float32) * scale, tf.int32), 1)
    pixels = tf.image.stateless_random_crop(pixels, tf.stack([crop_h, crop_w, 3]), crop_seed)
    pixels = tf.image.resize(pixels, shape[:2], antialias=True)
    b_seed, c_seed, s_seed = tf.unstack(tf.random.experimental.stateless_split(colour_seed, num=3))
    pixels = tf.image.stateless_random_brightness(pixels, brightness, b_seed)
    pixels = tf.image.stateless_random_contrast(pixels, 1 - contrast, 1 + contrast, c_seed)
    pixels = tf.image.stateless_random_saturation(pixels, 1 - saturation, 1 + saturation, s_seed)
    pixels = tf.clip_by_value(pixels, 0.0, 1.0)
    return tf.ensure_shape(tf.cast(tf.round(pixels * 255.0), tf.uint8), image.shape)


def check_image(path):
    """`None` if `path` looks like a complete JPEG, PNG, GIF or BMP file, else the reason.

    Reads only the first and last bytes, so checking thousands of files is
    cheap; it catches missing and empty files, other files under an image
    name, and truncated files (no JPEG end marker, no PNG IEND chunk, no GIF
    trailer, a BMP shorter than its header says).
    """
    if not os.path.isfile(path):
        return "file not found"
    size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(0, size - 32))
        tail = f.read()
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return None if tail.rstrip(b"\x00").endswith(b"\x3b") else "truncated GIF (no trailer)"
    if head.startswith(b"BM") and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")
        return None if declared <= size else f"truncated BMP ({size} of {declared} bytes)"
    return "not a JPEG, PNG, GIF or BMP image"
