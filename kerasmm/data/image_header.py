"""Image headers: what an encoded image declares about itself, read before (or instead of) decoding it.

Two kinds of reader live here, both bounded (they look at the first bytes
and a few more, never the pixel data):

- Python pre-checks that a reader, `kerasmm search` or `kerasmm caption`
  runs on a file before handing it to the graph: `check_image` parses the
  header as TensorFlow's decoders do and checks the file is complete, and
  `image_size_from_header` gives its size. What they accept, TensorFlow
  decodes; images over `MAX_IMAGE_PIXELS` are refused before decoding.
- Graph ops, for an exported SavedModel and for `image_ops.decode_image`:
  `header_pixels` (the pixel count a header declares), `is_animated_webp`
  and `exif_orientation` (a JPEG's EXIF orientation tag).

Decoding and resizing are `kerasmm.data.image_ops`.

Example:
```python
import tensorflow as tf
from kerasmm.data import image_header
png = tf.io.encode_png(tf.zeros((20, 10, 1), tf.uint8)).numpy()
image_header.image_size_from_header(png)            # (20, 10)
image_header.check_image("missing.jpg")             # 'file not found'
int(image_header.header_pixels(tf.constant(png)))   # 200
```
"""

import contextlib
import os
import re
import zlib

import tensorflow as tf


# EXIF orientation is searched for in the first bytes of a JPEG, where its APP1 segment stands.
_EXIF_SEARCH_BYTES = 65536
_EXIF_MAX_ENTRIES = 64


def exif_orientation(data):
    """int32 EXIF orientation (1–8) of JPEG bytes `data`; 1 (upright) when there is none or it is not a JPEG.

    A bounded parse in graph ops: the APP1 "Exif" segment in the first
    64 KiB, its TIFF byte order, and the orientation tag (0x0112) among the
    first 64 entries of IFD0. TensorFlow's decoders ignore EXIF.
    """
    head = tf.strings.substr(data, 0, _EXIF_SEARCH_BYTES)
    parts = tf.strings.split(head, b"Exif\x00\x00", maxsplit=1)
    found = tf.io.is_jpeg(data) & tf.equal(tf.size(parts), 2)
    start = tf.strings.length(parts[0])  # where "Exif" starts, if found
    padded = tf.strings.join([head, tf.constant(b"\0" * (16 + 12 * _EXIF_MAX_ENTRIES))])

    def read(offset, count):
        return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, count), tf.uint8), tf.int32)

    tiff = start + 6
    little = tf.equal(tf.strings.substr(padded, tiff, 2), b"II")

    def number(raw):  # unsigned integers of the TIFF's byte order, along the last axis
        weights = 256 ** tf.range(tf.shape(raw)[-1])
        return tf.reduce_sum(raw * tf.where(little, weights, tf.reverse(weights, [0])), axis=-1)

    marker_ok = tf.reduce_all(tf.equal(read(tf.maximum(start - 4, 0), 2), [0xFF, 0xE1]))
    ifd = tiff + number(read(tiff + 4, 4))
    ifd = tf.clip_by_value(ifd, 0, _EXIF_SEARCH_BYTES)
    count = number(read(ifd, 2))
    entries = tf.reshape(read(ifd + 2, 12 * _EXIF_MAX_ENTRIES), (_EXIF_MAX_ENTRIES, 12))
    tags = number(entries[:, 0:2])
    values = number(entries[:, 8:10])
    hit = tf.equal(tags, 0x0112) & (tf.range(_EXIF_MAX_ENTRIES) < count)
    value = tf.reduce_max(tf.where(hit, values, 0))
    valid = found & marker_ok & tf.reduce_any(hit) & (value >= 1) & (value <= 8)
    return tf.where(valid, value, 1)


def header_pixels(data):
    """int64 pixel count (height × width) that encoded image bytes declare in their header; -1 if unknown.

    Graph ops on the first bytes only (JPEG frame header, PNG IHDR, GIF
    logical screen, BMP info header, WebP VP8/VP8L/VP8X), so a server can
    refuse an image too large to decode before decoding it.
    """
    padded = tf.strings.join([tf.strings.substr(data, 0, 64), tf.constant(b"\0" * 64)])
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 64), tf.uint8), tf.int64)

    def number(offset, count, little=True):
        weights = tf.constant([256**i for i in range(count)], tf.int64)
        return tf.reduce_sum(raw[offset:offset + count] * (weights if little else weights[::-1]))

    def starts(prefix, offset=0):
        return tf.equal(tf.strings.substr(padded, offset, len(prefix)), prefix)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    vp8l_bits = number(21, 4)
    sizes = [
        (starts(b"\x89PNG\r\n\x1a\n"), lambda: number(16, 4, little=False) * number(20, 4, little=False)),
        (starts(b"GIF87a") | starts(b"GIF89a"), lambda: number(6, 2) * number(8, 2)),
        (starts(b"BM"), lambda: tf.abs(number(18, 4) - tf.where(number(18, 4) >= 2**31, 2**32, 0))
                               * tf.abs(number(22, 4) - tf.where(number(22, 4) >= 2**31, 2**32, 0))),
        (starts(b"RIFF") & starts(b"WEBPVP8X", 8), lambda: (number(24, 3) + 1) * (number(27, 3) + 1)),
        (starts(b"RIFF") & starts(b"WEBPVP8L", 8),
         lambda: (vp8l_bits % 2**14 + 1) * (vp8l_bits // 2**14 % 2**14 + 1)),
        (starts(b"RIFF") & starts(b"WEBPVP8 ", 8), lambda: (number(26, 2) % 2**14) * (number(28, 2) % 2**14)),
    ]
    pixels = tf.cond(tf.io.is_jpeg(data), jpeg, lambda: tf.constant(-1, tf.int64))
    for found, count in sizes:
        pixels = tf.cond(found, count, lambda p=pixels: p)
    return pixels


def is_animated_webp(data):
    """bool: whether encoded bytes are an animated WebP (VP8X with the animation flag), which TF cannot decode."""
    flags = tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 21)]), 20, 1), tf.uint8)
    return (tf.equal(tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 16)]), 0, 4), b"RIFF")
            & tf.equal(tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 16)]), 8, 8), b"WEBPVP8X")
            & tf.not_equal(tf.bitwise.bitwise_and(flags[0], 2), 0))


# --- Pre-checks in Python: can the decoders read this file? ----------------------

# check_image refuses images of more pixels before anything decodes them; assign to change the default.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024

_HEAD_BYTES = 64 * 1024  # read once per file: headers rarely need more
_MAX_STEPS = 1 << 17  # most JPEG segments, PNG chunks or WebP chunks walked in one file


class _BadImage(ValueError):
    """The reason a file is not an image the pipeline can decode."""


class _Source:
    """Random access to a file's bytes (or a bytes object), its first `_HEAD_BYTES` read once."""

    def __init__(self, data=None, file=None):
        self.file = file
        self.head = bytes(data) if file is None else file.read(_HEAD_BYTES)
        self.size = len(self.head) if file is None else os.fstat(file.fileno()).st_size

    def read(self, offset, count):
        """Up to `count` bytes at `offset` (fewer at the end)."""
        if self.file is None or offset + count <= len(self.head):
            return self.head[offset : offset + count]
        self.file.seek(offset)
        return self.file.read(count)


@contextlib.contextmanager
def _source(data_or_path):
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        yield _Source(data_or_path)
        return
    path = os.fspath(data_or_path)
    if not os.path.isfile(path):
        raise _BadImage("file not found")
    with open(path, "rb", buffering=0) as f:  # unbuffered: chunk walks read 8 bytes, not 8 KiB
        yield _Source(file=f)


def check_image(path, max_pixels=None):
    """`None` if `path` is a JPEG, PNG, GIF, BMP or still WebP image the pipeline can decode, else the reason.

    Parses the header as the decoders do (JPEG marker segments and tables,
    PNG chunks, the GIF first frame, the BMP or WebP header) and checks the
    file is complete: a JPEG end-of-image marker after the image data, a PNG
    IEND chunk, a GIF trailer, the BMP size its header implies, the WebP size
    its RIFF header gives. Bytes after a complete JPEG, PNG, GIF or WebP are
    fine (phone photos often carry some). It reads the first 64 KiB, a few
    bytes further on, and for a JPEG the bytes after its end marker, so
    checking thousands of files stays cheap; corrupt pixel data past the first
    64 KiB still only shows when decoding.

    An image of more than `max_pixels` pixels (default `MAX_IMAGE_PIXELS`) is
    refused, so one huge file cannot exhaust memory mid-epoch.
    """
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with _source(path) as source:
            kind, height, width, finish = _parse(source)
            if height * width > limit:
                raise _BadImage(
                    f"{kind} of {height}x{width} (height x width) = {height * width:,} pixels is over the limit of "
                    f"{limit:,} pixels (max_pixels, default kerasmm.data.image_header.MAX_IMAGE_PIXELS)"
                )
            finish()
    except _BadImage as error:
        return str(error)
    except OSError as error:
        return f"cannot read file ({error.strerror or error})"
    return None


def image_size_from_header(data_or_path):
    """`(height, width)` of a JPEG, PNG, GIF, BMP or still WebP image (encoded bytes or a file path).

    Reads only the header, everything before the pixel data, and raises
    ValueError with the reason if that cannot be parsed: not such an image, a
    corrupt or truncated header, a zero size, a variant TensorFlow cannot
    decode. Whether the rest of the file is there is `check_image`'s job.
    The size is the decoded image's: for a GIF, its first frame's.
    """
    with _source(data_or_path) as source:
        _, height, width, _ = _parse(source)
    return height, width


def _parse(source):
    """`(format, height, width, finish)` from the header; `finish()` raises if the rest is missing."""
    head = source.head
    if not source.size:
        raise _BadImage("empty file (0 bytes)")
    if head.startswith(b"\xff\xd8\xff"):
        return ("JPEG", *_jpeg(source))
    if head.startswith(_PNG_SIGNATURE):
        return ("PNG", *_png(source))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ("GIF", *_gif(source))
    if head.startswith(b"BM"):
        return ("BMP", *_bmp(source))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ("WebP", *_webp(source))
    raise _BadImage("not a JPEG, PNG, GIF, BMP or WebP image")


def _u16(data, offset):
    return int.from_bytes(data[offset : offset + 2], "big")


def _u16le(data, offset):
    return int.from_bytes(data[offset : offset + 2], "little")


def _u32le(data, offset):
    return int.from_bytes(data[offset : offset + 4], "little")


# JPEG: the checks libjpeg (jdmarker.c, jdinput.c, jdhuff.c, jdphuff.c) makes on marker
# segments, as far as the first 64 KiB go, so a file that passes gets through them in
# TensorFlow too; a fuzz test holds the two together.

_JPEG_SOF = {0xC0: False, 0xC1: False, 0xC2: True, 0xC9: False, 0xCA: True}  # frame marker: progressive?
_JPEG_SOF_UNSUPPORTED = {0xC3, 0xC5, 0xC6, 0xC7, 0xC8, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical
_JPEG_MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION
_JPEG_MAX_BYTES = 1 << 29  # TensorFlow refuses a decoded JPEG of this many bytes or more
_JPEG_ANY_MARKER = re.compile(rb"\xff+([^\x00\xff])")  # 0xFF fill, then a marker code (0xFF00 is data)
# In scan data 0xFF is followed by 0x00 (a stuffed data byte), a restart marker or
# more 0xFF fill; anything else is a marker that libjpeg reads as a segment.
_JPEG_NEXT_MARKER = re.compile(rb"\xff+([^\x00\x01\xd0-\xd7\xff])")


def _jpeg(source):
    state, pos = {"frame": None, "quant": set(), "huffman": set()}, 2
    for _ in range(_MAX_STEPS):
        marker, pos = _jpeg_marker(source, pos)
        pos = _jpeg_segment(source, marker, pos, state)
        if marker == 0xDA:
            frame = state["frame"]
            return frame["height"], frame["width"], lambda: _jpeg_rest(source, pos, state)
    raise _BadImage(f"corrupt JPEG (more than {_MAX_STEPS} segments before the image data)")


def _jpeg_marker(source, pos):
    """`(marker, position after it)`: the next marker from `pos`, skipping stray bytes as libjpeg does."""
    data = source.read(pos, 4096)
    found = _JPEG_ANY_MARKER.search(data)
    if found is None:
        if pos + len(data) >= source.size:
            raise _BadImage("truncated JPEG (ends inside its header)")
        raise _BadImage(f"corrupt JPEG (no marker within 4096 bytes of byte {pos})")
    return found[1][0], pos + found.end()


def _jpeg_segment(source, marker, pos, state):
    """Check the segment of `marker` (its length field at `pos`) as libjpeg would; the position after it."""
    if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no segment follows
        return pos
    if marker in (0xD8, 0xD9):
        raise _BadImage("corrupt JPEG (start-of-image marker repeated)" if marker == 0xD8 else
                        "corrupt JPEG (end-of-image marker before any image data)")
    if marker in _JPEG_SOF_UNSUPPORTED:
        raise _BadImage(f"lossless or hierarchical JPEG (frame marker 0xFF{marker:02X}), which TensorFlow "
                        "cannot decode")
    skip = 0xE0 <= marker <= 0xEF or marker in (0xFE, 0xDC)  # APPn, COM, DNL
    if not skip and marker not in _JPEG_SOF and marker not in (0xC4, 0xCC, 0xDA, 0xDB, 0xDD):
        raise _BadImage(f"corrupt JPEG (unknown marker 0xFF{marker:02X} at byte {pos - 2})")
    length = _u16(source.read(pos, 2), 0)
    if pos + max(length, 2) > source.size:
        raise _BadImage("truncated JPEG (a marker segment runs past the end of the file)")
    if length < 2:
        raise _BadImage(f"corrupt JPEG (segment length {length} at byte {pos})")
    body = b"" if skip else source.read(pos + 2, length - 2)
    if marker in _JPEG_SOF:
        if state["frame"] is not None:
            raise _BadImage("corrupt JPEG (two frame headers)")
        state["frame"] = _jpeg_frame(marker, body)
    elif marker == 0xDB:
        _jpeg_quant_tables(body, state["quant"])
    elif marker == 0xC4:
        _jpeg_huffman_tables(body, state["huffman"])
    elif marker == 0xDD and len(body) != 2:
        raise _BadImage("corrupt JPEG (restart interval segment)")
    elif marker == 0xCC:
        _jpeg_arithmetic_conditioning(body)
    elif marker == 0xDA:
        _jpeg_scan(body, state["frame"], state["quant"], state["huffman"])
    return pos + length


def _jpeg_frame(marker, body):
    if len(body) < 6:
        raise _BadImage("corrupt JPEG (short frame header)")
    precision, height, width, count = body[0], _u16(body, 1), _u16(body, 3), body[5]
    if not height or not width or not count:
        raise _BadImage(f"JPEG with a zero size ({height}x{width}, {count} components)")
    if len(body) != 6 + 3 * count:
        raise _BadImage("corrupt JPEG (frame header length)")
    if max(height, width) > _JPEG_MAX_SIDE:
        raise _BadImage(f"JPEG of {height}x{width}: libjpeg decodes at most {_JPEG_MAX_SIDE} pixels a side")
    if height * width * 3 >= _JPEG_MAX_BYTES:
        raise _BadImage(f"JPEG of {height}x{width} is too large for TensorFlow's decoder")
    if precision != 8:
        raise _BadImage(f"{precision}-bit JPEG; TensorFlow decodes only 8-bit JPEG")
    if count not in (1, 3, 4):
        raise _BadImage(f"JPEG with {count} colour components; TensorFlow decodes 1, 3 or 4")
    components = [body[6 + 3 * i : 9 + 3 * i] for i in range(count)]  # (id, sampling, quant table)
    sampling = [(c[1] >> 4, c[1] & 15) for c in components]
    if not all(1 <= h <= 4 and 1 <= v <= 4 for h, v in sampling):
        raise _BadImage("corrupt JPEG (sampling factors)")
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    if any(max_h % h or max_v % v for h, v in sampling):
        raise _BadImage("JPEG with fractional chroma subsampling, which libjpeg cannot decode")
    return {"height": height, "width": width, "components": components, "progressive": _JPEG_SOF[marker],
            "huffman": marker in (0xC0, 0xC1, 0xC2)}


def _jpeg_quant_tables(body, defined):
    pos = 0
    while pos < len(body):
        index, sixteen_bit = body[pos] & 15, body[pos] >> 4
        if index >= 4:
            raise _BadImage(f"corrupt JPEG (quantization table {index})")
        pos += 1 + (128 if sixteen_bit else 64)
        defined.add(index)
    if pos != len(body):
        raise _BadImage("corrupt JPEG (quantization table segment length)")


def _jpeg_huffman_tables(body, defined):
    pos, left = 0, len(body)
    while left > 16:
        index, bits = body[pos], body[pos + 1 : pos + 17]
        count, left = sum(bits), left - 17
        if count > 256 or count > left:
            raise _BadImage("corrupt JPEG (Huffman table)")
        values = body[pos + 17 : pos + 17 + count]
        pos, left = pos + 17 + count, left - count
        table = (index >> 4, index & 15)
        if table[0] > 1 or table[1] >= 4:
            raise _BadImage(f"corrupt JPEG (Huffman table index 0x{index:02X})")
        code = 0
        for length in range(max((i for i in range(16) if bits[i]), default=-1) + 1):
            code += bits[length]
            if code >= 2 << length:  # more codes of this length than fit: not a prefix code
                raise _BadImage("corrupt JPEG (Huffman table)")
            code <<= 1
        if table[0] == 0 and any(v > 15 for v in values):
            raise _BadImage("corrupt JPEG (DC Huffman table)")
        defined.add(table)
    if left:
        raise _BadImage("corrupt JPEG (Huffman table segment length)")


def _jpeg_arithmetic_conditioning(body):
    if len(body) % 2:
        raise _BadImage("corrupt JPEG (arithmetic conditioning segment length)")
    for index, value in zip(body[::2], body[1::2]):
        if index >= 32 or (index < 16 and (value & 15) > (value >> 4)):
            raise _BadImage("corrupt JPEG (arithmetic conditioning table)")


def _jpeg_scan(body, frame, quant, huffman):
    """A scan header: its components, their tables, the progression parameters."""
    if frame is None:
        raise _BadImage("corrupt JPEG (scan before the frame header)")
    count = body[0] if body else 0
    if len(body) != 4 + 2 * count or not 1 <= count <= 4:
        raise _BadImage("corrupt JPEG (scan header length)")
    components, chosen = frame["components"][:4], [None] * 4
    for i in range(count):
        ident, tables = body[1 + 2 * i], body[2 + 2 * i]
        # Matched as libjpeg-turbo's get_sos does, quirk included.
        found = [c for slot, c in enumerate(components) if c[0] == ident and chosen[slot] is None]
        if not found:
            raise _BadImage(f"corrupt JPEG (scan names unknown component {ident})")
        chosen[i] = (found[0], tables >> 4, tables & 15)
    chosen = chosen[:count]
    start, end, approx = body[-3], body[-2], body[-1]
    high, low = approx >> 4, approx & 15
    dc = start == 0
    if frame["progressive"] and (
        (end != 0 if dc else start > end or end > 63 or count != 1) or (high and low != high - 1) or low > 13
    ):
        raise _BadImage("corrupt JPEG (progressive scan parameters)")
    if count > 1 and sum((c[1] >> 4) * (c[1] & 15) for c, _, _ in chosen) > 10:
        raise _BadImage("corrupt JPEG (more than 10 blocks per MCU)")
    for component, dc_table, ac_table in chosen:
        if component[2] not in quant:
            raise _BadImage(f"corrupt JPEG (quantization table {component[2]} not defined)")
        if not frame["huffman"]:
            continue
        used = [(0, dc_table)] if not frame["progressive"] or (dc and not high) else []
        if not frame["progressive"] or not dc:
            used.append((1, ac_table))
        for table in used:  # a sequential JPEG may rely on libjpeg's standard tables 0 and 1
            if table not in huffman and (frame["progressive"] or table[1] > 1):
                raise _BadImage(f"corrupt JPEG (Huffman table {table[1]} not defined)")


def _jpeg_rest(source, start, state):
    """The segments between later scans (in the bytes read up front), then the end-of-image marker."""
    data, pos = source.head, start
    while (found := _JPEG_NEXT_MARKER.search(data, pos)) and found[1][0] != 0xD9:
        pos = found.end()
        if len(data) < source.size and (pos + 2 > len(data) or pos + _u16(data, pos) > len(data)):
            break  # runs past the bytes read up front: left to the decoder
        pos = _jpeg_segment(source, found[1][0], pos, state)
    _jpeg_end(source, start)


def _jpeg_end(source, start):
    """An end-of-image marker somewhere after `start`, searched from the end backwards."""
    end = source.size
    while end > start:
        begin = max(start, end - _HEAD_BYTES)
        if b"\xff\xd9" in source.read(begin, end + 1 - begin):  # +1: a marker split across blocks
            return
        end = begin
    raise _BadImage("truncated JPEG (no end-of-image marker)")


# PNG: libpng's checks on the chunk structure; CRCs of critical chunks in the first 64 KiB.

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_MAX_SIDE = 1_000_000  # libpng's default user limit


def _png(source):
    if _png_chunk(source, 8) != (13, b"IHDR"):
        raise _BadImage("corrupt PNG (no IHDR chunk first)")
    _png_check_crc(source, 8, 13, b"IHDR")
    header = source.read(16, 13)
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, compression, filtering, interlace = header[8:]
    if not width or not height:
        raise _BadImage(f"PNG with a zero size ({height}x{width})")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise _BadImage(f"corrupt PNG (bit depth {depth} with colour type {colour})")
    if compression or filtering or interlace > 1:
        raise _BadImage("corrupt PNG (unknown compression, filter or interlace method)")
    if max(width, height) > _PNG_MAX_SIDE:
        raise _BadImage(f"PNG of {height}x{width}: libpng decodes at most {_PNG_MAX_SIDE:,} pixels a side")
    pos, palette = 33, False
    for _ in range(_MAX_STEPS):
        length, kind = _png_chunk(source, pos)
        if kind == b"IDAT":
            break
        _png_check_chunk(source, pos, length, kind, palette)
        palette = palette or kind == b"PLTE"
        if kind == b"PLTE" and colour == 3 and (not length or length % 3 or length > 768):
            raise _BadImage(f"corrupt PNG (palette of {length} bytes)")
        pos += 12 + length
    else:
        raise _BadImage(f"corrupt PNG (more than {_MAX_STEPS} chunks)")
    if colour == 3 and not palette:
        raise _BadImage("corrupt PNG (palette image without a PLTE chunk)")
    return height, width, lambda: _png_end(source, pos, palette)


def _png_chunk(source, pos):
    """`(length, type)` of the chunk at `pos`, checked to be a well-formed chunk inside the file."""
    header = source.read(pos, 8)
    if len(header) < 8:
        raise _BadImage("truncated PNG (no IEND chunk)")
    length, kind = int.from_bytes(header[:4], "big"), header[4:]
    if not kind.isalpha() or not kind.isascii():
        raise _BadImage(f"corrupt PNG (bad chunk type {kind!r} at byte {pos})")
    if length >= 1 << 31:
        raise _BadImage(f"corrupt PNG (chunk length {length} at byte {pos})")
    if pos + 12 + length > source.size:
        raise _BadImage(f"truncated PNG ({kind.decode()} chunk at byte {pos} runs past the end of the file)")
    return length, kind


def _png_check_chunk(source, pos, length, kind, palette):
    if kind[:1].islower():  # ancillary: libpng skips what it does not know
        return
    if kind not in _PNG_CRITICAL:
        raise _BadImage(f"PNG with an unknown critical chunk {kind.decode()}, which libpng refuses")
    if kind == b"IHDR" or (kind == b"PLTE" and palette):
        raise _BadImage(f"corrupt PNG (second {kind.decode()} chunk)")
    if kind == b"IEND":
        raise _BadImage("corrupt PNG (IEND chunk before any image data)")
    _png_check_crc(source, pos, length, kind)


def _png_check_crc(source, pos, length, kind):
    """Compare a critical chunk's CRC if that costs no extra read (or the chunk is small)."""
    if pos + 12 + length > len(source.head) and length > 1024:
        return
    data = source.read(pos + 4, length + 8)
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "big"):
        raise _BadImage(f"corrupt PNG (CRC mismatch in the {kind.decode()} chunk at byte {pos})")


def _png_end(source, pos, palette):
    """Walk the chunks from the first IDAT to IEND; bytes after IEND are fine."""
    for _ in range(_MAX_STEPS):
        length, kind = _png_chunk(source, pos)
        if kind == b"IEND":
            _png_check_crc(source, pos, length, kind)
            return
        if kind != b"IDAT":
            _png_check_chunk(source, pos, length, kind, palette)
        elif pos + 12 + length <= len(source.head):
            _png_check_crc(source, pos, length, kind)
        pos += 12 + length
    raise _BadImage(f"corrupt PNG (more than {_MAX_STEPS} chunks)")


# GIF: TensorFlow decodes the first frame at that frame's size (not the logical screen's).


def _gif(source):
    found = _gif_first_frame(source.head)
    if found is None and source.size > len(source.head):  # extensions longer than 64 KiB: rare
        found = _gif_first_frame(source.read(0, source.size))
    if found is None:
        raise _BadImage("truncated GIF (ends before its first image)")
    (width, height, has_table), pos = found
    if not width or not height:
        raise _BadImage(f"GIF with a zero size first frame ({height}x{width})")
    if not has_table and not source.head[10] & 0x80:
        raise _BadImage("GIF without a colour table for its first frame")
    return height, width, lambda: _gif_end(source, pos)


def _gif_table_size(flags):
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _gif_first_frame(data):
    """`((width, height, has its own colour table), position after it)`, or None if `data` ends first."""
    pos = 13 + _gif_table_size(data[10]) if len(data) > 10 else len(data)
    while (block := _gif_block(data, pos)) is not None:
        kind, frame, pos = block
        if kind == "trailer":
            raise _BadImage("GIF without any image")
        if frame is not None:
            return frame, pos
    return None


def _gif_block(data, pos):
    """`(kind, frame, end)` for the GIF block at `pos` in `data`, or None if `data` ends first."""
    if pos >= len(data):
        return None
    intro, frame = data[pos], None
    if intro == 0x3B:
        return "trailer", None, pos + 1
    if intro == 0x21:  # extension: label, then sub-blocks
        pos += 2
    elif intro == 0x2C:  # image descriptor, optional colour table, LZW code size, sub-blocks
        if pos + 11 > len(data):
            return None
        width, height, flags = _u16le(data, pos + 5), _u16le(data, pos + 7), data[pos + 9]
        pos += 10 + _gif_table_size(flags)
        if pos >= len(data):
            return None
        if not 2 <= data[pos] <= 8:
            raise _BadImage(f"corrupt GIF (LZW code size {data[pos]} at byte {pos})")
        frame, pos = (width, height, bool(flags & 0x80)), pos + 1
    else:
        raise _BadImage(f"corrupt GIF (unknown block 0x{intro:02X} at byte {pos})")
    while pos < len(data) and data[pos]:
        pos += data[pos] + 1
    if pos >= len(data):
        return None
    return ("image" if frame else "extension"), frame, pos + 1


def _gif_end(source, pos):
    """The trailer: found by walking the blocks read up front, else looked for at the end of the file."""
    data = source.head
    while (block := _gif_block(data, pos)) is not None:
        kind, _, pos = block
        if kind == "trailer":
            return
    # Larger files: the last block's terminator and the trailer end the file (maybe zero-padded).
    if len(data) == source.size or not source.read(max(0, source.size - 32), 32).rstrip(b"\0").endswith(b"\0;"):
        raise _BadImage("truncated GIF (no trailer)")


# BMP: TensorFlow's own decoder reads only these header fields and wants the exact file size.


def _bmp(source):
    header = source.read(0, 32)
    if len(header) < 32:
        raise _BadImage("truncated BMP (ends inside its header)")
    offset, width, height = (int.from_bytes(header[i : i + 4], "little", signed=True) for i in (10, 18, 22))
    bits = int.from_bytes(header[28:30], "little", signed=True)
    channels = int(bits / 8)  # C's division, as in TensorFlow
    if channels not in (1, 3, 4):
        raise _BadImage(f"BMP with {bits} bits per pixel; TensorFlow decodes 8, 24 or 32")
    if width <= 0 or height == 0:
        raise _BadImage(f"BMP with a zero or negative size ({height}x{width})")
    if offset < 0:
        raise _BadImage(f"corrupt BMP (pixel data offset {offset})")
    if width * abs(height) >= (2**31 - 1) // 8:
        raise _BadImage(f"BMP of {abs(height)}x{width} is too large for TensorFlow's decoder")
    expected = offset + (channels * width + 3) // 4 * 4 * abs(height)
    return abs(height), width, lambda: _bmp_end(source, expected)


def _bmp_end(source, expected):
    if source.size < expected:
        raise _BadImage(f"truncated BMP ({source.size} of {expected} bytes)")
    if source.size > expected:
        raise _BadImage(f"BMP with {source.size - expected} bytes after its pixel data, which TensorFlow refuses")


# WebP: libwebp's header checks (WebPGetFeatures). Still images only: an animated WebP
# crashes TensorFlow 2.21's decode_image with channels=0, the setting decode_image uses.


def _webp(source):
    riff_size = _u32le(source.head, 4)
    if riff_size < 12:
        raise _BadImage(f"corrupt WebP (RIFF size {riff_size})")
    pos, canvas = 12, None
    for _ in range(_MAX_STEPS):
        header = source.read(pos, 8)
        if len(header) < 8 or pos + 8 > riff_size + 8:
            raise _BadImage("truncated WebP (ends before its image data)")
        kind, length = header[:4], _u32le(header, 4)
        if kind in (b"VP8 ", b"VP8L"):
            if pos + 8 + length > riff_size + 8:
                raise _BadImage(f"corrupt WebP ({kind.decode().strip()} chunk larger than the file says)")
            height, width = _webp_frame(kind, source.read(pos + 8, min(length, 10)), length)
            if canvas is not None and canvas != (height, width):
                raise _BadImage("corrupt WebP (canvas and image sizes differ)")
            return height, width, lambda: _webp_end(source, riff_size, pos + 8 + length)
        if canvas is None and pos == 12 and kind == b"VP8X":
            canvas = _webp_canvas(source.read(pos + 8, 10), length)
        elif pos == 12 or kind in (b"VP8X", b"ANIM", b"ANMF"):
            raise _BadImage(f"corrupt WebP (unexpected {kind!r} chunk at byte {pos})")
        pos += 8 + length + (length & 1)
    raise _BadImage(f"corrupt WebP (more than {_MAX_STEPS} chunks)")


def _webp_canvas(data, length):
    if length != 10 or len(data) < 10:
        raise _BadImage("corrupt WebP (VP8X chunk)")
    if data[0] & 0x02:
        raise _BadImage("animated WebP, which TensorFlow's decode_image cannot read (it crashes)")
    width, height = 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if width * height >= 1 << 32:
        raise _BadImage(f"WebP of {height}x{width} is too large for libwebp")
    return height, width


def _webp_frame(kind, data, length):
    """`(height, width)` from a VP8 (lossy) or VP8L (lossless) frame header."""
    if kind == b"VP8L":
        if len(data) < 5 or data[0] != 0x2F or data[4] >> 5:
            raise _BadImage("corrupt WebP (VP8L header)")
        bits = _u32le(data, 1)
        return 1 + (bits >> 14 & 0x3FFF), 1 + (bits & 0x3FFF)
    if len(data) < 10 or data[3:6] != b"\x9d\x01\x2a":
        raise _BadImage("corrupt WebP (VP8 header)")
    tag = int.from_bytes(data[:3], "little")
    if tag & 1 or (tag >> 1 & 7) > 3 or not tag >> 4 & 1 or tag >> 5 >= length:
        raise _BadImage("corrupt WebP (VP8 frame tag)")
    width, height = _u16le(data, 6) & 0x3FFF, _u16le(data, 8) & 0x3FFF
    if not width or not height:
        raise _BadImage(f"WebP with a zero size ({height}x{width})")
    return height, width


def _webp_end(source, riff_size, frame_end):
    if frame_end > source.size:
        raise _BadImage(f"truncated WebP ({source.size} of {frame_end} bytes)")
    if riff_size + 8 > source.size:
        raise _BadImage(f"truncated WebP ({source.size} of {riff_size + 8} bytes)")
