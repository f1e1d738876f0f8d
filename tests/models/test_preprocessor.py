import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from kerasmm.models import MultimodalPreprocessor

VOCAB = ["[PAD]", "[UNK]", "a", "red", "circle", "blue"]


def preprocessor(**kwargs):
    config = dict(
        modalities=["image", "text", "audio"],
        tokenizer=keras_hub.tokenizers.WordPieceTokenizer(vocabulary=VOCAB, lowercase=True),
        sequence_length=4, image_size=(8, 8), audio_length=10,
    )
    config.update(kwargs)
    return MultimodalPreprocessor(**config)


def test_raw_features_become_backbone_inputs():
    x = {
        "image": np.full((2, 16, 12, 3), 255, "uint8"),
        "text": np.array(["A red circle", "blue blue blue blue blue"]),
        "audio": np.ones((2, 6), "float32"),
    }
    out, y = preprocessor()(x, np.array([1, 0]))
    assert out["image"].shape == (2, 8, 8, 3) and out["image"].dtype == tf.float32
    np.testing.assert_allclose(out["image"].numpy(), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out["text"].numpy(), [[2, 3, 4, 0], [5, 5, 5, 5]])
    np.testing.assert_array_equal(out["audio"].numpy()[:, 6:], 0.0)
    assert out["audio"].shape == (2, 10)
    for m in ("image", "text", "audio"):
        np.testing.assert_array_equal(out[f"{m}_mask"].numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(y), [1, 0])


def test_absent_modalities_are_zero_filled_and_masked():
    out = preprocessor()({"text": np.array(["a", "red"]), "text_mask": np.array([1.0, 0.0])})
    np.testing.assert_array_equal(out["image_mask"].numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(out["audio_mask"].numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(out["text_mask"].numpy(), [1.0, 0.0])
    assert out["image"].shape == (2, 8, 8, 3) and out["audio"].shape == (2, 10)


def test_runs_inside_tf_data_and_round_trips():
    layer = preprocessor(modalities=["text"], image_size=None, audio_length=None)
    ds = tf.data.Dataset.from_tensor_slices({"text": ["a red circle", "blue"]}).batch(2).map(layer)
    np.testing.assert_array_equal(next(iter(ds))["text"].numpy(), [[2, 3, 4, 0], [5, 0, 0, 0]])
    # The vocabulary itself travels as a .keras asset (checked by the zoo tests).
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert revived.get_config() == layer.get_config()


def test_bad_configuration():
    with pytest.raises(ValueError, match=r"Unknown modalities \['video'\]"):
        preprocessor(modalities=["video"])
    with pytest.raises(ValueError, match="needs a tokenizer"):
        preprocessor(tokenizer=None)
    with pytest.raises(ValueError, match="image_size"):
        preprocessor(image_size=None)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint32"])
def test_integer_pixels_of_any_dtype_give_the_uint8_result(dtype):
    import kerasmm

    preprocessor = kerasmm.zoo.get("tiny_dual_encoder").preprocessor
    pixels = np.random.default_rng(0).integers(0, 256, (2, 20, 24, 3))
    expected = preprocessor.prepare("image", pixels.astype("uint8")).numpy()
    np.testing.assert_array_equal(preprocessor.prepare("image", pixels.astype(dtype)).numpy(), expected)


def test_sixteen_bit_pixels_are_scaled_by_their_range_and_out_of_range_integers_refused():
    import kerasmm

    preprocessor = kerasmm.zoo.get("tiny_dual_encoder").preprocessor
    size = preprocessor.image_converter.image_size
    white16 = np.full((1, *size, 3), 65535, np.uint16)
    np.testing.assert_allclose(preprocessor.prepare("image", white16).numpy(), 1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="dtype int64 must hold 8-bit values 0-255"):
        preprocessor.prepare("image", np.full((1, *size, 3), 1000, np.int64))
