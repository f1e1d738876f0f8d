"""check_image and image_size_from_header: valid files pass, bad ones are refused before the pipeline decodes them.

The pipeline decodes with `image_ops.decode_image`; a file the check passes
must decode, or `on_error="skip"` would still crash mid-epoch.
"""

import io
import os
import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasmm.data import BadRecordError, from_folder, image_header, image_ops


def pixels(height=23, width=37, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


def encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def animated(fmt, **options):
    frames = [Image.fromarray(pixels(seed=i)) for i in range(3)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(height, width):
    """A valid greyscale PNG of any size, written row by row (a 12000x12000 one is ~150 KB)."""
    compressor, row = zlib.compressobj(), b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


RGB = Image.fromarray(pixels())
VALID = {
    "JPEG": encode(RGB, "JPEG"),
    "progressive JPEG": encode(RGB, "JPEG", progressive=True),
    "greyscale JPEG": encode(RGB.convert("L"), "JPEG"),
    "CMYK JPEG": encode(RGB.convert("CMYK"), "JPEG"),
    "JPEG with EXIF and ICC": encode(RGB, "JPEG", exif=b"Exif\0\0II*\0\x08\0\0\0\0\0", icc_profile=b"\0" * 3000),
    "PNG": encode(RGB, "PNG"),
    "palette PNG": encode(RGB.convert("P"), "PNG"),
    "greyscale+alpha PNG": encode(RGB.convert("LA"), "PNG"),
    "16-bit PNG": encode(Image.fromarray(pixels(channels=1)[..., 0].astype(np.uint16) * 257), "PNG"),
    "GIF": encode(RGB, "GIF"),
    "animated GIF": animated("GIF"),
    "BMP": encode(RGB, "BMP"),
    "greyscale BMP": encode(RGB.convert("L"), "BMP"),
    "RGBA BMP": encode(RGB.convert("RGBA"), "BMP"),
    "WebP": encode(RGB, "WEBP"),
    "lossless WebP": encode(RGB, "WEBP", lossless=True),
    "WebP with alpha": encode(Image.fromarray(pixels(channels=4)), "WEBP"),
}


def write(tmp_path, name, data):
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def decodes(data):
    """Whether the pipeline's decoder and a plain 3-channel tf.io.decode_image both read `data`."""
    try:
        image_ops.decode_image(tf.constant(data))
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_images_pass_with_the_size_they_decode_to(tmp_path, kind):
    data = VALID[kind]
    assert image_header.check_image(write(tmp_path, "image", data)) is None
    decoded = image_ops.decode_image(tf.constant(data))
    assert image_header.image_size_from_header(data) == tuple(decoded.shape[:2]) == (23, 37)


# Phone photos carry data after the end of the image (maker notes, a video): it is not truncation.
TRAILING = {"JPEG": b"\0" * 200_000, "PNG": os.urandom(5000), "GIF": b"more data", "WebP": b"x" * 100}


@pytest.mark.parametrize("kind", sorted(TRAILING))
def test_bytes_after_a_complete_image_are_fine(tmp_path, kind):
    data = VALID[kind] + TRAILING[kind]
    assert decodes(data)
    assert image_header.check_image(write(tmp_path, "image", data)) is None


def test_bmp_must_be_exactly_as_long_as_its_header_says(tmp_path):
    # TensorFlow's BMP decoder refuses extra bytes as well as missing ones.
    longer = VALID["BMP"] + b"\0" * 4
    assert not decodes(longer)
    assert "4 bytes after its pixel data" in image_header.check_image(write(tmp_path, "long.bmp", longer))
    shorter = VALID["BMP"][:-4]
    assert image_header.check_image(write(tmp_path, "short.bmp", shorter)).startswith("truncated BMP")


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "GIF", "BMP", "WebP"])
def test_truncated_images_are_refused(tmp_path, kind):
    data = VALID[kind][: len(VALID[kind]) * 2 // 3]
    assert image_header.check_image(write(tmp_path, "image", data)).startswith(f"truncated {kind}")


def test_animated_webp_is_refused_by_name():
    # TensorFlow 2.21's decode_image aborts the process on an animated WebP with channels=0, as
    # decode_image calls it, so this is only ever checked, never decoded.
    data = animated("WEBP")
    with pytest.raises(ValueError, match="animated WebP"):
        image_header.image_size_from_header(data)


def corrupt_jpeg():
    """A JPEG whose first and last bytes are intact but whose quantization table has index 5 (of 0-3)."""
    data = bytearray(VALID["JPEG"])
    data[data.index(b"\xff\xdb") + 4] = 5
    return bytes(data)


def test_a_corrupt_jpeg_header_is_refused():
    data = corrupt_jpeg()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
    assert not decodes(data)
    with pytest.raises(ValueError, match=r"corrupt JPEG \(quantization table 5\)"):
        image_header.image_size_from_header(data)


def make_folder(root, extra):
    for i in range(3):
        os.makedirs(os.path.join(root, "shapes"), exist_ok=True)
        write(os.path.join(root, "shapes"), f"good{i}.png", encode(Image.fromarray(pixels(seed=i)), "PNG"))
    for name, data in extra.items():
        write(os.path.join(root, "shapes"), name, data)
    return root


def test_skip_mode_drops_a_corrupt_jpeg_header_instead_of_crashing_mid_epoch(tmp_path):
    root = make_folder(str(tmp_path), {"bad.jpg": corrupt_jpeg()})
    with pytest.raises(BadRecordError, match="bad.jpg"):
        from_folder(root, image_size=8)
    ds = from_folder(root, image_size=8, batch_size=2, on_error="skip")
    assert sum(int(tf.shape(labels)[0]) for _, labels in ds) == 3
    (source, reason), = ds.skipped_records
    assert source.endswith("bad.jpg") and "corrupt JPEG" in reason


def test_folder_reads_webp_and_lists_an_animated_one_as_skipped(tmp_path):
    root = make_folder(str(tmp_path), {"still.webp": VALID["WebP"], "moving.webp": animated("WEBP")})
    with pytest.raises(BadRecordError, match="moving.webp.*animated WebP"):
        from_folder(root, image_size=8)
    ds = from_folder(root, image_size=8, batch_size=8, on_error="skip")
    images, _ = next(iter(ds))
    assert images["image"].shape == (4, 8, 8, 3)
    assert [os.path.basename(source) for source, _ in ds.skipped_records] == ["moving.webp"]


def test_pixel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    path = write(tmp_path, "huge.png", grey_png(12000, 12000))
    reason = image_header.check_image(path)
    assert "12000x12000" in reason and "144,000,000 pixels" in reason and "67,108,864" in reason
    assert image_header.image_size_from_header(path) == (12000, 12000)
    assert image_header.check_image(path, max_pixels=12000 * 12000) is None
    monkeypatch.setattr(image_header, "MAX_IMAGE_PIXELS", 500)  # the default is the module constant
    small = write(tmp_path, "small.png", VALID["PNG"])
    assert "851 pixels is over the limit of 500 pixels" in image_header.check_image(small)


def test_image_size_from_header_raises_value_error_with_the_reason(tmp_path):
    zero_width = grey_png(4, 1).replace(png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 4, 8, 0, 0, 0, 0)),
                                        png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 4, 8, 0, 0, 0, 0)))
    cases = [
        (b"%PDF-1.7", "not a JPEG, PNG, GIF, BMP or WebP image"),
        (b"", "empty file"),
        (zero_width, "zero size"),
        (VALID["JPEG"][:100], "truncated JPEG"),
        (str(tmp_path / "missing.png"), "file not found"),
    ]
    for data_or_path, reason in cases:
        with pytest.raises(ValueError, match=re.escape(reason)):
            image_header.image_size_from_header(data_or_path)


def mutate(rng, data):
    """A truncation, bit flips, overwritten, inserted or deleted bytes, mostly near the start."""
    data, how = bytearray(data), rng.integers(0, 5)
    if how == 0:
        return bytes(data[: rng.integers(1, len(data))])
    at = int(rng.integers(0, min(len(data), int(rng.choice([16, 64, 256, 1024])))))
    if how == 1:
        data[at] ^= 1 << int(rng.integers(0, 8))
    elif how == 2:
        data[at : at + 4] = rng.integers(0, 256, 4, np.uint8).tobytes()
    elif how == 3:
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 4)), np.uint8).tobytes()
    else:
        del data[at : at + int(rng.integers(1, 4))]
    return bytes(data)


def test_fuzz_every_file_the_check_passes_decodes(tmp_path):
    rng = np.random.default_rng(1234)
    sources = [VALID[kind] for kind in ("JPEG", "progressive JPEG", "PNG", "GIF", "BMP")]
    accepted, refused_but_decodable = 0, []
    for i in range(100):
        data = mutate(rng, sources[i % len(sources)])
        reason = image_header.check_image(write(tmp_path, f"mutant{i}", data))
        assert reason is None or isinstance(reason, str)
        if reason is None:
            accepted += 1
            assert decodes(data), f"mutant {i} passed the check but does not decode"
        elif decodes(data):
            refused_but_decodable.append(reason)
    # The decoders are lenient with a few real problems: a GIF cut after its first frame, a
    # corrupt signature, a JPEG segment length below 2. The check refuses those.
    assert accepted >= 10
    assert len(refused_but_decodable) <= 10, refused_but_decodable
    assert all(r.startswith(("truncated GIF", "not a JPEG", "corrupt ")) for r in refused_but_decodable)
