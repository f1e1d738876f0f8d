import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasmm.data import image_ops

RED = (200, 30, 40)


def encode(array, mode, fmt):
    image = Image.fromarray(array, mode=mode) if mode != "P" else Image.fromarray(array, "RGB").convert(
        "P", palette=Image.ADAPTIVE, colors=4
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def solid(height, width, colour):
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, len(colour))).copy()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_rgb_in_every_format(fmt):
    decoded = image_ops.decode_image(encode(solid(6, 5, RED), "RGB", fmt)).numpy()
    assert decoded.shape == (6, 5, 3) and decoded.dtype == np.uint8
    tolerance = 8 if fmt in ("JPEG", "GIF") else 0
    np.testing.assert_allclose(decoded.astype(int), np.broadcast_to(RED, (6, 5, 3)), atol=tolerance)


def test_greyscale_becomes_rgb():
    decoded = image_ops.decode_image(encode(solid(4, 4, (90,))[..., 0], "L", "PNG")).numpy()
    assert decoded.shape == (4, 4, 3)
    np.testing.assert_array_equal(decoded, 90)


def test_alpha_is_composited_onto_white():
    rgba = solid(2, 2, RED + (255,))
    rgba[0, 0, 3] = 0  # fully transparent
    rgba[0, 1, 3] = 128  # half transparent
    decoded = image_ops.decode_image(encode(rgba, "RGBA", "PNG")).numpy()
    np.testing.assert_array_equal(decoded[0, 0], [255, 255, 255])
    np.testing.assert_allclose(decoded[0, 1], np.round(np.array(RED) * 128 / 255 + 255 * 127 / 255), atol=1)
    np.testing.assert_array_equal(decoded[1, 1], RED)
    grey_alpha = np.stack([np.full((2, 2), 60, np.uint8), np.full((2, 2), 0, np.uint8)], -1)
    np.testing.assert_array_equal(image_ops.decode_image(encode(grey_alpha, "LA", "PNG")).numpy(), 255)


def test_palette_image_becomes_rgb():
    decoded = image_ops.decode_image(encode(solid(3, 3, RED), "P", "PNG")).numpy()
    assert decoded.shape == (3, 3, 3)
    np.testing.assert_array_equal(decoded, np.broadcast_to(RED, (3, 3, 3)))


def test_decodes_inside_tf_data():
    files = [encode(solid(4, 6, RED), "RGB", "PNG"), encode(solid(8, 2, (10,))[..., 0], "L", "BMP")]
    ds = tf.data.Dataset.from_tensor_slices(files).map(
        lambda b: image_ops.resize_image(image_ops.decode_image(b), (4, 4))
    )
    shapes = [tuple(x.shape) for x in ds]
    assert shapes == [(4, 4, 3), (4, 4, 3)]


def test_resize_policies():
    wide = np.zeros((10, 20, 3), np.uint8)
    wide[:, 5:15] = 255  # white centre, black sides
    stretched = image_ops.resize_image(wide, (10, 10), "stretch").numpy()
    cropped = image_ops.resize_image(wide, (10, 10), "crop").numpy()
    padded = image_ops.resize_image(wide, (10, 10), "pad").numpy()
    assert stretched.shape == cropped.shape == padded.shape == (10, 10, 3)
    assert stretched[:, 0].max() == 0  # sides kept
    assert cropped.min() >= 250  # the centred square is all white
    assert padded[0].min() >= 250 and padded[-1].min() >= 250  # white letterbox rows
    assert padded[5, 0].max() == 0  # the black side survives
    assert image_ops.resize_image(wide.astype("float32"), 8).dtype == tf.float32


def test_unknown_policy_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid policies: stretch, crop, pad"):
        image_ops.resize_image(np.zeros((4, 4, 3), np.uint8), 2, "fit")


def test_bytes_that_are_not_an_image_fail_clearly():
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)unknown image file format"):
        image_ops.decode_image(b"not an image")


def test_jpeg_decodes_at_a_reduced_scale_that_still_covers_min_size():
    jpeg = encode(solid(200, 120, RED), "RGB", "JPEG")
    assert image_ops.decode_image(jpeg, min_size=(40, 20)).shape == (50, 30, 3)  # 1/4 scale
    assert image_ops.decode_image(jpeg, min_size=(150, 20)).shape == (200, 120, 3)  # no room to shrink
    grey = image_ops.decode_image(encode(solid(64, 64, (90,))[..., 0], "L", "JPEG"), min_size=(8, 8)).numpy()
    assert grey.shape == (8, 8, 3) and abs(int(grey[4, 4, 0]) - 90) <= 3
    png = encode(solid(64, 64, RED), "RGB", "PNG")
    assert image_ops.decode_image(png, min_size=(8, 8)).shape == (64, 64, 3)
