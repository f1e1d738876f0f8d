"""Fuzz: damaged TFRecord shards and schema sidecars through `from_tfrecord`, damaged TFDS data files and
source images through `from_tfds` (`kerasmm_local_coco`), all with `on_error="skip"`.

The promise checked (`kerasmm.data.errors` and the readers' docstrings): building the dataset and iterating
all of it raises nothing; every good record is kept, with what it holds; every dropped record is listed on
`dataset.skipped_records` with a reason, named as the reader names it ("SHARD record N"; "SHARD" for a file
that cannot be read at all; "SHARD records N onwards" for the unreadable rest of a compressed shard); a
whole-file problem that leaves nothing usable (a schema sidecar gone or garbled) is a clear ValueError.

Which records are good (a fixed seed makes every run the same):
- A record whose bytes and CRCs are intact is good. Each record gets at most one mutation, and whether it
  was hit is decided by comparing its bytes with the written ones (zeroing bytes that were zero changes
  nothing).
- A record whose data was edited and its CRC fixed up is judged by TensorFlow: good when
  `tf.io.parse_single_example` reads it with the schema's features, its image is a whole PNG (signature,
  IEND trailer) that `tf.io.decode_png` decodes to the schema's size, and its label fits the int32 targets;
  it is then expected with what it now holds.
- Uncompressed shards are judged exactly, record by record. A TFRecord cannot say how many records a stretch
  of destroyed headers held, so (as the reader documents) a shard gets at most one mutation that destroys
  headers over several records (a cut, a zeroed stretch), and single destroyed headers never on neighbours.
- Compressed shards: TensorFlow cannot decompress past damaged bytes (it fails its whole input buffer,
  256 KiB), so the reader keeps the records TensorFlow can still read and reports the rest (its docstring).
  The test reads the shard with TensorFlow to find those, and checks each is a record as written (or a
  CRC-fixed edit, judged as above) and the rest is listed.
- TFDS: a source image is good when `check_image` accepts it and the pipeline decodes it; a prepared
  example is good when its image was good and its record in the data files is intact.
Examples are told apart by their text (or caption): every one is unique.
"""

import collections
import gzip
import io
import json
import os
import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from kerasmm import testing
from kerasmm.data import errors, image_header, image_ops
from kerasmm.data import tfds as ktfds
from kerasmm.data.tfrecord import from_tfrecord, to_tfrecord

SEED = 20260612
READ = dict(on_error="skip", batch_size=2)
WORDS = ("a", "red", "small", "shape", "café", "круг", "日本")
PNG_TRAILER = b"\x00\x00\x00\x00IEND\xaeB`\x82"


# --- TFRecord framing, independently of the reader ------------------------------------------------

def _crc_table():
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


CRC_TABLE = _crc_table()


def masked_crc(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8 & 0xFFFFFFFF


def frame(data):
    """`[(start, length)]` of the records of intact uncompressed TFRecord bytes (a record is 16 + length bytes)."""
    spans, position = [], 0
    while position < len(data):
        (length,) = struct.unpack_from("<Q", data, position)
        spans.append((position, length))
        position += 16 + length
    assert position == len(data)
    return spans


def edit_with_crc_fixed(rng, data, start, length):
    """One byte of the record's data replaced, and its data CRC recomputed (so only its contents can tell)."""
    data = bytearray(data)
    at = start + 12 + int(rng.integers(0, length))
    data[at] ^= int(rng.integers(1, 256))
    body = data[start + 12 : start + 12 + length]
    data[start + 12 + length : start + 16 + length] = struct.pack("<I", masked_crc(body))
    return data


def flip(rng, data, at):
    data[at] ^= int(rng.integers(1, 256))


# --- writing shards and judging records -------------------------------------------------------------

class Write:
    """One `to_tfrecord` write: `num` examples, `size` px images, round-robin over `num_shards` shards."""

    def __init__(self, rng, folder, name, num, num_shards, size, compression, captions):
        images = rng.integers(0, 256, (num, size, size, 3), np.uint8)
        images[::2] = rng.integers(0, 256, (num - num // 2, 1, 1, 3), np.uint8)  # flat colour deflates
        texts = [f"{name} {i} " + " ".join(rng.choice(WORDS, 2)) for i in range(num)]
        if captions:  # image -> caption
            source = tf.data.Dataset.from_tensor_slices(({"image": images}, texts))
            self.keys = ("image",)
        else:
            features = {"image": images, "text": texts}
            self.keys = ("image", "text")
            if compression is None:
                features["audio"] = rng.standard_normal((num, 8)).astype(np.float32)
                self.keys += ("audio",)
            source = tf.data.Dataset.from_tensor_slices((features, rng.integers(0, 5, num).astype(np.int32)))
        self.prefix = os.path.join(folder, name)
        self.paths = to_tfrecord(source.batch(2), self.prefix, num_shards=num_shards, compression=compression)
        self.compression, self.size, self.captions = compression, size, captions
        with open(self.prefix + ".schema.json") as f:
            self.schema = json.load(f)
        self.spec = {"image": tf.io.FixedLenFeature([], tf.string)}
        if "text" in self.keys:
            self.spec["text"] = tf.io.FixedLenFeature([], tf.string)
        if "audio" in self.keys:
            self.spec["audio"] = tf.io.FixedLenFeature([8], tf.float32)
        self.spec["target"] = tf.io.FixedLenFeature([], tf.string if captions else tf.int64)

    def raw(self, path):
        """The shard's uncompressed bytes."""
        with open(path, "rb") as f:
            data = f.read()
        if self.compression == "GZIP":
            return gzip.decompress(data)
        return zlib.decompress(data) if self.compression == "ZLIB" else data

    def compress(self, data):
        if self.compression == "GZIP":
            return gzip.compress(bytes(data))
        return zlib.compress(bytes(data)) if self.compression == "ZLIB" else bytes(data)

    def judge(self, record):
        """What a record holds, as the reader yields it, or None if it is no usable record of the schema."""
        try:
            parsed = tf.io.parse_single_example(record, self.spec)
            png = parsed["image"].numpy()
            pixels = tf.io.decode_png(png, channels=3).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, UnicodeDecodeError):
            return None  # (TensorFlow quotes a record that is no Example: not UTF-8, that is a UnicodeDecodeError)
        if not png.startswith(b"\x89PNG\r\n\x1a\n") or not png.endswith(PNG_TRAILER):
            return None
        if pixels.shape != (self.size, self.size, 3):
            return None
        target = parsed["target"].numpy()
        if not self.captions:
            if not -(2**31) <= int(target) < 2**31:
                return None
            target = int(target)
        key = [pixels.tobytes()] + [parsed[k].numpy().tobytes() if k == "audio" else parsed[k].numpy()
                                    for k in self.keys[1:]]
        return (*key, target)

    def examples(self, ds):
        """Counter of what the reader yields, keyed as `judge` keys a record."""
        got = collections.Counter()
        for features, targets in ds:
            assert features["image"].shape[1:] == (self.size, self.size, 3)
            columns = [features[k].numpy() for k in self.keys]
            for i, target in enumerate(targets.numpy()):
                key = [c[i].tobytes() if k in ("image", "audio") else c[i] for k, c in zip(self.keys, columns)]
                got[(*key, target if self.captions else int(target))] += 1
        return got


PLAIN_MODES = ("records", "truncate", "zero range", "garbage", "empty", "unreadable")
COMPRESSED_MODES = ("records", "truncate", "flip", "garbage", "empty")
RECORD_MUTATIONS = ("payload", "data crc", "length", "length crc", "edit, crc fixed")
HEADER_MUTATIONS = ("length", "length crc")
RECORD_PARTS = ("payload", "data crc") + HEADER_MUTATIONS  # the mutations that flip a byte


def flip_in_record(rng, data, start, length, kind):
    """Flip a byte in one part (`RECORD_PARTS`) of the record at `start` whose payload is `length` bytes."""
    offset, size = {"payload": (12, length), "data crc": (12 + length, 4), "length": (0, 8), "length crc": (8, 4)}[kind]
    flip(rng, data, start + offset + int(rng.integers(0, size)))


def mutate_plain_shard(rng, write, path, mode, mix):
    """Damage an uncompressed shard; returns `(expected Counter, bad sources)`."""
    original = write.raw(path)
    spans = frame(original)
    data = bytearray(original)
    edited = {}  # record number -> its bytes after a CRC-fixed edit
    # Record-level mutations on about half the records; a destroyed header never next to another one,
    # and not beside a mutation that destroys several (a cut, a zeroed stretch).
    last_header = -2
    for n, (start, length) in enumerate(spans):
        if rng.random() > 0.5:
            continue
        header_ok = mode in ("records", "garbage") and n > last_header + 1 and not (
            mode == "garbage" and n == len(spans) - 1)
        if header_ok and rng.random() < 0.5:
            kind = str(rng.choice(HEADER_MUTATIONS))
        else:
            kind = str(rng.choice([k for k in RECORD_MUTATIONS if k not in HEADER_MUTATIONS]))
        mix[f"record: {kind}"] += 1
        if kind in RECORD_PARTS:
            flip_in_record(rng, data, start, length, kind)
            if kind in HEADER_MUTATIONS:
                last_header = n
        else:
            data = edit_with_crc_fixed(rng, data, start, length)
            edited[n] = bytes(data[start + 12 : start + 12 + length])
    mix[f"shard: {mode}"] += 1
    bad = set()
    if mode == "truncate":
        boundaries = [start for start, _ in spans[1:]]
        cut = int(rng.choice(boundaries)) if rng.random() < 0.4 else int(rng.integers(1, len(data)))
        data = data[:cut]
    elif mode == "zero range":
        a = int(rng.integers(0, len(data) - 20))
        b = min(len(data), a + int(rng.integers(20, 3 * (16 + spans[0][1]))))
        data[a:b] = bytes(b - a)
    elif mode == "garbage":
        garbage = rng.integers(0, 256, int(rng.integers(12, 80)), np.uint8).tobytes()
        bad.add(f"{path} bytes {len(data)}-{len(data) + len(garbage) - 1}")
        data += garbage
    elif mode == "empty":
        data = b""
    if mode == "unreadable":  # a dangling symlink: the file cannot be opened at all
        os.remove(path)
        os.symlink(path + ".gone", path)
        return collections.Counter(), {path}
    with open(path, "wb") as f:
        f.write(data)
    expected = collections.Counter()
    for n, (start, length) in enumerate(spans):
        end = start + 16 + length
        intact = end <= len(data) and data[start:end] == original[start:end]
        if intact:
            expected[write.judge(original[start + 12 : start + 12 + length])] += 1
            continue
        content = None
        if n in edited and end <= len(data) and data[start:end] == _with(original, start, edited[n]):
            content = write.judge(edited[n])
        if content is None:
            bad.add(f"{path} record {n}")
        else:
            expected[content] += 1
    return expected, bad


def _with(original, start, body):
    """The record at `start` of `original` with data `body` and its CRC fixed: what a CRC-fixed edit leaves."""
    return original[start : start + 12] + body + struct.pack("<I", masked_crc(body))


def mutate_compressed_shard(rng, write, path, mode, mix):
    """Damage a GZIP or ZLIB shard; returns `(expected Counter, bad sources)` (see the module docstring)."""
    original = write.raw(path)
    spans = frame(original)
    with open(path, "rb") as f:
        compressed = bytearray(f.read())
    mix[f"shard: {write.compression} {mode}"] += 1
    edited = {}
    if mode == "records":  # decompress, damage records, compress again
        data = bytearray(original)
        for n, (start, length) in enumerate(spans):
            if rng.random() > 0.3:
                continue
            kind = str(rng.choice(["payload", "data crc", "length", "edit, crc fixed"]))
            mix[f"record: {kind} ({write.compression})"] += 1
            if kind == "payload":
                flip(rng, data, start + 12 + int(rng.integers(0, length)))
            elif kind == "data crc":
                flip(rng, data, start + 12 + length + int(rng.integers(0, 4)))
            elif kind == "length":
                flip(rng, data, start + int(rng.integers(0, 8)))
            else:
                data = edit_with_crc_fixed(rng, data, start, length)
                edited[n] = bytes(data[start + 12 : start + 12 + length])
        compressed = write.compress(data)
    elif mode == "truncate":
        compressed = compressed[: int(rng.integers(0, len(compressed)))]
    elif mode == "flip":
        flip(rng, compressed, int(rng.integers(0, len(compressed))))
    elif mode == "garbage":
        compressed += rng.integers(0, 256, int(rng.integers(1, 80)), np.uint8).tobytes()
    elif mode == "empty":
        compressed = b""
    with open(path, "wb") as f:
        f.write(compressed)
    # What TensorFlow still reads: records up to the first error.
    readable, failed = [], False
    try:
        for record in tf.data.TFRecordDataset(path, write.compression):
            readable.append(record.numpy())
    except tf.errors.DataLossError:
        failed = True
    expected, bad = collections.Counter(), set()
    for n, record in enumerate(readable):
        start, length = spans[n]
        assert record == original[start + 12 : start + 12 + length] or record == edited.get(n), (
            "TensorFlow read a record that is neither as written nor a CRC-fixed edit")
        content = write.judge(record)
        if content is None:
            bad.add(f"{path} record {n}")
        else:
            expected[content] += 1
    if len(readable) < len(spans):
        bad.add(f"{path} records {len(readable)} onwards")
    elif failed:
        bad.add(f"{path} trailing data")
    return expected, bad


def listed(ds):
    """The sources `ds.skipped_records` lists, "X records 3-5" spelled out as "X record 3", ... (and reasons)."""
    skipped = list(ds.skipped_records)
    assert all(isinstance(reason, str) and reason.strip() for _, reason in skipped), skipped
    sources = []
    for source, _ in skipped:
        match = re.fullmatch(r"(.*) records (\d+)-(\d+)", source)
        if match:
            sources += [f"{match[1]} record {n}" for n in range(int(match[2]), int(match[3]) + 1)]
        else:
            sources.append(source)
    return sources


def check(ds, write, expected, bad):
    """No crash iterating all of `ds`; exactly the good records kept; exactly the bad ones listed, with reasons."""
    sources = listed(ds)
    assert len(sources) == len(set(sources)), "a record listed twice"
    assert set(sources) == bad, (f"listed but good: {sorted(set(sources) - bad)}; "
                                 f"bad but not listed: {sorted(bad - set(sources))}")
    got = write.examples(ds)
    assert got == expected, f"missing: {len(expected - got)} examples; unexpected: {len(got - expected)}"


def test_from_tfrecord_fuzz(tmp_path):
    rng = np.random.default_rng(SEED)
    mix = collections.Counter()
    writes = [
        Write(rng, str(tmp_path), "plain", 48, 6, 12, None, captions=False),
        Write(rng, str(tmp_path), "gz", 24, 4, 10, "GZIP", captions=True),
        Write(rng, str(tmp_path), "zl", 24, 4, 16, "ZLIB", captions=False),
    ]
    # Every mode once (one shard each), and one intact shard in each compressed write: a small
    # compressed shard with damaged bytes loses all its records.
    modes = {"plain": [PLAIN_MODES[i] for i in rng.permutation(len(PLAIN_MODES))]}
    pool = [COMPRESSED_MODES[i] for i in rng.permutation(len(COMPRESSED_MODES))] + ["intact"]
    for name in ("gz", "zl"):
        modes[name] = [pool.pop() for _ in range(3)] + ["intact"]
        modes[name] = [modes[name][i] for i in rng.permutation(4)]
    for write in writes:
        expected, bad = collections.Counter(), set()
        for path, mode in zip(write.paths, modes[os.path.basename(write.prefix)]):
            if write.compression is None:
                shard_expected, shard_bad = mutate_plain_shard(rng, write, path, mode, mix)
            else:
                shard_expected, shard_bad = mutate_compressed_shard(rng, write, path, mode, mix)
            expected += shard_expected
            bad |= shard_bad
        ds = from_tfrecord(write.prefix + "-*.tfrecord", **READ)
        check(ds, write, expected, bad)
    assert {f"record: {k}" for k in RECORD_MUTATIONS} <= set(mix), mix
    assert {f"shard: {m}" for m in PLAIN_MODES} <= set(mix), mix
    assert set(COMPRESSED_MODES) <= {key.split()[-1] for key in mix if key.startswith(("shard: GZIP", "shard: ZLIB"))}


# --- the schema sidecar --------------------------------------------------------------------------------

def mutate_json(rng, text):
    """`(kind, bytes)`: the sidecar cut short, a byte replaced, a value of the wrong type, or not UTF-8."""
    kind = str(rng.choice(["truncate", "byte", "value", "not UTF-8"]))
    if kind == "truncate":
        return kind, text[: int(rng.integers(0, len(text)))]
    if kind == "byte":
        data, at = bytearray(text), int(rng.integers(0, len(text)))
        data[at] = int(rng.choice([b for b in range(32, 127) if b != data[at]]))
        return kind, bytes(data)
    if kind == "not UTF-8":
        at = int(rng.integers(0, len(text)))
        return kind, text[:at] + b"\xff" + text[at:]
    schema = json.loads(text)
    paths = [[k] for k in schema] + [["features", k] for k in schema["features"]]
    paths += [["features", k, f] for k, spec in schema["features"].items() for f in spec]
    paths += [["target", "kind"], ["features", "image", "shape", int(rng.integers(0, 3))]]
    path = paths[int(rng.integers(0, len(paths)))]
    values = [None, 0, -1, 2**40, 1.5, True, "x", "label", [], [1, "a"], {}, {"a": 1}]
    node = schema
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = values[int(rng.integers(0, len(values)))]
    return kind, json.dumps(schema).encode()


def test_schema_sidecar_fuzz(tmp_path):
    # A damaged sidecar is a clear ValueError naming it (or "no usable records" when it now describes
    # records that are not there); one still readable reads: no other exception, whole epoch.
    rng = np.random.default_rng([SEED, 1])
    write = Write(rng, str(tmp_path), "s", 6, 2, 8, None, captions=False)
    sidecar = write.prefix + ".schema.json"
    with open(sidecar, "rb") as f:
        text = f.read()
    originals = {key[0] for key in write.examples(from_tfrecord(write.prefix + "-*", **READ))}
    outcomes = collections.Counter()
    for _ in range(24):
        kind, data = mutate_json(rng, text)
        with open(sidecar, "wb") as f:
            f.write(data)
        try:
            ds = from_tfrecord(write.prefix + "-*.tfrecord", **READ)
        except ValueError as error:
            assert sidecar in str(error) or "no usable records" in str(error), error
            outcomes[f"{kind}: ValueError"] += 1
            continue
        images = [image.tobytes() for features, _ in ds for image in features["image"].numpy()]
        assert set(images) <= originals
        assert ds.class_names is None or all(isinstance(c, str) for c in ds.class_names)
        if not len(ds.skipped_records):
            assert len(images) == 6
        outcomes[f"{kind}: read"] += 1
    os.remove(sidecar)
    with pytest.raises(ValueError, match="schema sidecar .*s.schema.json not found"):
        from_tfrecord(write.prefix + "-*.tfrecord", **READ)
    assert sum(v for k, v in outcomes.items() if k.endswith("ValueError")) >= 8, outcomes
    assert any(k.endswith(": read") for k in outcomes), outcomes


# --- regressions: what the fuzz found in from_tfrecord ------------------------------------------------

def small_write(tmp_path, num=8, num_shards=2, compression=None, labels=None):
    images = np.random.default_rng(0).integers(0, 256, (num, 8, 8, 3), np.uint8)
    targets = np.arange(num, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
    source = tf.data.Dataset.from_tensor_slices(({"image": images, "text": [f"t{i}" for i in range(num)]}, targets))
    return to_tfrecord(source.batch(2), str(tmp_path / "w"), num_shards=num_shards, compression=compression)


def labels_of(ds):
    return sorted(int(y) for _, targets in ds for y in targets.numpy())


SHAPE = "'image' needs a 'shape' [height, width, 3] of positive integers"
SCHEMA_EDITS = [
    (lambda s: s["features"].__setitem__("image", 5), "feature 'image' needs a spec"),
    (lambda s: s["features"].__setitem__("image", None), "feature 'image' needs a spec"),
    (lambda s: s.__setitem__("target", "label"), "'target' needs a 'kind'"),
    (lambda s: s["features"]["image"].__setitem__("shape", [8, "a", 3]), SHAPE),
    (lambda s: s["features"]["image"].__setitem__("shape", [8.0, 8, 3]), SHAPE),
    (lambda s: s["features"]["image"].__setitem__("shape", [0, 8, 3]), SHAPE),
    (lambda s: s.__setitem__("class_names", "abc"), "'class_names' must be null or a list of strings"),
    (lambda s: s.__setitem__("num_examples", "8"), "'num_examples' must be a count"),
]


def test_schema_of_the_wrong_shape_or_not_utf8_is_a_clear_error(tmp_path):
    # These crashed with AttributeError or TypeError (from inside a tf.function), or were taken as they
    # were (an image feature of None dropped the images; class_names "abc" became ds.class_names); a
    # sidecar that is not UTF-8 gave a bare UnicodeDecodeError message without the file's name.
    small_write(tmp_path)
    sidecar = tmp_path / "w.schema.json"
    text = sidecar.read_text()
    for edit, message in SCHEMA_EDITS:
        schema = json.loads(text)
        edit(schema)
        sidecar.write_text(json.dumps(schema))
        problem = r"w\.schema\.json is not a kerasmm TFRecord schema: " + re.escape(message)
        with pytest.raises(ValueError, match=problem):
            from_tfrecord(str(tmp_path / "w-*.tfrecord"), on_error="skip")
    sidecar.write_bytes(text.encode().replace(b'"png"', b'"p\xffg"'))
    with pytest.raises(ValueError, match=r"w\.schema\.json is not valid JSON: not UTF-8"):
        from_tfrecord(str(tmp_path / "w-*.tfrecord"), on_error="skip")


def test_shard_cut_at_a_record_boundary_or_emptied_lists_the_lost_records(tmp_path):
    # TensorFlow's reader sees no error in a shard cut at a record boundary (or in its first 12 bytes,
    # or emptied): its records were lost without a word. The schema counts them.
    paths = small_write(tmp_path / "plain", num=9, num_shards=2)  # 5 + 4 records
    with open(paths[0], "rb") as f:
        data = f.read()
    cut = sum(16 + length for _, length in frame(data)[:3])  # records 3 and 4 go...
    with open(paths[0], "wb") as f:
        f.write(data[:cut] + data[cut : cut + 5])  # ...but 5 bytes of record 3's header stay
    open(paths[1], "wb").close()
    ds = from_tfrecord(paths, **READ)
    assert labels_of(ds) == [0, 2, 4]
    skipped = dict(ds.skipped_records)
    assert "truncated record header" in skipped.pop(f"{paths[0]} record 3")
    assert "missing: the file ends after 4 of its 5 records" in skipped.pop(f"{paths[0]} record 4")
    assert list(skipped) == [f"{paths[1]} records 0-3"]
    for compression in ("GZIP", "ZLIB"):  # every shard emptied: nothing left
        paths = small_write(tmp_path / compression, num=9, num_shards=2, compression=compression)
        for path in paths:
            open(path, "wb").close()
        with pytest.raises(ValueError, match=r"no usable records .*records 0 onwards \(missing: the "
                                             f"{compression} shard ends after 0 records, its schema counts 5"):
            from_tfrecord(paths, **READ)


def test_unreadable_shard_is_listed_not_a_crash(tmp_path):
    # A shard that cannot be opened raised NotFoundError out of the reader in skip mode.
    paths = small_write(tmp_path)
    os.remove(paths[1])
    os.symlink(str(tmp_path / "elsewhere"), paths[1])
    ds = from_tfrecord(str(tmp_path / "w-*.tfrecord"), **READ)
    assert labels_of(ds) == [0, 2, 4, 6]
    [(source, reason)] = list(ds.skipped_records)
    assert source == paths[1] and "cannot be read" in reason and "its 4 records are lost" in reason
    with pytest.raises(errors.BadRecordError, match="w-00001-of-00002.tfrecord: the shard cannot be read"):
        from_tfrecord(str(tmp_path / "w-*.tfrecord"))


def test_records_in_one_unreadable_stretch_are_each_listed_and_later_numbers_stay_right(tmp_path):
    # Zeroed bytes over the headers of records 1-3 were listed as one "record 1", and the records after
    # them were numbered 2, 3, ... instead of 4, 5, ...
    paths = small_write(tmp_path, num=14, num_shards=1)
    with open(paths[0], "rb") as f:
        data = bytearray(f.read())
    spans = frame(bytes(data))
    data[spans[1][0] : spans[3][0] + 20] = bytes(spans[3][0] + 20 - spans[1][0])
    data[spans[6][0] + 30] ^= 0xFF  # record 6: a damaged payload
    with open(paths[0], "wb") as f:
        f.write(data)
    ds = from_tfrecord(paths[0], **READ)
    assert labels_of(ds) == [0, 4, 5] + list(range(7, 14))
    assert [source for source, _ in ds.skipped_records] == [f"{paths[0]} records 1-3", f"{paths[0]} record 6"]
    assert "they held 3 records" in dict(ds.skipped_records)[f"{paths[0]} records 1-3"]


def test_damaged_record_after_a_damaged_length_is_its_own_record(tmp_path):
    # Resynchronising after record 2's damaged length wanted a record whose data CRC matches too, so it
    # skipped record 3 (damaged data) as well: both were "record 2", and record 5 was named "record 4".
    paths = small_write(tmp_path, num=7, num_shards=1)
    with open(paths[0], "rb") as f:
        data = bytearray(f.read())
    spans = frame(bytes(data))
    data[spans[2][0] + 1] ^= 0xFF
    data[spans[3][0] + 40] ^= 0xFF
    data[spans[5][0] + 40] ^= 0xFF
    with open(paths[0], "wb") as f:
        f.write(data)
    ds = from_tfrecord(paths[0], **READ)
    assert labels_of(ds) == [0, 1, 4, 6]
    skipped = dict(ds.skipped_records)
    assert list(skipped) == [f"{paths[0]} record {n}" for n in (2, 3, 5)]
    assert "length" in skipped[f"{paths[0]} record 2"] and "CRC" in skipped[f"{paths[0]} record 3"]


def test_garbage_after_the_last_record_is_no_record(tmp_path):
    # Bytes appended to a shard were listed as a record that never was ("record 4").
    paths = small_write(tmp_path)
    size = os.path.getsize(paths[0])
    with open(paths[0], "ab") as f:
        f.write(b"not a record at all")
    ds = from_tfrecord(str(tmp_path / "w-*.tfrecord"), **READ)
    assert labels_of(ds) == list(range(8))
    [(source, reason)] = list(ds.skipped_records)
    assert source == f"{paths[0]} bytes {size}-{size + 18}" and "no record lost" in reason


def test_record_that_is_no_example_and_not_utf8_is_a_bad_record(tmp_path):
    # TensorFlow quotes such a record in its parse error, and a message that is not UTF-8 turns into a
    # UnicodeDecodeError instead of InvalidArgumentError: it escaped the reader in skip mode.
    paths = small_write(tmp_path, num=2, num_shards=1)
    records = [r.numpy() for r in tf.data.TFRecordDataset(paths[0])]
    with tf.io.TFRecordWriter(paths[0]) as writer:
        for record in (records[0], b"\xc1\xff\xfe no Example \xc1" * 3, records[1]):
            writer.write(record)
    ds = from_tfrecord(paths[0], **READ)
    assert labels_of(ds) == [0, 1]
    reason = "not a tf.train.Example with the schema's feature types"
    assert dict(ds.skipped_records) == {f"{paths[0]} record 1": reason}


def test_to_tfrecord_writes_the_same_bytes_every_time(tmp_path):
    # The feature map was serialized in the protobuf runtime's hash order, which changes from process to
    # process: the same data gave different shard bytes (and a fixed-seed fuzz different outcomes).
    images = np.zeros((2, 8, 8, 3), np.uint8)
    for n, features in enumerate([{"image": images}, {"image": images, "text": ["a", "b"]},
                                  {"text": ["a", "b"], "audio": np.zeros((2, 3), np.float32)},
                                  {"image": images, "text": ["a", "b"], "audio": np.zeros((2, 3), np.float32)}]):
        [path] = to_tfrecord(tf.data.Dataset.from_tensor_slices((features, [3, 4])).batch(2), str(tmp_path / f"d{n}"),
                             num_shards=1)
        for record in tf.data.TFRecordDataset(path):
            record = record.numpy()
            assert tf.train.Example.FromString(record).SerializeToString(deterministic=True) == record


def test_label_outside_int32_is_a_bad_record(tmp_path):
    # An int64 label the int32 targets cannot hold wrapped silently (2**32 + 1 became 1).
    paths = small_write(tmp_path, num=4, num_shards=1, labels=[0, 2**32 + 1, -(2**31) - 1, 3])
    ds = from_tfrecord(paths[0], **READ)
    assert labels_of(ds) == [0, 3]
    assert dict(ds.skipped_records) == {f"{paths[0]} record {n}": "label outside the int32 range of the targets"
                                        for n in (1, 2)}


# --- from_tfds ---------------------------------------------------------------------------------------------

@pytest.fixture
def offline(tmp_path):
    """Any network access, GCS lookup or TFDS download fails the test."""

    with testing.offline_tfds(tmp_path / "tfds_default"):
        yield


def encode(rng, fmt):
    height, width = (int(v) for v in rng.integers(8, 17, 2))
    pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def mutate_image(rng, data, how):
    data = bytearray(data)
    if how == "truncate":
        return bytes(data[: int(rng.integers(1, len(data)))])
    if how == "flip":  # anywhere: in the header, the image data or the trailer
        flip(rng, data, int(rng.integers(0, len(data))))
        return bytes(data)
    return bytes(data) + rng.integers(0, 256, int(rng.integers(1, 40)), np.uint8).tobytes()  # garbage after


def pipeline_loads(path):
    """Whether an image file is good: the header check accepts it and the pipeline decodes it."""
    if image_header.check_image(path) is not None:
        return False
    try:
        image_ops.load_image(tf.io.read_file(path), (8, 8))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False
    return True


def write_manual_dir(rng, root, num, mix):
    """A COCO captions folder of `num` images (9 of them mutated); returns their captions and the good ids."""
    os.makedirs(os.path.join(root, "train"))
    os.makedirs(os.path.join(root, "annotations"))
    images, annotations, captions, good = [], [], {}, set()
    kinds = ["truncate", "flip", "garbage"] * 3 + ["intact"] * (num - 9)  # 9 of them mutated, 3 ways each
    kinds = [kinds[i] for i in rng.permutation(num)]
    for i in range(num):
        fmt, ext = ("JPEG", "jpg") if rng.random() < 0.3 else ("PNG", "png")
        data = encode(rng, fmt)
        how = kinds[i]
        mix[f"source image: {how}"] += 1
        path = os.path.join(root, "train", f"{i:03d}.{ext}")
        with open(path, "wb") as f:
            f.write(data if how == "intact" else mutate_image(rng, data, how))
        if pipeline_loads(path):
            good.add(i)
        images.append({"id": i, "file_name": f"{i:03d}.{ext}"})
        captions[i] = [f"caption {i} " + " ".join(rng.choice(WORDS, 2)) for _ in range(int(rng.integers(1, 3)))]
        annotations += [{"id": len(annotations), "image_id": i, "caption": c} for c in captions[i]]
    with open(os.path.join(root, "annotations", "captions_train.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations}, f)
    return captions, good


TFDS_MODES = ("records", "truncate", "garbage", "deleted")


def mutate_tfds_file(rng, path, mode, mix):
    """Damage one prepared data file; returns (numbers of its intact records, bad sources)."""
    with open(path, "rb") as f:
        original = f.read()
    spans = frame(original)
    data = bytearray(original)
    mix[f"tfds file: {mode}"] += 1
    if mode == "deleted":
        os.remove(path)
        return set(), {path}
    last_header = -2
    for n, (start, length) in enumerate(spans):
        if rng.random() > 0.35:
            continue
        header_ok = mode == "records" and n > last_header + 1
        kind = str(rng.choice(["payload", "data crc"] + (["length", "length crc"] if header_ok else [])))
        mix[f"tfds record: {kind}"] += 1
        flip_in_record(rng, data, start, length, kind)
        if kind == "length":
            last_header = n
            last_header = n
    bad = set()
    if mode == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif mode == "garbage":
        garbage = rng.integers(0, 256, int(rng.integers(12, 60)), np.uint8).tobytes()
        bad.add(f"{path} bytes {len(data)}-{len(data) + len(garbage) - 1}")
        data += garbage
    with open(path, "wb") as f:
        f.write(data)
    kept = set()
    for n, (start, length) in enumerate(spans):
        end = start + 16 + length
        if end <= len(data) and data[start:end] == original[start:end]:
            kept.add(n)
        else:
            bad.add(f"{path} record {n}")
    return kept, bad


def test_from_tfds_fuzz(tmp_path, offline):
    rng = np.random.default_rng([SEED, 2])
    mix = collections.Counter()
    manual, data_dir = str(tmp_path / "manual"), str(tmp_path / "tfds")
    captions, good_images = write_manual_dir(rng, manual, 32, mix)
    json_path = os.path.join(manual, "annotations", "captions_train.json")
    config = tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False, num_shards=4)
    builder = ktfds.LocalCocoCaptions(data_dir=data_dir, on_error="skip")
    builder.download_and_prepare(download_config=config)
    prepared_skips = {f"{json_path}: image {i}" for i in range(32) if i not in good_images}
    assert {source for source, _ in builder.info.metadata["skipped_records"]} == prepared_skips

    # Which image each record of each data file holds, before the damage.
    instructions = builder.info.splits["train"].file_instructions
    spec = {"image_id": tf.io.FixedLenFeature([], tf.int64)}
    holds = {}
    for instruction in instructions:
        records = tf.data.TFRecordDataset(instruction.filename)
        holds[instruction.filename] = [int(tf.io.parse_single_example(r, spec)["image_id"]) for r in records]
    assert sorted(i for ids in holds.values() for i in ids) == sorted(good_images)
    modes = [TFDS_MODES[i] for i in rng.permutation(len(TFDS_MODES))]
    kept, bad = {}, set(prepared_skips)
    for path, mode in zip(holds, modes):
        kept[path], file_bad = mutate_tfds_file(rng, path, mode, mix)
        bad |= file_bad

    def expected_captions(ranges):
        return collections.Counter(c for path, numbers in ranges.items() for n in numbers if n in kept[path]
                                   for c in captions[holds[path][n]])

    def read(**kwargs):
        ds = ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, target="text", captions="all",
                             image_size=8, **READ, **kwargs)
        got = collections.Counter()
        for features, texts in ds:
            assert features["image"].shape[1:] == (8, 8, 3)
            got.update(t.decode() for t in texts.numpy())
        return ds, got

    ds, got = read()
    sources = listed(ds)
    assert set(sources) == bad and len(sources) == len(bad)
    assert got == expected_captions({path: range(len(ids)) for path, ids in holds.items()})

    # A slice of the split (TFDS's own file instructions say which records of each file it holds), shuffled:
    # only the slice's bad records are listed (and whole-file problems of its files).
    ds, got = read(split="train[25%:]", shuffle=True, seed=1)
    ranges = {i.filename: range(i.skip, i.skip + i.take) for i in builder.info.splits["train[25%:]"].file_instructions}
    assert got == expected_captions(ranges)

    def in_slice(source):
        path, _, rest = source.partition(" ")
        if rest.startswith("record "):
            return path in ranges and int(rest.split()[1]) in ranges[path]
        return path in ranges

    assert set(listed(ds)) - prepared_skips == {s for s in bad - prepared_skips if in_slice(s)}
    assert {f"tfds file: {m}" for m in TFDS_MODES} <= set(mix), mix
    assert {"source image: intact", "source image: truncate", "source image: flip"} <= set(mix), mix


# --- regressions: what the fuzz found in from_tfds and the kerasmm_local_coco builder ----------------------

def tiny_coco(root, num=6, damaged=()):
    """A manual dir of `num` PNGs; those in `damaged` have image data broken past the header."""
    os.makedirs(os.path.join(root, "train"))
    os.makedirs(os.path.join(root, "annotations"))
    rng = np.random.default_rng(3)
    for i in range(num):
        data = bytearray(encode(rng, "PNG"))
        if i in damaged:  # a byte of the zlib data inside IDAT, with the chunk CRC fixed
            idat = data.find(b"IDAT")
            (length,) = struct.unpack(">I", data[idat - 4 : idat])
            data[idat + 4 + length // 2] ^= 0x55
            data[idat + 4 + length : idat + 8 + length] = struct.pack(">I", zlib.crc32(data[idat : idat + 4 + length]))
        with open(os.path.join(root, "train", f"{i}.png"), "wb") as f:
            f.write(data)
    coco = {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(num)],
            "annotations": [{"id": i, "image_id": i, "caption": f"caption {i}"} for i in range(num)]}
    with open(os.path.join(root, "annotations", "captions_train.json"), "w") as f:
        json.dump(coco, f)


def read_captions(ds):
    return sorted(t.decode() for _, texts in ds for t in texts.numpy())


def test_from_tfds_skip_mode_lists_damaged_data_files_instead_of_failing_mid_epoch(tmp_path, offline):
    # Skip mode only covered preparing: a damaged data file failed the epoch with DataLossError, a cut
    # one with "expected to contain 6 elements but contained only 4", a deleted one with NotFoundError.
    tiny_coco(str(tmp_path / "manual"))
    data_dir = str(tmp_path / "tfds")
    config = tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"), try_download_gcs=False, num_shards=2)
    builder = ktfds.LocalCocoCaptions(data_dir=data_dir)
    builder.download_and_prepare(download_config=config)
    files = [i.filename for i in builder.info.splits["train"].file_instructions]
    with open(files[0], "rb") as f:
        data = bytearray(f.read())
    spans = frame(bytes(data))
    data[spans[1][0] + 40] ^= 0xFF
    with open(files[0], "wb") as f:
        f.write(data)
    with open(files[1], "r+b") as f:
        f.truncate(frame(f.read())[1][0])  # cut at a record boundary: TensorFlow's reader sees no error

    def read(**kwargs):
        return ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, image_size=8, batch_size=2, **kwargs)

    ds = read(on_error="skip")
    assert len(read_captions(ds)) == 6 - 1 - 2
    assert [source for source, _ in ds.skipped_records] == [f"{files[0]} record 1", f"{files[1]} records 1-2"]
    with pytest.raises(tf.errors.DataLossError):  # raise mode: TensorFlow's own error, as documented
        read_captions(read())
    os.remove(files[0])
    ds = read(on_error="skip")
    assert len(read_captions(ds)) == 1
    assert [source for source, _ in ds.skipped_records][0] == files[0]


def test_local_coco_drops_images_damaged_past_the_header_when_preparing(tmp_path, offline):
    # The builder checked only the header (check_image), so an image with broken data was prepared, and
    # from_tfds then failed mid-epoch with InvalidArgumentError even in skip mode.
    tiny_coco(str(tmp_path / "manual"), damaged=(2,))
    path = str(tmp_path / "manual" / "train" / "2.png")
    assert image_header.check_image(path) is None and not pipeline_loads(path)
    ds = ktfds.from_tfds("kerasmm_local_coco", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "manual"),
                         image_size=8, batch_size=2, on_error="skip")
    assert read_captions(ds) == [f"caption {i}" for i in (0, 1, 3, 4, 5)]
    [(source, reason)] = list(ds.skipped_records)
    assert source.endswith("captions_train.json: image 2") and "cannot be decoded" in reason
    with pytest.raises(errors.BadRecordError, match="image 2"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=str(tmp_path / "tfds2"), manual_dir=str(tmp_path / "manual"))


def test_damaged_dataset_info_is_a_clear_error(tmp_path, offline):
    # A cut or non-UTF-8 dataset_info.json raised protobuf's ParseError or a RuntimeError.
    tiny_coco(str(tmp_path / "manual"))
    data_dir = str(tmp_path / "tfds")
    ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, manual_dir=str(tmp_path / "manual"))
    info = os.path.join(data_dir, "kerasmm_local_coco", "captions", "1.0.0", "dataset_info.json")
    with open(info, "rb") as f:
        text = f.read()
    for damaged in (text[: len(text) // 2], b"", text.replace(b'"', b"\xff", 1)):
        with open(info, "wb") as f:
            f.write(damaged)
        with pytest.raises(ValueError, match="from_tfds: cannot load 'kerasmm_local_coco'"):
            ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, on_error="skip")
