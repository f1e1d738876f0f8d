"""One image path: a file gives the same pixels through a reader, the preprocessor, `Index`/search and the export."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasmm
from kerasmm import search
from kerasmm.data import image_header, image_ops
from kerasmm.export import inputs

SIZE = (16, 16)


def _save(path, image, format, **options):
    image.save(path, format, **options)
    return path


def _picture(height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    return (pixels + rng.integers(0, 20, pixels.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Image files of odd aspect ratios and the kinds people have; all under 2x the model size, so
    that JPEGs decode at full scale on every route (the preprocessor gets pixels, not files)."""
    root = tmp_path_factory.mktemp("images")
    exif = Image.Exif()
    exif[0x0112] = 6  # shot sideways: to be turned 90 degrees clockwise
    wide, tall = Image.fromarray(_picture(12, 16, 0)), Image.fromarray(_picture(25, 15, 1))
    rgba = np.dstack([_picture(20, 14, 2), np.linspace(0, 255, 20 * 14).reshape(20, 14).astype(np.uint8)])
    grey16 = (np.arange(18 * 22).reshape(18, 22) * 150).astype(np.uint16)
    return [
        _save(root / "wide.jpg", wide, "JPEG", quality=90),
        _save(root / "tall.png", tall, "PNG"),
        _save(root / "palette.png", tall.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG"),
        _save(root / "alpha.png", Image.fromarray(rgba, "RGBA"), "PNG"),
        _save(root / "grey16.png", Image.fromarray(grey16), "PNG"),
        _save(root / "cmyk.jpg", wide.convert("CMYK"), "JPEG", quality=90),
        _save(root / "progressive.jpg", tall, "JPEG", quality=90, progressive=True),
        _save(root / "rotated.jpg", wide, "JPEG", quality=90, exif=exif.tobytes()),
        _save(root / "animated.gif", tall.convert("P"), "GIF", save_all=True, append_images=[wide.convert("P")]),
        _save(root / "odd.bmp", Image.fromarray(_picture(9, 31, 3)), "BMP"),
        _save(root / "lossless.webp", wide, "WEBP", lossless=True),
    ]


@pytest.fixture(scope="module")
def reader_pixels(files, tmp_path_factory):
    manifest = tmp_path_factory.mktemp("manifest") / "images.jsonl"
    manifest.write_text("".join(json.dumps({"image": str(p), "label": 0}) + "\n" for p in files))
    dataset = kerasmm.data.from_manifest(str(manifest), target="label", batch_size=len(files), image_size=SIZE)
    features, _ = next(iter(dataset))
    return features["image"].numpy()


def test_every_kind_of_file_reads_as_an_rgb_image_of_the_model_size(reader_pixels, files):
    assert reader_pixels.shape == (len(files), *SIZE, 3) and reader_pixels.dtype == np.uint8


def test_search_and_the_export_see_the_pixels_the_reader_trained_on(files, reader_pixels):
    for path, expected in zip(files, reader_pixels):
        searched, reason = search._load_image_file(str(path), SIZE, "crop")
        assert reason is None, (path.name, reason)
        np.testing.assert_array_equal(searched, expected, err_msg=path.name)
        served = inputs.decode_images(tf.constant([path.read_bytes()]), SIZE).numpy()[0]
        np.testing.assert_array_equal(served, expected / np.float32(255.0), err_msg=path.name)


def test_the_preprocessor_resizes_decoded_pixels_as_the_reader_does(files, reader_pixels):
    preprocessor = kerasmm.zoo.get("tiny_dual_encoder", image_size=SIZE[0]).preprocessor
    for path, expected in zip(files, reader_pixels):
        decoded = image_ops.decode_image(tf.constant(path.read_bytes())).numpy()
        pixels = preprocessor.prepare("image", decoded[None]).numpy()[0]
        np.testing.assert_array_equal(pixels, expected / np.float32(255.0), err_msg=path.name)


def test_a_4_by_3_photo_is_centre_cropped_everywhere_not_stretched(tmp_path):
    # Left and right quarters black, the middle white: a centre crop to a square keeps only white.
    pixels = np.zeros((12, 16, 3), np.uint8)
    pixels[:, 2:14] = 255
    path = _save(tmp_path / "photo.png", Image.fromarray(pixels), "PNG")
    read = image_ops.load_image(tf.constant(path.read_bytes()), (6, 6)).numpy()
    # Resized before it is cropped (as CLIP-style processors do), so the outermost columns may pick up a
    # little of the bars' blur; stretching would squeeze the black bars themselves into them.
    assert read[:, 1:-1].min() == 255 and read.min() > 191


def test_exif_orientation_turns_a_sideways_photo_upright(files):
    rotated = image_ops.decode_image(tf.constant(files[7].read_bytes())).numpy()
    upright = image_ops.decode_image(tf.constant(files[0].read_bytes())).numpy()
    assert rotated.shape == (16, 12, 3)  # stored 12 x 16, shown 16 x 12
    np.testing.assert_array_equal(rotated, np.rot90(upright, -1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(_picture(6, 10, 4)).save(buffer, "JPEG", quality=100, exif=exif.tobytes())
    data = buffer.getvalue()
    stored = tf.io.decode_jpeg(data).numpy()
    transposed = {1: stored, 2: stored[:, ::-1], 3: stored[::-1, ::-1], 4: stored[::-1],
                  5: stored.transpose(1, 0, 2), 6: np.rot90(stored, -1), 7: np.rot90(stored, 2).transpose(1, 0, 2),
                  8: np.rot90(stored, 1)}[orientation]
    np.testing.assert_array_equal(image_ops.decode_image(tf.constant(data)).numpy(), transposed)
    # Pillow agrees on the shape each orientation gives.
    from PIL import ImageOps

    assert np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))).shape == transposed.shape


def test_search_refuses_images_over_the_pixel_limit_before_decoding(tmp_path, monkeypatch):
    small = _save(tmp_path / "small.png", Image.fromarray(_picture(8, 8, 5)), "PNG")  # 64 pixels
    large = _save(tmp_path / "large.png", Image.fromarray(_picture(16, 16, 6)), "PNG")  # 256 pixels
    monkeypatch.setattr(image_header, "MAX_IMAGE_PIXELS", 100)
    model = kerasmm.zoo.get("tiny_dual_encoder")
    index = search.Index.from_images(model, paths=[str(small), str(large)], on_error="skip")
    assert index.keys == [str(small)]
    [(source, reason)] = list(index.skipped)
    assert source == str(large) and "over the limit of 100 pixels" in reason
