"""Tests for the audio encoder "log_mel"."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm import testing
from kerasmm.encoders.audio import LogMelAudioEncoder

SAMPLE_RATE = 16000
WAVE = np.random.default_rng(0).standard_normal((2, 1600)).astype("float32")  # 8 frames
TRANSFORMER_KWARGS = dict(output_dim=16, backend="transformer", num_layers=1, num_heads=2, max_frames=24)


def _shapes(frames, dim=16):
    return {"sequence": (None, frames, dim), "pooled": (None, dim), "sequence_mask": (None, frames)}


def _tone(frequency, num_samples=4000):
    t = np.arange(num_samples) / SAMPLE_RATE
    return np.sin(2 * np.pi * frequency * t).astype("float32")[None]


# --- run_layer_test ---------------------------------------------------------


def test_conv_backend_layer():
    # 1600 samples -> 8 frames -> two stride-2 convs -> 2. Weights: 2 x (kernel, bias) + LayerNorm 2.
    out = testing.run_layer_test(
        LogMelAudioEncoder, {"output_dim": 16}, WAVE,
        expected_output_shape=_shapes(2), expected_num_trainable_weights=6,
    )
    assert out["sequence_mask"].dtype == bool and out["sequence_mask"].all()
    np.testing.assert_allclose(out["pooled"], out["sequence"].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_transformer_backend_layer():
    # projection 2 + position table 1 + one block 16 + final LayerNorm 2.
    out = testing.run_layer_test(
        LogMelAudioEncoder, TRANSFORMER_KWARGS, WAVE,
        expected_output_shape=_shapes(8), expected_num_trainable_weights=21,
    )
    np.testing.assert_allclose(out["pooled"], out["sequence"].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_mel_matrix_is_a_constant_not_a_weight():
    encoder = LogMelAudioEncoder(output_dim=8, num_layers=1)
    encoder(WAVE)
    assert encoder.non_trainable_weights == []
    assert encoder._mel_matrix.shape == (512 // 2 + 1, 40)


# --- the log-mel step ---------------------------------------------------------


@pytest.mark.parametrize("num_samples", [1600, 4000])
def test_log_mel_frames(num_samples):
    encoder = LogMelAudioEncoder(output_dim=8)
    frames = 1 + (num_samples - 400) // 160
    assert encoder.num_frames(num_samples) == frames
    spectrogram = encoder.log_mel(np.zeros((2, num_samples), "float32"))
    assert tuple(spectrogram.shape) == (2, frames, 40)
    assert spectrogram.dtype == tf.float32
    # Silence is log(epsilon) everywhere: finite.
    np.testing.assert_allclose(spectrogram, math.log(1e-6), rtol=1e-6)
    # Conv backend: each stride-2 layer halves the frames, rounding up.
    out = encoder(np.zeros((2, num_samples), "float32"))
    assert out["sequence"].shape[1] == math.ceil(math.ceil(frames / 2) / 2)


@pytest.mark.parametrize("frequency", [440.0, 1000.0])
def test_tone_energy_lands_in_its_mel_bin(frequency):
    encoder = LogMelAudioEncoder(output_dim=8)
    spectrogram = keras.ops.convert_to_numpy(encoder.log_mel(_tone(frequency)))
    # Band k of the HTK mel bank peaks at the (k+1)-th of num_mel_bins + 2 points
    # evenly spaced in mel between the edges.
    mel = lambda hz: 1127.0 * math.log1p(hz / 700.0)  # noqa: E731
    centers = np.linspace(mel(20.0), mel(8000.0), 40 + 2)[1:-1]
    expected = int(np.argmin(np.abs(centers - mel(frequency))))
    assert np.all(spectrogram.argmax(axis=-1) == expected)
    assert spectrogram.max() > spectrogram.min() + 10.0


def test_log_mel_in_tf_data_and_tf_function():
    encoder = LogMelAudioEncoder(output_dim=8)
    eager = encoder.log_mel(WAVE)
    dataset = tf.data.Dataset.from_tensor_slices(WAVE).batch(2).map(encoder.log_mel)
    np.testing.assert_allclose(next(iter(dataset)), eager, rtol=1e-5, atol=1e-5)
    graph_call = tf.function(lambda w: encoder(w)["pooled"])
    np.testing.assert_allclose(graph_call(tf.constant(WAVE)), encoder(WAVE)["pooled"], rtol=1e-5, atol=1e-5)


def test_export_saved_model(tmp_path):
    inputs = keras.Input((1600,))
    model = keras.Model(inputs, LogMelAudioEncoder(output_dim=8, num_layers=1)(inputs)["pooled"])
    path = os.path.join(tmp_path, "exported")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    np.testing.assert_allclose(reloaded.serve(tf.constant(WAVE)), model(WAVE), rtol=1e-5, atol=1e-5)


def test_waveform_length_can_be_dynamic_for_conv():
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMelAudioEncoder(output_dim=8)(inputs))
    assert model(np.zeros((1, 4000), "float32"))["sequence"].shape == (1, 6, 8)


# --- validation ---------------------------------------------------------------


def test_wrong_dtype_and_rank_are_refused():
    encoder = LogMelAudioEncoder(output_dim=8)
    with pytest.raises(ValueError, match=r"LogMelAudioEncoder \(audio encoder\) expects .*got dtype int32"):
        encoder((WAVE * 100).astype("int32"))
    with pytest.raises(ValueError, match=r"rank 2.*got an input of shape"):
        encoder(WAVE[..., None])
    with pytest.raises(ValueError, match="rank 2"):
        encoder(keras.Input((1600, 1)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": "rnn"}, r"backend must be one of 'conv', 'transformer'"),
        ({"upper_edge_hertz": 9000.0}, "above the Nyquist frequency"),
        ({"lower_edge_hertz": 5000.0, "upper_edge_hertz": 4000.0}, "lower_edge_hertz < upper_edge_hertz"),
        ({"lower_edge_hertz": -1.0}, "lower_edge_hertz"),
        ({"fft_length": 256}, r"fft_length \(256\) must be >= frame_length \(400\)"),
        ({"frame_step": 0}, "frame_step"),
        ({"num_mel_bins": 2.5}, "num_mel_bins"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": -0.1}, "dropout"),
        ({"log_epsilon": 0.0}, "log_epsilon"),
        ({"backend": "transformer"}, "needs max_frames"),
        ({"backend": "transformer", "max_frames": 10, "num_heads": 3}, "divisible by num_heads"),
        ({"output_dim": 0}, "output_dim"),
    ],
)
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogMelAudioEncoder(**{"output_dim": 8, **kwargs})


def test_input_length_is_checked_at_build():
    with pytest.raises(ValueError, match="give 8 frames, more than max_frames=4"):
        LogMelAudioEncoder(**{**TRANSFORMER_KWARGS, "max_frames": 4})(keras.Input((1600,)))
    with pytest.raises(ValueError, match="shorter than frame_length"):
        LogMelAudioEncoder(output_dim=8)(keras.Input((399,)))


def test_registered_name():
    encoder = kerasmm.encoders.get("log_mel", output_dim=8)
    assert isinstance(encoder, LogMelAudioEncoder)
    assert kerasmm.encoders.modality_of("log_mel") == "audio"
    assert encoder.get_config()["upper_edge_hertz"] is None
