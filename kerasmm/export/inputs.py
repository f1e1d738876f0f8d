"""Graph ops for raw serving inputs: checked batches of encoded images, WAV files and strings.

Everything here runs inside the exported SavedModel. A bad request (an empty
batch, an empty string, bytes that are not an image or a WAV file, inputs of
different batch sizes) fails with a `tf.errors.InvalidArgumentError` whose
message names the input and the problem, e.g.
"assertion failed: [image_bytes: element 1 is not a JPEG, PNG, GIF, BMP or
WebP image (index:)] [[1]]".

Example:
```python
import tensorflow as tf
from kerasmm.export import inputs
png = tf.io.encode_png(tf.zeros((40, 20, 3), tf.uint8))
pixels = inputs.decode_images(inputs.checked_bytes(tf.stack([png]), "image_bytes", "image"), (16, 16))
pixels.shape   # (1, 16, 16, 3), float32 in [0, 1]
```
"""

import tensorflow as tf

from kerasmm.data import audio_ops, image_ops

IMAGE_INPUT = "image_bytes"
TEXT_INPUT = "text"
AUDIO_INPUT = "audio_bytes"
INPUT_NAMES = {"image": IMAGE_INPUT, "text": TEXT_INPUT, "audio": AUDIO_INPUT}

# Leading bytes of the formats tf.io.decode_image reads (WebP: "RIFF" then "WEBP" at offset 8).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _starts_with(values, prefix, offset=0):
    # Padded first: substr fails ("pos out of range") on strings shorter than `offset`.
    padded = tf.strings.join([values, tf.constant(b"\0" * (offset + len(prefix)))])
    return tf.equal(tf.strings.substr(padded, offset, len(prefix)), prefix)


def is_image(values):
    """bool `[B]`: whether each string starts like a JPEG, PNG, GIF, BMP or WebP file."""
    found = _starts_with(values, b"RIFF") & _starts_with(values, b"WEBP", 8)
    for magic in _IMAGE_MAGIC:
        found = found | _starts_with(values, magic)
    return found


def is_wav(values):
    """bool `[B]`: whether each string starts with a RIFF/WAVE header."""
    return _starts_with(values, b"RIFF") & _starts_with(values, b"WAVE", 8)


def _assert_none(bad, message):
    """An Assert that fails with `message` and the indices where `bad` holds."""
    indices = tf.reshape(tf.where(bad), [-1])
    return tf.debugging.Assert(tf.equal(tf.size(indices), 0), [message, indices], summarize=8)


def checked_batch(values, name):
    """`values` (a `[B]` string batch), run after a check that the batch is not empty."""
    check = tf.debugging.Assert(
        tf.size(values) > 0, [f"{name} is an empty batch: send at least one element"]
    )
    with tf.control_dependencies([check]):
        return tf.identity(values)


def checked_bytes(values, name, kind):
    """`values` after checks: a non-empty batch, no empty string, and each an image (or WAV) file.

    `kind` is "image" or "audio".
    """
    values = checked_batch(values, name)
    empty = tf.equal(tf.strings.length(values), 0)
    if kind == "image":
        wrong, what = ~is_image(values), "a JPEG, PNG, GIF, BMP or WebP image"
    elif kind == "audio":
        wrong, what = ~is_wav(values), "a WAV file (RIFF/WAVE header)"
    else:
        raise ValueError(f"kind must be 'image' or 'audio', got {kind!r}.")
    checks = [
        _assert_none(empty, f"{name}: element is an empty string, not {what} (index:)"),
        _assert_none(wrong & ~empty, f"{name}: element is not {what} (index:)"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(values)


def same_batch_size(named):
    """`named` (dict name → `[B]` tensor) after a check that every batch has the same size."""
    if len(named) < 2:
        return named
    names = list(named)
    sizes = tf.stack([tf.size(named[n]) for n in names])
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(sizes, sizes[0])),
        [f"the inputs {', '.join(names)} must have the same batch size; got sizes", sizes],
    )
    with tf.control_dependencies([check]):
        return {n: tf.identity(v) for n, v in named.items()}


def decode_images(image_bytes, image_size, resize=None):
    """float32 `[B, height, width, 3]` in [0, 1] from a `[B]` batch of encoded images.

    Each image is decoded to RGB (`kerasmm.data.image_ops.decode_image`:
    greyscale repeated, alpha composited onto white, first GIF frame), scaled
    to [0, 1] and, unless it already has `image_size`, passed to `resize` (a
    function of a `[1, H, W, 3]` float batch; default bilinear with
    antialiasing), exactly as a model's preprocessor treats one raw image.
    """
    height, width = (int(s) for s in image_size)
    if resize is None:
        def resize(batch):
            return tf.image.resize(batch, (height, width), antialias=True)

    def decode_one(data):
        pixels = tf.cast(image_ops.decode_image(data), tf.float32) / 255.0
        same = tf.reduce_all(tf.equal(tf.shape(pixels)[:2], [height, width]))
        pixels = tf.cond(same, lambda: pixels, lambda: tf.cast(resize(pixels[None]), tf.float32)[0])
        return tf.ensure_shape(pixels, (height, width, 3))

    return tf.map_fn(
        decode_one, image_bytes, fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32)
    )


def decode_waves(audio_bytes, length, sample_rate):
    """float32 `[B, length]` mono waveforms at `sample_rate` Hz from a `[B]` batch of 16-bit PCM WAV files."""
    length = int(length)
    return tf.map_fn(
        lambda data: audio_ops.decode_wav(data, sample_rate=sample_rate, length=length),
        audio_bytes,
        fn_output_signature=tf.TensorSpec((length,), tf.float32),
    )
