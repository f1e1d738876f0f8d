"""Graph ops for raw serving inputs: checked batches of encoded images, WAV files and strings.

Everything here runs inside the exported SavedModel. A bad request (an empty
batch, an empty string, bytes that are not an image or a WAV file, an image
whose header declares more than `image_header.MAX_IMAGE_PIXELS` pixels, an
animated WebP, text that is empty, blank, not UTF-8 or over
`MAX_TEXT_BYTES`, inputs of different batch sizes) fails with a
`tf.errors.InvalidArgumentError` whose message names the input and the
problem, e.g.
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

from kerasmm.data import audio_ops, image_header, image_ops

# Longest text a request may send, in UTF-8 bytes: far over any model's sequence length, and bounded.
MAX_TEXT_BYTES = 16384

IMAGE_INPUT = "image_bytes"
TEXT_INPUT = "text"
AUDIO_INPUT = "audio_bytes"
INPUT_NAMES = {"image": IMAGE_INPUT, "text": TEXT_INPUT, "audio": AUDIO_INPUT}
# Text a captioner's caption continues (the `caption_prompted` signature).
PROMPT_INPUT = "prompt"
# The question a generative question answerer answers.
QUESTION_INPUT = "question"

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


def assert_none(bad, message):
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


def checked_bytes(values, name, kind, max_pixels=None):
    """`values` after checks: a non-empty batch, no empty string, and each an image (or WAV) file.

    `kind` is "image" or "audio". Images must also declare at most
    `max_pixels` pixels in their header (default `image_header.MAX_IMAGE_PIXELS`)
    and not be animated WebP, checked before anything is decoded.
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
        assert_none(empty, f"{name}: element is an empty string, not {what} (index:)"),
        assert_none(wrong & ~empty, f"{name}: element is not {what} (index:)"),
    ]
    with tf.control_dependencies(checks):
        values = tf.identity(values)
    if kind == "image":
        values = _checked_image_headers(values, name, max_pixels or image_header.MAX_IMAGE_PIXELS)
    return values


def _checked_image_headers(values, name, max_pixels):
    animated = tf.map_fn(image_header.is_animated_webp, values, fn_output_signature=tf.bool)
    pixels = tf.map_fn(image_header.header_pixels, values, fn_output_signature=tf.int64)
    checks = [
        assert_none(animated, f"{name}: element is an animated WebP, which cannot be decoded (index:)"),
        assert_none(pixels > max_pixels, f"{name}: element declares more than {max_pixels} pixels in its header; "
                                          "send a smaller image (index:)"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(values)


def checked_text(values, name, max_bytes=MAX_TEXT_BYTES):
    """`values` (a `[B]` string batch) after checks: not empty, no blank element, UTF-8, at most `max_bytes` each."""
    values = checked_batch(values, name)
    blank = tf.equal(tf.strings.length(tf.strings.strip(values)), 0)
    # Invalid UTF-8 decodes to U+FFFD: more of those than the text spells out itself means invalid bytes.
    decoded = tf.strings.unicode_decode(values, "UTF-8", errors="replace", replacement_char=0xFFFD)
    replaced = tf.reduce_sum(tf.cast(tf.equal(decoded, 0xFFFD), tf.int32), axis=1)
    spelled = tf.cast(tf.strings.split(values, "\ufffd".encode()).row_lengths(), tf.int32) - 1
    checks = [
        assert_none(blank, f"{name}: element is empty or only white space (index:)"),
        assert_none(replaced > spelled, f"{name}: element is not valid UTF-8 text (index:)"),
        assert_none(tf.strings.length(values) > max_bytes,
                     f"{name}: element is longer than {max_bytes} bytes (index:)"),
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


def decode_images(image_bytes, image_size, policy="crop", interpolation="bilinear"):
    """float32 `[B, height, width, 3]` in [0, 1] from a `[B]` batch of encoded images.

    Each image goes through `kerasmm.data.image_ops.load_image` (RGB,
    upright, resized with `policy` and `interpolation` to uint8), the path the readers and
    `kerasmm search` take, so a served image gives the pixels it trained as.
    """
    height, width = (int(s) for s in image_size)
    pixels = tf.map_fn(
        lambda data: image_ops.load_image(data, (height, width), policy, interpolation), image_bytes,
        fn_output_signature=tf.TensorSpec((height, width, 3), tf.uint8),
    )
    return tf.cast(pixels, tf.float32) / 255.0


def decode_waves(audio_bytes, length, sample_rate):
    """float32 `[B, length]` mono waveforms at `sample_rate` Hz from a `[B]` batch of 16-bit PCM WAV files."""
    length = int(length)
    return tf.map_fn(
        lambda data: audio_ops.decode_wav(data, sample_rate=sample_rate, length=length),
        audio_bytes,
        fn_output_signature=tf.TensorSpec((length,), tf.float32),
    )
