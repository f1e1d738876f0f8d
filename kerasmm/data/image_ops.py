"""Image ops for readers: graph-mode decode to RGB, upright, and resize with an aspect policy.

The decode, resize and augment ops are plain TensorFlow, so they run inside
tf.data and inside an exported SavedModel. Reading what a file's header
declares (the pre-check `check_image`, `MAX_IMAGE_PIXELS`, the EXIF
orientation) is `kerasmm.data.image_header`.

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

from kerasmm.data.image_header import exif_orientation

ASPECT_POLICIES = ("stretch", "crop", "pad")
INTERPOLATIONS = ("bilinear", "bicubic")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
_WHITE = 255.0


def decode_image(data, min_size=None):
    """Decode JPEG, PNG, GIF, BMP or WebP bytes (a scalar string) to uint8 RGB `[H, W, 3]`, upright.

    Greyscale is repeated over the three channels; palette images come out
    as RGB; an alpha channel is composited onto white (transparent pixels
    become white rather than whatever colour they happen to store). An
    animated GIF gives its first frame. A JPEG's EXIF orientation is applied,
    so a phone photo taken sideways comes out as it was shot.

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
    return orient(to_rgb(image), exif_orientation(data))


_JPEG_RATIOS = (1, 2, 4, 8)


def _decode_jpeg_at_least(data, min_size):
    orientation = exif_orientation(data)
    shape = tf.image.extract_jpeg_shape(data)
    stored = tf.where(orientation >= 5, tf.constant(min_size[::-1]), tf.constant(min_size))  # 5-8 transpose
    room = tf.minimum(shape[0] // stored[0], shape[1] // stored[1])  # how many times larger it is
    index = tf.reduce_sum(tf.cast(room >= tf.constant(_JPEG_RATIOS[1:], shape.dtype), tf.int32))
    branches = [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in _JPEG_RATIOS]
    return orient(tf.ensure_shape(tf.switch_case(index, branches), (None, None, 3)), orientation)


def orient(image, orientation):
    """`[H, W, C]` `image` turned upright from EXIF `orientation` (1–8): a transpose, then flips."""
    transposed = tf.cond(orientation >= 5, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
    flip_left_right = tf.reduce_any(tf.equal(orientation, [2, 3, 6, 7]))
    flip_up_down = tf.reduce_any(tf.equal(orientation, [3, 4, 7, 8]))
    image = tf.where(flip_left_right, tf.reverse(transposed, [1]), transposed)
    return tf.where(flip_up_down, tf.reverse(image, [0]), image)


def load_image(data, size, policy="crop", interpolation="bilinear"):
    """uint8 `[height, width, 3]` from encoded image bytes: the one image path of readers, search and export.

    `decode_image` (RGB, upright, JPEGs decoded at the smallest DCT scale
    that covers `size`), then `resize_image` with `policy`. Every route a
    file takes — a reader, `kerasmm search` and `Index`, an exported
    SavedModel — calls this, so the same file gives the same pixels.

    Example:
    ```python
    import tensorflow as tf
    from kerasmm.data import image_ops
    jpeg = tf.io.encode_jpeg(tf.zeros((40, 30, 3), tf.uint8))
    image_ops.load_image(jpeg, (16, 16)).shape   # (16, 16, 3), uint8, centre-cropped
    ```
    """
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return resize_image(decode_image(data, min_size=(height, width)), (height, width), policy, interpolation)


def interpolation_of(image_converter):
    """The `resize_image` interpolation of a keras_hub `ImageConverter`: "bicubic" if it says so, else "bilinear"."""
    return "bicubic" if getattr(image_converter, "interpolation", None) == "bicubic" else "bilinear"


def policy_of(image_converter):
    """The `resize_image` policy a keras_hub `ImageConverter` resizes with ("crop", "pad" or "stretch").

    None (no converter) gives "crop", the readers' default.
    """
    if image_converter is None or getattr(image_converter, "crop_to_aspect_ratio", False):
        return "crop"
    return "pad" if getattr(image_converter, "pad_to_aspect_ratio", False) else "stretch"


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


def resize_image(image, size, policy="stretch", interpolation="bilinear"):
    """Resize `[H, W, 3]` (or a batch) to `size` = (height, width) keeping uint8 if given uint8.

    Policies: "stretch" ignores the aspect ratio; "crop" resizes so the image
    just covers the target, then takes the centred window (the order of
    torchvision's `Resize` + `CenterCrop`, which CLIP-style processors use);
    "pad" fits the whole image inside the target and pads with white.
    `interpolation` is "bilinear" or "bicubic", antialiased when shrinking.
    """
    if policy not in ASPECT_POLICIES:
        raise ValueError(f"Unknown aspect policy {policy!r}; valid policies: {', '.join(ASPECT_POLICIES)}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; valid ones: {', '.join(INTERPOLATIONS)}.")
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    dtype = image.dtype
    pixels = tf.cast(image, tf.float32)
    if policy == "pad":
        # resize_with_pad pads with zeros; shift so the padding comes out white.
        pixels = tf.image.resize_with_pad(pixels - _WHITE, height, width, method=interpolation,
                                          antialias=True) + _WHITE
    elif policy == "crop":
        pixels = _cover_and_center_crop(pixels, height, width, interpolation)
    else:
        pixels = tf.image.resize(pixels, (height, width), method=interpolation, antialias=True)
    if dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)
    return tf.cast(pixels, dtype)


def _cover_and_center_crop(pixels, height, width, interpolation):
    """Resize so the image covers `(height, width)` (the other side truncated, as transformers' and
    torchvision's shortest-side resize do), then crop the centred window (offsets rounded down)."""
    shape = tf.shape(pixels)
    h, w = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
    scale = tf.maximum(height / h, width / w)
    # The small epsilon keeps a side that should come out whole (e.g. 38.0) from truncating to 37.
    new_h = tf.maximum(tf.cast(tf.floor(h * scale + 1e-3), tf.int32), height)
    new_w = tf.maximum(tf.cast(tf.floor(w * scale + 1e-3), tf.int32), width)
    pixels = tf.image.resize(pixels, tf.stack([new_h, new_w]), method=interpolation, antialias=True)
    return tf.image.crop_to_bounding_box(pixels, (new_h - height) // 2, (new_w - width) // 2, height, width)


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
