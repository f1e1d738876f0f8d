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
