"""Graph-mode audio ops for readers: decode WAV to mono float at a fixed rate, resample, pad/crop.

`decode_wav`, `resample` and `pad_or_crop` are plain TensorFlow (no
`tf.py_function`), so they run inside `tf.data` map functions, keep the
iterator checkpointable, and export with a SavedModel. `check_wav` is a cheap
pure-Python header check that readers run before building a pipeline, so a
bad file becomes a `BadRecordError` (or a skipped record) instead of a crash
halfway through an epoch. `write_wav` writes 16-bit PCM.

What `tf.audio.decode_wav` reads (TensorFlow 2.21, checked against the op):
little-endian "RIFF"/"WAVE" files, plain PCM (format tag 1) at 16 bits per
sample only, any number of channels, a "fmt " chunk of 16 or 18 bytes that
comes first (only "JUNK", "bext", "iXML", "qlty", "mext", "levl", "link" and
"axml" chunks may precede it), header fields that agree with each other
(block align = 2 * channels, byte rate = block align * rate), and exactly one
"data" chunk. Other chunks after "fmt " are skipped, but without the RIFF pad
byte, so an odd-sized chunk before the data (or stray bytes after it) breaks
the parse. Not readable: 8-, 24- and 32-bit PCM, IEEE float, A-law/mu-law,
WAVE_FORMAT_EXTENSIBLE (a 40-byte "fmt " chunk, even when it holds 16-bit
PCM), RIFX (big-endian) and RF64. Convert those to 16-bit PCM first (for
example with `write_wav`). `check_wav` follows the same rules. Run it before
decoding untrusted files: besides naming the problem, it avoids a TensorFlow
quirk where a header with non-UTF-8 bytes in a chunk id makes the op's error
message itself undecodable, so iterating raises `UnicodeDecodeError` instead
of `InvalidArgumentError`.

Example:
```python
import numpy as np
import tensorflow as tf
from kerasmm.data import audio_ops
t = np.arange(8000) / 8000.0
audio_ops.write_wav("tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)   # 1 s at 8 kHz
audio_ops.check_wav("tone.wav")                             # None: readable
wave = audio_ops.decode_wav(tf.io.read_file("tone.wav"), sample_rate=16000, length=20000)
wave.shape                                                  # (20000,): resampled to 16 kHz, then padded
```
"""

import math
import os
import struct

import tensorflow as tf

# Resampling filter: a Kaiser-windowed sinc low-pass whose cutoff (the -6 dB
# point) is ROLLOFF * min(in, out) / 2 and whose kernel spans ZERO_CROSSINGS
# zero crossings of the sinc on each side. Measured on tones through
# `resample`: flat to 0.8 x the lower Nyquist rate (-0.12 dB at 0.83 x), -6 dB
# at 0.9 x, and at least 80 dB down at and above the lower Nyquist rate, so
# downsampling does not alias and upsampling leaves no images.
ROLLOFF = 0.9
ZERO_CROSSINGS = 24
KAISER_BETA = 8.0
# The gather path computes outputs in chunks so its [outputs, taps] work
# matrix stays near this many elements (about 4 MB of float32) whatever the
# clip length. (The polyphase path needs no work matrix.)
_CHUNK_ELEMENTS = 1 << 20
# The polyphase path is used when its filter table (at most up x (frame
# length + down) elements) is at most this big; otherwise the gather path.
_TABLE_ELEMENTS = 1 << 20

# Chunks that tf.audio.decode_wav skips when they come before "fmt ".
_SKIPPED_BEFORE_FMT = (b"JUNK", b"bext", b"iXML", b"qlty", b"mext", b"levl", b"link", b"axml")
_MAX_CHUNK = 2**31 - 1
_FORMAT_NAMES = {
    1: "PCM",
    2: "Microsoft ADPCM",
    3: "IEEE float",
    6: "A-law",
    7: "mu-law",
    0x11: "IMA ADPCM",
    0x55: "MP3",
    0xFFFE: "WAVE_FORMAT_EXTENSIBLE",
}


def decode_wav(data, sample_rate=16000, length=None):
    """WAV bytes (a scalar string) → float32 mono waveform `[S]` in [-1, 1] at `sample_rate` Hz.

    Reads 16-bit PCM only (see the module docstring; `check_wav` says in
    advance whether a file is readable). Channels are averaged to mono. When
    the file's rate differs from `sample_rate` the audio is resampled in the
    graph with `resample`; pass `sample_rate=None` to keep the file's rate.
    With `length`, the waveform is zero-padded or cropped (from the start) to
    exactly `length` samples and the static shape is `[length]`.

    Example:
    ```python
    import tensorflow as tf
    from kerasmm.data import audio_ops
    wav = tf.audio.encode_wav(tf.zeros((4410, 2)), 44100)   # 0.1 s of stereo at 44.1 kHz
    audio_ops.decode_wav(wav).shape                           # (1600,): mono at 16 kHz
    audio_ops.decode_wav(wav, length=16000).shape             # (16000,): padded with zeros
    ```
    """
    audio, file_rate = tf.audio.decode_wav(data)
    waveform = tf.reduce_mean(audio, axis=-1)
    if sample_rate is not None:
        waveform = resample(waveform, file_rate, sample_rate)
    if length is not None:
        waveform = pad_or_crop(waveform, length)
    return waveform


def pad_or_crop(waveform, length):
    """Zero-pad at the end or crop from the start along the last axis to exactly `length` samples.

    Works on `[S]` and `[B, S]` (any rank, time last); the result has the
    static shape `[..., length]`.

    Example:
    ```python
    import tensorflow as tf
    from kerasmm.data import audio_ops
    audio_ops.pad_or_crop(tf.ones([3]), 5).numpy()        # [1., 1., 1., 0., 0.]
    audio_ops.pad_or_crop(tf.ones([2, 7]), 4).shape       # (2, 4)
    ```
    """
    length = int(length)
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}.")
    waveform = tf.convert_to_tensor(waveform)
    rank = waveform.shape.rank
    if rank is None or rank == 0:
        raise ValueError(f"pad_or_crop needs a waveform of known rank >= 1, got shape {waveform.shape}.")
    cropped = waveform[..., :length]
    missing = length - tf.shape(cropped)[-1]
    paddings = [[0, 0]] * (rank - 1) + [[0, missing]]
    padded = tf.pad(cropped, paddings)
    return tf.ensure_shape(padded, waveform.shape[:-1].concatenate([length]))


def resample(waveform, from_rate, to_rate):
    """Band-limited resampling of float `[S]` or `[B, S]` (time last) from `from_rate` to `to_rate` Hz.

    The rates may be Python ints or int tensors known only at run time (as
    the rate `tf.audio.decode_wav` returns). Equal rates return the input
    unchanged (a `tf.cond`, no filtering). Otherwise each output sample is a
    Kaiser-windowed-sinc interpolation of the input evaluated at its exact
    time (integer arithmetic on the rate ratio, so long clips do not drift),
    with the low-pass cutoff at `ROLLOFF * min(from_rate, to_rate) / 2` so
    that downsampling does not alias. The output has `ceil(S * to_rate /
    from_rate)` samples; the signal is taken as zero outside the clip. For
    the usual rate pairs (reduced ratio up/down with a small filter table,
    e.g. 44.1k → 16k is 160/441) it runs as one polyphase `conv1d`; other
    pairs (e.g. 44.1k → 16001) fall back to a chunked gather that computes
    each output's weights. Rates must be positive (checked at run time).

    Example:
    ```python
    import numpy as np
    import tensorflow as tf
    from kerasmm.data import audio_ops
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype("float32")
    audio_ops.resample(tone, 44100, 16000).shape     # (16000,)
    ```
    """
    waveform = tf.cast(tf.convert_to_tensor(waveform), tf.float32)
    rank = waveform.shape.rank
    if rank not in (1, 2):
        raise ValueError(f"resample needs a waveform of shape [S] or [B, S], got shape {waveform.shape}.")
    from_rate = tf.cast(from_rate, tf.int64)
    to_rate = tf.cast(to_rate, tf.int64)
    batch = waveform if rank == 2 else waveform[tf.newaxis]

    def convert():
        checks = [
            tf.debugging.assert_positive(from_rate, message="the input sample rate must be positive"),
            tf.debugging.assert_positive(to_rate, message="the output sample rate must be positive"),
        ]
        with tf.control_dependencies([check for check in checks if check is not None]):  # None when eager
            return _resample_batch(batch, from_rate, to_rate)

    out = tf.cond(tf.equal(from_rate, to_rate), lambda: batch, convert)
    out = tf.ensure_shape(out, batch.shape[:1].concatenate([None]))
    return out if rank == 2 else out[0]


@tf.function(
    input_signature=[
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([], tf.int64),
        tf.TensorSpec([], tf.int64),
    ],
    autograph=False,
)
def _resample_batch(waveform, from_rate, to_rate):
    """`[B, S_in]` → `[B, S_out]`; the rates differ and are positive.

    Keep this function free of stateful ops (no asserts): a stateful
    function call in a tf.data map makes the iterator impossible to save.
    """
    # Reduce the ratio: output sample n sits at input time n * down / up.
    divisor = _gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    num_in = tf.shape(waveform, out_type=tf.int64)[1]
    num_out = (num_in * up + down - 1) // down
    # Sinc bandwidth in cycles per input sample (twice the cutoff frequency)
    # and the kernel's half width in input samples.
    bandwidth = ROLLOFF * tf.cast(tf.minimum(up, down), tf.float64) / tf.cast(down, tf.float64)
    half_width = ZERO_CROSSINGS / bandwidth
    half_taps = tf.cast(tf.math.ceil(half_width), tf.int64)
    kernel = _Kernel(bandwidth, half_width)
    table_size = up * (2 * down + 2 * half_taps)
    return tf.cond(
        table_size <= _TABLE_ELEMENTS,
        lambda: _polyphase(waveform, up, down, num_out, half_taps, kernel),
        lambda: _direct(waveform, up, down, num_out, half_taps, kernel),
    )


class _Kernel:
    """The Kaiser-windowed sinc, as a function of the distance in input samples."""

    def __init__(self, bandwidth, half_width):
        self.bandwidth = tf.cast(bandwidth, tf.float32)
        self.half_width = tf.cast(half_width, tf.float32)

    def __call__(self, distance):
        ratio = tf.clip_by_value(distance / self.half_width, -1.0, 1.0)
        window = tf.math.bessel_i0(KAISER_BETA * tf.sqrt(1.0 - ratio * ratio)) / tf.math.bessel_i0(KAISER_BETA)
        weights = self.bandwidth * _sinc(self.bandwidth * distance) * window
        return tf.where(tf.abs(distance) < self.half_width, weights, 0.0)


def _polyphase(waveform, up, down, num_out, half_taps, kernel):
    """Polyphase resampling as one stride-1 convolution.

    Output q * up + p is the dot product of filter row p (J taps) with the J
    inputs starting at q * down. Cutting the input into blocks of `down`
    samples turns this into a `conv1d` over blocks with `down` input
    channels, `up` output channels and width ceil(J / down), so the filter
    is computed once and the work is one dense convolution. Used when the
    filter table is small, which holds for the usual rates (44.1k → 16k:
    up = 160, down = 441, J = 735).
    """
    batch_size = tf.shape(waveform, out_type=tf.int64)[0]
    num_in = tf.shape(waveform, out_type=tf.int64)[1]
    frame_length = (up - 1) * down // up + 2 * half_taps  # J
    width = (frame_length + down - 1) // down  # in blocks
    # Row p, column j: the tap for input q * down + j - (half_taps - 1) of output q * up + p.
    columns = tf.range(width * down)
    numerator = (columns[tf.newaxis, :] - half_taps + 1) * up - tf.range(up)[:, tf.newaxis] * down
    table = kernel(tf.cast(tf.cast(numerator, tf.float64) / tf.cast(up, tf.float64), tf.float32))
    table = tf.where(columns[tf.newaxis, :] < frame_length, table, 0.0)  # [up, width * down]
    filters = tf.transpose(tf.reshape(table, [up, width, down]), [1, 2, 0])  # [width, down, up]

    num_frames = (num_out + up - 1) // up
    num_blocks = num_frames + width - 1
    right = num_blocks * down - num_in - (half_taps - 1)
    padded = tf.pad(waveform, [[0, 0], [half_taps - 1, tf.maximum(right, 0)]])[:, : num_blocks * down]
    blocks = tf.reshape(padded, [batch_size, num_blocks, down])
    out = tf.nn.conv1d(blocks, filters, stride=1, padding="VALID")  # [B, frames, up]
    return tf.reshape(out, [batch_size, -1])[:, :num_out]


def _direct(waveform, up, down, num_out, half_taps, kernel):
    """Each output gathers its 2 * half_taps inputs and computes its own weights.

    The fallback for rate pairs with a large reduced ratio (44.1k → 16001),
    where the polyphase table would be huge.
    """
    batch_size = tf.shape(waveform, out_type=tf.int64)[0]
    offsets = tf.range(-half_taps + 1, half_taps + 1)  # [T]
    # Zero-pad so every tap index is valid; indices past the end are clamped
    # onto the trailing zeros.
    padded = tf.pad(waveform, [[0, 0], [half_taps, half_taps + 1]])
    last = tf.shape(padded, out_type=tf.int64)[1] - 1
    chunk = tf.maximum(tf.constant(_CHUNK_ELEMENTS, tf.int64) // (2 * half_taps * tf.maximum(batch_size, 1)), 1)
    num_chunks = tf.maximum((num_out + chunk - 1) // chunk, 1)

    def one_chunk(index):
        position = (index * chunk + tf.range(chunk, dtype=tf.int64)) * down  # output times x up
        base = position // up
        frac = tf.cast(position % up, tf.float32) / tf.cast(up, tf.float32)
        weights = kernel(tf.cast(offsets, tf.float32)[tf.newaxis, :] - frac[:, tf.newaxis])  # [C, T]
        taps = tf.minimum(base[:, tf.newaxis] + offsets[tf.newaxis, :] + half_taps, last)
        values = tf.gather(padded, taps, axis=1)  # [B, C, T]
        return tf.reduce_sum(values * weights, axis=-1)  # [B, C]

    return _run_chunks(one_chunk, num_chunks, batch_size, num_out)


def _run_chunks(one_chunk, num_chunks, batch_size, num_out):
    chunks = tf.map_fn(
        one_chunk,
        tf.range(num_chunks),
        fn_output_signature=tf.TensorSpec([None, None], tf.float32),
    )  # [N, B, C]
    out = tf.reshape(tf.transpose(chunks, [1, 0, 2]), [batch_size, -1])
    return out[:, :num_out]


def _gcd(a, b):
    a, b = tf.while_loop(lambda a, b: b > 0, lambda a, b: (b, a % b), (a, b))
    return a


def _sinc(x):
    """sin(pi x) / (pi x), 1 at 0."""
    zero = tf.equal(x, 0.0)
    angle = math.pi * tf.where(zero, tf.ones_like(x), x)
    return tf.where(zero, tf.ones_like(x), tf.sin(angle) / angle)


def write_wav(path, waveform, sample_rate):
    """Write a float waveform `[S]` or `[S, C]` (values in [-1, 1]; clipped) as a 16-bit PCM WAV.

    Uses `tf.audio.encode_wav`, so the file is exactly what `decode_wav`
    reads; `path` may be any filesystem TensorFlow can write (local, gs://...).

    Example:
    ```python
    import numpy as np
    from kerasmm.data import audio_ops
    audio_ops.write_wav("stereo.wav", np.zeros((16000, 2)), 16000)   # 1 s of stereo silence
    ```
    """
    audio = tf.convert_to_tensor(waveform)
    if audio.shape.rank == 1:
        audio = audio[:, tf.newaxis]
    if audio.shape.rank != 2:
        raise ValueError(f"write_wav needs a waveform of shape [S] or [S, C], got shape {audio.shape}.")
    audio = tf.clip_by_value(tf.cast(audio, tf.float32), -1.0, 1.0)
    tf.io.write_file(os.fspath(path), tf.audio.encode_wav(audio, int(sample_rate)))


def check_wav(path):
    """None if `path` looks like a WAV file `decode_wav` can read, else a short reason string.

    Pure Python: reads only the RIFF chunk headers (the sample data is
    seeked past), so it is cheap for thousands of files. It follows the
    rules of `tf.audio.decode_wav` (module docstring) and also rejects a
    sample rate of 0. Reasons: missing file, zero bytes, not a RIFF/WAVE
    file, no "fmt " or "data" chunk, unsupported encoding (anything but
    16-bit PCM), inconsistent header, truncated data. A file whose data
    chunk is empty is readable (it decodes to zero samples).

    Example:
    ```python
    from kerasmm.data import audio_ops
    audio_ops.check_wav("/no/such/file.wav")   # 'missing file'
    ```
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing file"
    except OSError as error:
        return f"cannot read file ({error.strerror or error})"
    if os.path.isdir(path):
        return "not a file (a directory)"
    if size == 0:
        return "zero bytes"
    try:
        with open(path, "rb") as file:
            return _check_wav_file(file, size)
    except OSError as error:
        return f"cannot read file ({error.strerror or error})"


def _check_wav_file(file, size):
    head = file.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        if head[:4] in (b"RIFX", b"RF64") and head[8:12] == b"WAVE":
            kind = "big-endian RIFX" if head[:4] == b"RIFX" else "RF64"
            return f"unsupported encoding: {kind} WAV (tf.audio.decode_wav reads 16-bit PCM RIFF only)"
        return "not a RIFF/WAVE file"

    def chunk_header(position):
        file.seek(position)
        header = file.read(8)
        return (header[:4], struct.unpack("<I", header[4:])[0]) if len(header) == 8 else (None, None)

    # Chunks before "fmt ": only the few that tf.audio.decode_wav skips.
    position = 12
    while True:
        chunk_id, chunk_size = chunk_header(position)
        if chunk_id is None:
            return "truncated: the file ends inside the header" if position < size else "no fmt chunk"
        if chunk_id == b"fmt ":
            break
        if chunk_id not in _SKIPPED_BEFORE_FMT:
            if _find_chunk(chunk_header, position, size, b"fmt "):
                where = f"a {_name(chunk_id)} chunk before the fmt chunk"
                return f"unsupported layout: {where} (tf.audio.decode_wav needs fmt first)"
            return "no fmt chunk"
        position += 8 + chunk_size

    fmt_start = position + 8
    file.seek(fmt_start)
    fmt = file.read(min(chunk_size, 16))
    if len(fmt) < 16:
        return "truncated: the fmt chunk is cut short" if chunk_size >= 16 else f"bad fmt chunk ({chunk_size} bytes)"
    format_tag, channels, rate, byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt)
    if format_tag != 1:
        name = _FORMAT_NAMES.get(format_tag, f"format tag {format_tag}")
        return f"unsupported encoding: {name} (tf.audio.decode_wav reads 16-bit PCM only)"
    if bits != 16:
        return f"unsupported encoding: {bits}-bit PCM (tf.audio.decode_wav reads 16-bit PCM only)"
    if chunk_size not in (16, 18):
        return f"unsupported fmt chunk of {chunk_size} bytes (tf.audio.decode_wav reads 16 or 18)"
    if channels < 1:
        return "bad header: zero channels"
    if rate == 0:
        return "bad header: sample rate 0"
    if block_align != 2 * channels:
        return f"bad header: block align {block_align}, expected {2 * channels} for {channels} channel(s)"
    if byte_rate != block_align * rate:
        return f"bad header: byte rate {byte_rate}, expected {block_align * rate}"

    # Chunks after "fmt ", walked as tf.audio.decode_wav walks them (no pad bytes).
    after_fmt = position = fmt_start + chunk_size
    found_data = False
    while position < size:
        chunk_id, chunk_size = chunk_header(position)
        if chunk_id is None:
            where = "after the data chunk" if found_data else "before any data chunk"
            return f"truncated or misaligned: {size - position} stray byte(s) {where}"
        if chunk_size > _MAX_CHUNK:
            return f"bad header: {_name(chunk_id)} chunk size {chunk_size} is too large"
        if chunk_id == b"data":
            if found_data:
                return "more than one data chunk"
            found_data = True
            used = chunk_size // block_align * block_align
            available = size - position - 8
            if used > available:
                return f"truncated: the data chunk claims {chunk_size} bytes but only {available} follow"
            position += 8 + used
        else:
            position += 8 + chunk_size
    if not found_data:
        if _find_chunk(chunk_header, after_fmt, size, b"data"):
            why = "tf.audio.decode_wav does not skip RIFF pad bytes"
            return f"unsupported layout: an odd-sized chunk before the data ({why})"
        return "no data chunk"
    return None


def _find_chunk(chunk_header, position, size, wanted):
    """Whether a standard (pad-aware) RIFF walk from `position` meets chunk `wanted`."""
    while position + 8 <= size:
        chunk_id, chunk_size = chunk_header(position)
        if chunk_id == wanted:
            return True
        position += 8 + chunk_size + (chunk_size & 1)
    return False


def _name(chunk_id):
    return repr(chunk_id.decode("latin-1"))
