import inspect
import random
import re
import struct

import numpy as np
import pytest
import tensorflow as tf

from kerasmm.data import audio_ops

PCM_STEP = 1.0 / 32767


def tone(frequency, rate, seconds=1.0, amplitude=0.5):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def peak_frequency(waveform, rate):
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return np.argmax(spectrum) * rate / len(waveform)


def decode_file(path, **kwargs):
    return audio_ops.decode_wav(tf.io.read_file(str(path)), **kwargs).numpy()


# A hand-built WAV: every header field can be set, so the bad kinds are easy to make.
def chunk(chunk_id, payload):
    return chunk_id + struct.pack("<I", len(payload)) + payload


def wav_bytes(
    samples=b"\x00\x01" * 8,
    format_tag=1,
    channels=1,
    rate=16000,
    bits=16,
    fmt_extra=b"",
    before_fmt=b"",
    before_data=b"",
    after_data=b"",
    data_size=None,
):
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits) + fmt_extra
    data_size = len(samples) if data_size is None else data_size
    body = b"WAVE" + before_fmt + chunk(b"fmt ", fmt) + before_data
    body += b"data" + struct.pack("<I", data_size) + samples + after_data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tf_can_decode(data):
    """What the real op says (a rate of 0 counts as unreadable: decode_wav cannot resample it)."""
    try:
        _, rate = tf.audio.decode_wav(data)
    except (tf.errors.InvalidArgumentError, UnicodeDecodeError):  # see the module docstring
        return False
    return int(rate) > 0


EXTENSIBLE_PCM16 = struct.pack("<HHI", 22, 16, 4) + bytes.fromhex("0100000000001000800000aa00389b71")
GOOD_FILES = {
    "mono": wav_bytes(),
    "stereo": wav_bytes(channels=2),
    "fmt of 18 bytes": wav_bytes(fmt_extra=b"\x00\x00"),
    "JUNK before fmt": wav_bytes(before_fmt=chunk(b"JUNK", bytes(4))),
    "LIST before data": wav_bytes(before_data=chunk(b"LIST", b"INFOabcd")),
    "LIST after data": wav_bytes(after_data=chunk(b"LIST", b"INFO")),
    "empty data chunk": wav_bytes(samples=b""),
}
BAD_FILES = {
    "not a RIFF/WAVE": b"this is a text file, not audio\n",
    "truncated": wav_bytes(data_size=1000),
    "8-bit PCM": wav_bytes(bits=8, samples=bytes(8)),
    "24-bit PCM": wav_bytes(bits=24, samples=bytes(12)),
    "32-bit PCM": wav_bytes(bits=32, samples=bytes(16)),
    "IEEE float": wav_bytes(format_tag=3, bits=32, samples=np.zeros(4, np.float32).tobytes()),
    "A-law": wav_bytes(format_tag=6, bits=8, samples=bytes(8)),
    "WAVE_FORMAT_EXTENSIBLE": wav_bytes(format_tag=0xFFFE, fmt_extra=EXTENSIBLE_PCM16),
    "RIFX": b"RIFX" + wav_bytes()[4:],
    "no data": wav_bytes()[:36],
    "no fmt": b"RIFF" + struct.pack("<I", 20) + b"WAVE" + chunk(b"data", bytes(8)),
    "LIST before fmt": wav_bytes(before_fmt=chunk(b"LIST", b"INFO")),
    "zero channels": wav_bytes(channels=0),
    "sample rate 0": wav_bytes(rate=0),
    "two data chunks": wav_bytes(after_data=chunk(b"data", bytes(4))),
    "stray bytes after data": wav_bytes(after_data=b"abc"),
    "odd chunk before data": wav_bytes(before_data=chunk(b"LIST", b"INFOx") + b"\x00"),
}


def test_round_trip_16k_tone(tmp_path):
    path = tmp_path / "tone.wav"
    wave = tone(440, 16000)
    audio_ops.write_wav(path, wave, 16000)
    decoded = decode_file(path)
    assert decoded.dtype == np.float32 and decoded.shape == wave.shape
    np.testing.assert_allclose(decoded, wave, atol=2 * PCM_STEP)


def test_write_wav_clips_and_checks_rank(tmp_path):
    audio_ops.write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.25]), 8000)
    loud = decode_file(tmp_path / "loud.wav", sample_rate=None)
    np.testing.assert_allclose(loud, [1.0, -1.0, 0.25], atol=2 * PCM_STEP)
    with pytest.raises(ValueError, match=r"\[S\] or \[S, C\]"):
        audio_ops.write_wav(tmp_path / "bad.wav", np.zeros((2, 2, 2)), 8000)


def test_stereo_becomes_channel_mean(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = tone(440, 16000, 0.25), tone(1000, 16000, 0.25, amplitude=0.3)
    audio_ops.write_wav(path, np.stack([left, right], axis=-1), 16000)
    channels, _ = tf.audio.decode_wav(tf.io.read_file(str(path)))
    mono = decode_file(path)
    np.testing.assert_allclose(mono, channels.numpy().mean(axis=-1), atol=1e-7)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=2 * PCM_STEP)


@pytest.mark.parametrize(
    "from_rate,to_rate",
    [(8000, 16000), (44100, 16000), (16000, 8000), (22050, 16000), (16000, 44100), (44100, 16001)],
)
def test_resampled_tone_keeps_its_frequency_and_length(tmp_path, from_rate, to_rate):
    # 44100 -> 16001 has a huge reduced ratio, so it takes the gather path; the others the polyphase one.
    seconds = 1.5
    path = tmp_path / "tone.wav"
    audio_ops.write_wav(path, tone(440, from_rate, seconds), from_rate)
    out = decode_file(path, sample_rate=to_rate)
    assert abs(len(out) - seconds * to_rate) <= 1
    assert abs(peak_frequency(out, to_rate) - 440) <= 5
    # Away from the clip edges (zero outside), it is the tone sampled at the new rate.
    expected = tone(440, to_rate, len(out) / to_rate)
    middle = slice(len(out) // 10, -len(out) // 10)
    np.testing.assert_allclose(out[middle], expected[middle], atol=2e-3)


@pytest.mark.parametrize(
    "from_rate,to_rate,frequency", [(16000, 8000, 6000), (44100, 16000, 9000), (44100, 16001, 9000)]
)
def test_downsampling_removes_what_the_new_rate_cannot_hold(from_rate, to_rate, frequency):
    wave = tone(frequency, from_rate)
    out = audio_ops.resample(wave, from_rate, to_rate).numpy()
    middle = slice(len(out) // 10, -len(out) // 10)
    energy_ratio = np.mean(out[middle] ** 2) / np.mean(wave**2)
    assert energy_ratio < 1e-4  # would alias to a strong tone without the low-pass


def test_upsampling_leaves_no_images():
    out = audio_ops.resample(tone(3000, 8000), 8000, 16000).numpy()[1000:-1000]
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out)))) ** 2
    frequencies = np.fft.rfftfreq(len(out), 1 / 16000)
    assert spectrum[frequencies > 4000].sum() / spectrum.sum() < 1e-6


def test_equal_rates_pass_through_unchanged():
    wave = np.random.default_rng(0).normal(size=777).astype(np.float32)
    np.testing.assert_array_equal(audio_ops.resample(wave, 16000, 16000).numpy(), wave)


def test_resample_batches_edge_lengths_and_runtime_rates():
    batch = tf.random.stateless_normal([3, 1000], seed=(1, 2))
    for from_rate, to_rate in [(44100, 16000), (44100, 16001)]:
        together = audio_ops.resample(batch, from_rate, to_rate).numpy()
        apart = np.stack([audio_ops.resample(row, from_rate, to_rate).numpy() for row in batch])
        np.testing.assert_allclose(together, apart, atol=1e-6)
    for length, expected in [(0, 0), (1, 1), (5, 2)]:
        assert audio_ops.resample(tf.ones([length]), 48000, 16000).shape == (expected,)

    @tf.function
    def at_runtime_rates(wave, from_rate, to_rate):
        return audio_ops.resample(wave, from_rate, to_rate)

    assert at_runtime_rates(tf.ones([100]), tf.constant(8000), tf.constant(16000)).shape == (200,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be positive"):
        audio_ops.resample(tf.ones([10]), 0, 16000)


def test_pad_or_crop():
    np.testing.assert_array_equal(audio_ops.pad_or_crop(tf.ones([3]), 5).numpy(), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(audio_ops.pad_or_crop(tf.range(7.0), 4).numpy(), [0, 1, 2, 3])
    assert audio_ops.pad_or_crop(tf.ones([2, 7]), 4).shape == (2, 4)
    assert audio_ops.pad_or_crop(tf.ones([2, 3]), 6).numpy().sum() == 6
    assert audio_ops.pad_or_crop(tf.ones([3]), 0).shape == (0,)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def fixed(batch):
        out = audio_ops.pad_or_crop(batch, 9)
        assert out.shape.as_list() == [None, 9]  # static, though the input length is not
        return out

    assert fixed(tf.ones([4, 20])).shape == (4, 9)
    with pytest.raises(ValueError):
        audio_ops.pad_or_crop(tf.ones([3]), -1)


def test_decode_with_length_sets_the_static_shape(tmp_path):
    path = tmp_path / "short.wav"
    audio_ops.write_wav(path, tone(440, 8000, 0.5), 8000)
    data = tf.io.read_file(str(path))
    padded = audio_ops.decode_wav(data, length=12000)
    assert padded.shape == (12000,) and np.all(padded.numpy()[8001:] == 0)
    assert audio_ops.decode_wav(data, length=4000).shape == (4000,)
    decode = tf.function(lambda d: audio_ops.decode_wav(d, length=100))
    graph = decode.get_concrete_function(tf.TensorSpec([], tf.string))
    assert graph.structured_outputs.shape.as_list() == [100]


def test_inside_tf_data_map_with_checkpointable_iterator(tmp_path):
    files = []
    for index, (rate, channels) in enumerate([(8000, 1), (16000, 2), (44100, 1), (22050, 2)]):
        path = str(tmp_path / f"clip{index}.wav")
        wave = tone(440, rate, 0.5)
        audio_ops.write_wav(path, np.stack([wave] * channels, axis=-1), rate)
        files.append(path)
    dataset = (
        tf.data.Dataset.from_tensor_slices(files)
        .map(lambda f: audio_ops.decode_wav(tf.io.read_file(f), length=8000), num_parallel_calls=2)
        .batch(2)
    )
    assert dataset.element_spec.shape.as_list() == [None, 8000]
    batches = [batch.numpy() for batch in dataset]
    assert [b.shape for b in batches] == [(2, 8000), (2, 8000)]
    for clip in np.concatenate(batches):
        assert abs(peak_frequency(clip, 16000) - 440) <= 5

    # No py_function anywhere, so the iterator state can be saved and restored.
    iterator = iter(dataset)
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    saved = checkpoint.write(str(tmp_path / "ckpt"))
    expected = next(iterator).numpy()
    checkpoint.read(saved).assert_consumed()
    np.testing.assert_array_equal(next(iterator).numpy(), expected)


def test_check_wav_accepts_readable_files(tmp_path):
    audio_ops.write_wav(tmp_path / "written.wav", tone(440, 16000, 0.1), 16000)
    assert audio_ops.check_wav(tmp_path / "written.wav") is None
    for name, data in GOOD_FILES.items():
        path = tmp_path / "good.wav"
        path.write_bytes(data)
        assert tf_can_decode(data), name
        assert audio_ops.check_wav(path) is None, name


def test_check_wav_names_each_bad_kind(tmp_path):
    assert audio_ops.check_wav(tmp_path / "missing.wav") == "missing file"
    (tmp_path / "empty.wav").write_bytes(b"")
    assert audio_ops.check_wav(tmp_path / "empty.wav") == "zero bytes"
    assert "directory" in audio_ops.check_wav(tmp_path)
    expected_words = {
        "not a RIFF/WAVE": "not a RIFF/WAVE",
        "truncated": "truncated",
        "8-bit PCM": "8-bit",
        "24-bit PCM": "24-bit",
        "32-bit PCM": "32-bit",
        "IEEE float": "IEEE float",
        "A-law": "A-law",
        "WAVE_FORMAT_EXTENSIBLE": "EXTENSIBLE",
        "RIFX": "RIFX",
        "no data": "no data chunk",
        "no fmt": "no fmt chunk",
        "LIST before fmt": "before the fmt chunk",
        "zero channels": "zero channels",
        "sample rate 0": "sample rate 0",
        "two data chunks": "more than one data chunk",
        "stray bytes after data": "stray byte",
        "odd chunk before data": "odd-sized chunk",
    }
    assert set(expected_words) == set(BAD_FILES)
    for index, (name, data) in enumerate(BAD_FILES.items()):
        path = tmp_path / f"bad{index}.wav"
        path.write_bytes(data)
        assert not tf_can_decode(data), f"{name}: tf.audio.decode_wav reads it after all"
        reason = audio_ops.check_wav(path)
        assert reason is not None and expected_words[name] in reason, (name, reason)


def test_check_wav_agrees_with_tf_on_truncated_and_corrupted_headers(tmp_path):
    bases = [
        wav_bytes(),
        wav_bytes(channels=2, fmt_extra=b"\x00\x00", before_fmt=chunk(b"bext", bytes(4))),
        wav_bytes(before_data=chunk(b"LIST", b"INFOabcd"), after_data=chunk(b"LIST", b"INFO")),
    ]
    rng = random.Random(0)
    cases = []
    for base in bases:
        cases += [base[:size] for size in range(1, len(base))]
        for _ in range(120):
            corrupted = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                corrupted[rng.randrange(60)] = rng.choice([0, 1, 2, 16, 18, 255, rng.randrange(256)])
            cases.append(bytes(corrupted))
    path = tmp_path / "case.wav"
    for data in cases:
        path.write_bytes(data)
        reason = audio_ops.check_wav(path)
        assert (reason is None) == tf_can_decode(data), (reason, data[:48])


def test_docstring_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write small files to the working directory
    names = ["decode_wav", "pad_or_crop", "resample", "write_wav", "check_wav"]
    for obj in [audio_ops] + [getattr(audio_ops, name) for name in names]:
        examples = re.findall(r"```python\n(.*?)```", inspect.getdoc(obj), re.S)
        assert examples, obj
        exec(compile(examples[0], f"<example {getattr(obj, '__name__', obj)}>", "exec"), {})
