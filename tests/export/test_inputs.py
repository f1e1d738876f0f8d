"""Raw-input checks and decoding that run inside exported graphs."""

import numpy as np
import pytest
import tensorflow as tf

from kerasmm.export import inputs


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def decode(image_bytes):
    return inputs.decode_images(inputs.checked_bytes(image_bytes, "image_bytes", "image"), (16, 16))


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def decode_audio(audio_bytes):
    return inputs.decode_waves(inputs.checked_bytes(audio_bytes, "audio_bytes", "audio"), 800, 16000)


def png(pixels):
    return tf.io.encode_png(np.asarray(pixels, np.uint8)).numpy()


def test_images_of_any_format_size_and_channels_decode_to_the_model_size():
    rgba = np.zeros((20, 30, 4), np.uint8)  # fully transparent: white after compositing
    grey = np.full((16, 16, 1), 100, np.uint8)  # the model's size: not resized
    jpeg = tf.io.encode_jpeg(np.full((8, 8, 3), 30, np.uint8)).numpy()
    out = decode(tf.constant([png(rgba), png(grey), jpeg])).numpy()
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], 100 / 255, rtol=1e-6)
    assert np.abs(out[2] - 30 / 255).max() < 3 / 255


def test_webp_gif_and_bmp_headers_count_as_images():
    values = tf.constant([b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a...", b"BM......", b"RIFF\x00\x00\x00\x00WAVEfmt "])
    np.testing.assert_array_equal(inputs.is_image(values).numpy(), [True, True, True, False])
    np.testing.assert_array_equal(inputs.is_wav(values).numpy(), [False, False, False, True])


@pytest.mark.parametrize("request_values, message", [
    ([], "image_bytes is an empty batch"),
    ([b""], "image_bytes: element is an empty string, not a JPEG, PNG, GIF, BMP or WebP image (index:)] [0]"),
    ([png(np.zeros((4, 4, 3))), b"<html>not an image</html>"],
     "image_bytes: element is not a JPEG, PNG, GIF, BMP or WebP image (index:)] [1]"),
    ([b"abc"], "image_bytes: element is not a JPEG, PNG, GIF, BMP or WebP image (index:)] [0]"),
])
def test_bad_image_requests_name_the_problem(request_values, message):
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        decode(tf.constant(request_values, tf.string))
    assert message in caught.value.message


def test_a_truncated_image_fails_in_the_decoder_with_an_invalid_argument_error():
    data = png(np.zeros((8, 8, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode(tf.constant([data[:30]]))


def test_wav_files_decode_resample_and_pad_and_bad_ones_are_named():
    tone = np.sin(np.arange(400) / 5.0).astype("float32")[:, None] * 0.5
    wav_8k = tf.audio.encode_wav(tone, 8000).numpy()
    out = decode_audio(tf.constant([wav_8k])).numpy()
    assert out.shape == (1, 800) and np.abs(out).max() > 0.3
    with pytest.raises(tf.errors.InvalidArgumentError, match="audio_bytes: element is not a WAV file"):
        decode_audio(tf.constant([wav_8k, png(np.zeros((4, 4, 3)))]))


def test_inputs_of_different_batch_sizes_are_refused():
    @tf.function
    def both(a, b):
        return inputs.same_batch_size({"image_bytes": a, "text": b})["text"]

    with pytest.raises(tf.errors.InvalidArgumentError, match="image_bytes, text must have the same batch size"):
        both(tf.constant([b"x"]), tf.constant([b"a", b"b"]))
    assert both(tf.constant([b"x"]), tf.constant([b"a"])).numpy().tolist() == [b"a"]


def _png_header(width, height):
    """A PNG signature and IHDR declaring `width` x `height`: what a server sees before decoding."""
    import struct
    import zlib

    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def _animated_webp():
    import io

    from PIL import Image

    frames = [Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


@pytest.mark.parametrize("data, message", [
    (_png_header(12000, 12000), "image_bytes: element declares more than 67108864 pixels in its header"),
    (_animated_webp(), "image_bytes: element is an animated WebP, which cannot be decoded"),
])
def test_images_too_large_or_animated_are_refused_before_decoding(data, message):
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        decode(tf.constant([png(np.zeros((4, 4, 3))), data]))
    assert message in caught.value.message and "[1]" in caught.value.message


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def checked_text(text):
    return inputs.checked_text(text, "text", max_bytes=32)


@pytest.mark.parametrize("text, message", [
    ([b"a red circle", b""], "text: element is empty or only white space (index:)] [1]"),
    ([b" \t\n"], "text: element is empty or only white space (index:)] [0]"),
    ([b"caf\xe9 latin-1"], "text: element is not valid UTF-8 text (index:)] [0]"),
    ([b"x" * 33], "text: element is longer than 32 bytes (index:)] [0]"),
    ([], "text is an empty batch"),
])
def test_bad_text_requests_name_the_problem(text, message):
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        checked_text(tf.constant(text, tf.string))
    assert message in caught.value.message


def test_good_text_passes_including_a_spelled_out_replacement_character():
    text = tf.constant(["a red circle", "caf\u00e9 \ufffd", "x" * 32])
    np.testing.assert_array_equal(checked_text(text).numpy(), text.numpy())


def test_fuzz_mutated_images_give_a_result_or_an_invalid_argument_error():
    """Truncations, header byte flips, flips anywhere and appended bytes of seven kinds of image, through
    the exported graph's own checks and decoding: every request is answered or refused, nothing else."""
    import io

    from PIL import Image

    rng = np.random.default_rng(7)
    picture = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    originals = []
    for format, options in [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("BMP", {}),
                            ("WEBP", {"lossless": True}), ("WEBP", {"quality": 70})]:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format, **options)
        originals.append(buffer.getvalue())
    answered = refused = 0
    for i in range(140):
        data = bytearray(originals[i % len(originals)])
        kind = i // len(originals) % 4
        if kind == 0:
            data = data[: rng.integers(1, len(data))]
        elif kind == 1:
            for position in rng.integers(0, min(64, len(data)), 3):
                data[position] = rng.integers(256)
        elif kind == 2:
            data[rng.integers(len(data))] = rng.integers(256)
        else:
            data += bytes(rng.integers(0, 256, rng.integers(1, 100), dtype=np.uint8))
        try:
            assert decode(tf.constant([bytes(data)])).shape == (1, 16, 16, 3)
            answered += 1
        except tf.errors.InvalidArgumentError as error:
            assert error.message.strip()
            refused += 1
    assert answered + refused == 140 and answered > 20 and refused > 20
