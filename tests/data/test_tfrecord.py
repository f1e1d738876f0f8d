"""Tests for `kerasmm.data.tfrecord`: writing, reading back, sharding, damaged and bad records."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasmm.data import SHAPES, shapes
from kerasmm.data import tfrecord
from kerasmm.data.errors import BadRecordError
from kerasmm.data.tfrecord import crc32c, from_tfrecord, scan_records, to_tfrecord


def examples(ds):
    """Unbatch a `(features, targets)` dataset into a list of numpy dicts."""
    out = []
    for features, targets in ds.as_numpy_iterator():
        for i in range(len(targets)):
            example = {k: v[i] for k, v in features.items()}
            example["target"] = targets[i]
            out.append(example)
    return out


def key(example):
    return example["image"].tobytes()


def assert_same_examples(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        for k in e:
            np.testing.assert_array_equal(g[k], e[k], err_msg=k)


@pytest.fixture
def classified(tmp_path):
    source = shapes(num_examples=10, batch_size=4, with_audio=True)
    source.class_names = SHAPES
    paths = to_tfrecord(source, str(tmp_path / "train"), num_shards=3)
    return source, paths, str(tmp_path / "train-*.tfrecord")


def record_spans(path):
    with open(path, "rb") as f:
        good, bad = scan_records(f.read())
    assert not bad
    return good


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_round_trip_classification_with_audio(classified, tmp_path):
    source, paths, pattern = classified
    assert paths == [str(tmp_path / f"train-{i:05d}-of-00003.tfrecord") for i in range(3)]
    schema = json.loads((tmp_path / "train.schema.json").read_text())
    assert schema["features"] == {
        "image": {"dtype": "uint8", "shape": [32, 32, 3], "encoding": "png"},
        "text": {"dtype": "string"},
        "audio": {"dtype": "float32", "length": 4000},
    }
    assert schema["target"] == {"kind": "label", "dtype": "int32"}
    assert schema["class_names"] == list(SHAPES) and schema["num_examples"] == 10
    assert [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths] == [4, 3, 3]  # round-robin

    ds = from_tfrecord(pattern, batch_size=4)
    features, labels = next(iter(ds))
    assert features["image"].dtype == tf.uint8 and features["image"].shape == (4, 32, 32, 3)
    assert features["text"].dtype == tf.string and features["audio"].dtype == tf.float32
    assert features["audio"].shape == (4, 4000) and labels.dtype == tf.int32
    assert ds.class_names == list(SHAPES) and len(ds.skipped_records) == 0
    # One record per shard in turn: interleaving the 3 shards restores the written order.
    assert_same_examples(examples(ds), examples(source))
    # Writing again with fewer shards replaces the old ones instead of mixing with them.
    assert to_tfrecord(source, str(tmp_path / "train"), num_shards=2) == sorted(
        str(p) for p in tmp_path.glob("train-*.tfrecord"))
    assert len(examples(from_tfrecord(pattern))) == 10


def test_round_trip_captioning_compressed(tmp_path):
    source = shapes(num_examples=10, batch_size=4, task="captioning")
    to_tfrecord(source, str(tmp_path / "caps"), num_shards=3, compression="gzip")
    schema = json.loads((tmp_path / "caps.schema.json").read_text())
    assert list(schema["features"]) == ["image"] and schema["target"]["kind"] == "text"
    assert schema["compression"] == "GZIP" and schema["class_names"] is None
    ds = from_tfrecord(str(tmp_path / "caps-*"), batch_size=3, deterministic=False)
    assert ds.class_names is None and ds.element_spec[1].dtype == tf.string
    got, expected = examples(ds), examples(source)
    assert_same_examples(sorted(got, key=key), sorted(expected, key=key))


def test_shuffle_and_cache_keep_every_example(classified):
    source, _, pattern = classified
    expected = sorted(examples(source), key=key)
    for kwargs in ({"shuffle": True, "seed": 1}, {"shuffle": True, "seed": 1, "cache": True}):
        ds = from_tfrecord(pattern, batch_size=5, **kwargs)
        assert_same_examples(sorted(examples(ds), key=key), expected)


def test_input_context_shards_files_then_records(classified):
    source, _, pattern = classified
    everything = sorted(key(e) for e in examples(source))
    for pipelines in (2, 3, 4):  # 3 files: by file for 2 and 3 pipelines, by record for 4
        seen = []
        for pipeline_id in range(pipelines):
            context = tf.distribute.InputContext(pipelines, pipeline_id, pipelines)
            ds = from_tfrecord(pattern, batch_size=pipelines * 2, input_context=context, shuffle=True)
            for features, _ in ds:
                assert features["image"].shape[0] <= 2  # the per-replica batch size
            seen.append({key(e) for e in examples(ds)})
        assert sorted(k for s in seen for k in s) == everything  # disjoint and covering


def test_flipped_byte_raises_naming_the_shard(classified):
    _, paths, pattern = classified
    offset = record_spans(paths[1])[2][1]
    flip(paths[1], offset + 40)
    with pytest.raises(BadRecordError, match=r"train-00001-of-00003\.tfrecord record 2: corrupted record \(CRC"):
        from_tfrecord(pattern)


def test_skip_keeps_every_good_record(classified):
    source, paths, pattern = classified
    written = {i: e for i, e in enumerate(examples(source))}
    # Shard s holds examples s, s+3, ...: damage shard 0's record 1 (data bytes;
    # TensorFlow's reader would lose records 2 and 3 as well), shard 1's record 0
    # (its length, so the scan must find where record 1 starts), and cut the last
    # bytes of shard 2 (its record 2 is truncated).
    flip(paths[0], record_spans(paths[0])[1][1] + 100)
    flip(paths[1], 3)
    with open(paths[2], "r+b") as f:
        f.truncate(os.path.getsize(paths[2]) - 10)
    lost = {3, 1, 8}
    ds = from_tfrecord(pattern, batch_size=4, on_error="skip")
    sources = [s for s, _ in ds.skipped_records]
    assert sources == [f"{paths[0]} record 1", f"{paths[1]} record 0", f"{paths[2]} record 2"]
    reasons = [r for _, r in ds.skipped_records]
    assert "CRC mismatch" in reasons[0] and "length" in reasons[1] and "truncated" in reasons[2]
    got = examples(ds)
    assert len(got) == 10 - len(lost)
    expected = [e for i, e in written.items() if i not in lost]
    assert_same_examples(sorted(got, key=key), sorted(expected, key=key))


def test_damaged_compressed_shard_keeps_what_can_be_read(tmp_path):
    source = shapes(num_examples=6, batch_size=3)
    paths = to_tfrecord(source, str(tmp_path / "z"), num_shards=2, compression="ZLIB")
    flip(paths[1], os.path.getsize(paths[1]) // 2)
    with pytest.raises(BadRecordError, match=r"z-00001-of-00002\.tfrecord records 0 onwards"):
        from_tfrecord(str(tmp_path / "z-*"))
    ds = from_tfrecord(str(tmp_path / "z-*"), on_error="skip")
    assert len(examples(ds)) == 3 and len(ds.skipped_records) == 1


def bad_contents_shard(tmp_path):
    """A shard for the classification schema: good records mixed with unusable ones."""
    good = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        str(tmp_path / "train-00000-of-00003.tfrecord"))]

    def edited(change):
        example = tf.train.Example()
        example.CopyFrom(good[0])
        change(example.features.feature)
        return example.SerializeToString()

    png = good[0].features.feature["image"].bytes_list.value[0]
    garbled = png[:60] + bytes(40) + png[100:]  # intact header and trailer; the pixel data is broken
    small = tf.io.encode_png(tf.zeros((8, 8, 3), tf.uint8)).numpy()
    records = [
        good[0].SerializeToString(),
        edited(lambda f: f.pop("text")),
        edited(lambda f: f["image"].bytes_list.value.__setitem__(0, b"GIF89a not a png")),
        b"these bytes are no tf.train.Example",
        edited(lambda f: f["image"].bytes_list.value.__setitem__(0, small)),
        edited(lambda f: f["image"].bytes_list.value.__setitem__(0, garbled)),
        edited(lambda f: f["target"].CopyFrom(tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])))),
        good[1].SerializeToString(),
    ]
    path = str(tmp_path / "mixed.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path, [good[0], good[1]]


def test_records_with_bad_contents_are_bad_records(classified, tmp_path):
    path, _ = bad_contents_shard(tmp_path)
    schema = str(tmp_path / "train.schema.json")
    with pytest.raises(BadRecordError, match=r"mixed\.tfrecord record 1: feature 'text' missing"):
        from_tfrecord(path, schema=schema)
    ds = from_tfrecord(path, schema=schema, on_error="skip")
    reasons = dict(ds.skipped_records)
    assert sorted(reasons) == [f"{path} record {i}" for i in range(1, 7)]
    assert "not a PNG" in reasons[f"{path} record 2"]
    assert "not a tf.train.Example" in reasons[f"{path} record 3"]
    assert "size differs" in reasons[f"{path} record 4"]
    assert "fails to decode" in reasons[f"{path} record 5"]
    assert "not a tf.train.Example" in reasons[f"{path} record 6"]
    assert len(examples(ds)) == 2
    # Bad contents in a shard that is also damaged: both kinds are dropped.
    flip(path, record_spans_of_damaged(path)[-1][1] + 20)
    ds = from_tfrecord(path, schema=schema, on_error="skip")
    assert len(ds.skipped_records) == 7 and len(examples(ds)) == 1


def record_spans_of_damaged(path):
    with open(path, "rb") as f:
        return scan_records(f.read())[0]


def test_bad_arguments(tmp_path, classified):
    source, _, pattern = classified
    for num_shards in (0, "4", True, 1.5):
        with pytest.raises(ValueError, match="num_shards"):
            to_tfrecord(source, str(tmp_path / "x"), num_shards=num_shards)
    with pytest.raises(ValueError, match="compression"):
        to_tfrecord(source, str(tmp_path / "x"), compression="zip")
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        to_tfrecord([1, 2], str(tmp_path / "x"))
    with pytest.raises(ValueError, match="batched dataset of \\(features, targets\\)"):
        to_tfrecord(source.unbatch(), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="batched dataset"):
        to_tfrecord(tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="feature keys"):
        to_tfrecord(source.map(lambda f, t: ({"pixels": f["image"]}, t)), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="empty"):
        to_tfrecord(source.take(0), str(tmp_path / "empty"))
    assert not list(tmp_path.glob("empty*"))
    with pytest.raises(ValueError, match="no files match"):
        from_tfrecord(str(tmp_path / "nothing-*.tfrecord"))
    with pytest.raises(ValueError, match="on_error"):
        from_tfrecord(pattern, on_error="ignore")
    with pytest.raises(ValueError, match="batch_size"):
        from_tfrecord(pattern, batch_size=0)
    os.rename(tmp_path / "train.schema.json", tmp_path / "elsewhere.json")
    with pytest.raises(ValueError, match="schema sidecar .*train.schema.json not found"):
        from_tfrecord(pattern)
    (tmp_path / "broken.schema.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a kerasmm TFRecord schema"):
        from_tfrecord(pattern, schema=str(tmp_path / "broken.schema.json"))
    assert len(examples(from_tfrecord(pattern, schema=str(tmp_path / "elsewhere.json")))) == 10


def test_the_record_check_shows_progress_when_asked_or_large(classified, capsys, monkeypatch):
    _, _, pattern = classified
    from_tfrecord(pattern)  # "auto": 10 records by the schema, a quick check, no bar
    assert capsys.readouterr().out == ""
    from_tfrecord(pattern, verbose=1)
    out = capsys.readouterr().out
    assert "checking 3 shards before reading" in out and "10/10" in out
    monkeypatch.setattr(tfrecord, "PROGRESS_MIN_RECORDS", 10)
    from_tfrecord(pattern)
    assert "10/10" in capsys.readouterr().out
    from_tfrecord(pattern, verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="verbose must be one of"):
        from_tfrecord(pattern, verbose=2)


def test_crc32c_and_framing_agree_with_tensorflow(classified):
    _, paths, _ = classified
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0
    spans = np.arange(0, 200, 2)
    data = bytes(range(256)) * 2
    assert list(crc32c(data, spans, spans)) == [crc32c(data[s : 2 * s]) for s in spans]
    for path in paths:
        records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        with open(path, "rb") as f:
            raw = f.read()
        assert [raw[o : o + n] for _, o, n in scan_records(raw)[0]] == records


def test_pipeline_is_graph_only_and_checkpointable(classified):
    _, paths, pattern = classified
    flip(paths[0], record_spans(paths[0])[0][1] + 30)  # a damaged shard: the offset-reading path
    ds = from_tfrecord(pattern, batch_size=2, shuffle=True, seed=3, on_error="skip")
    assert b"PyFunc" not in ds._as_serialized_graph().numpy()
    iterator = iter(ds)
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    saved = checkpoint.save(os.path.join(os.path.dirname(paths[0]), "ckpt", "it"))
    after = [next(iterator)[1].numpy().tolist() for _ in range(2)]
    checkpoint.restore(saved)
    assert [next(iterator)[1].numpy().tolist() for _ in range(2)] == after
