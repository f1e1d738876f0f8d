"""Fuzz: mutated images, caption files, manifests and COCO files through every reader in skip mode.

The promise checked, for `from_folder`, `from_manifest` (CSV and JSONL) and `from_coco` under
`on_error="skip"`: building the dataset and iterating all of it raises nothing, every good record
is kept (with what it says), and every other record is listed on `dataset.skipped_records` with
a reason, so that kept + skipped accounts for every record.

How the test knows which records are good (a fixed seed makes it the same every run):
- Each record gets at most one mutation (of its image file, its caption file or its own line);
  file-wide ones (a byte-order mark, CRLF or mixed line endings, blank lines) change no record.
- An image is good when `image_header.check_image` accepts it AND TensorFlow decodes it
  (`tf.io.decode_image(data, channels=3, expand_animations=False)`): a mutation can leave an image
  valid (a flipped byte in a JPEG table's unused part, a PNG header edit with its CRC fixed up,
  bytes appended after a PNG's IEND). One the check refuses is expected dropped even if
  TensorFlow would decode it; one the check accepts that TensorFlow cannot decode is expected
  dropped by the reader's decoding pass in skip mode (a crash mid-epoch fails the test).
- A manifest line hit by a mutation whose effect depends on where it lands (a byte replaced by a
  random one, a CSV line cut short) is judged by its format: it is good when it is UTF-8, parses
  (stdlib `json`/`csv`) to exactly the record's fields, names the record's own image, and has a
  non-empty caption and label; the record is then expected with the caption and label the line
  now gives. Image file names carry their index twice (`img_017_017.png`), so one changed byte
  cannot turn into another record's image (and no label conflict can arise).
- Every other mutation has a fixed outcome, noted where it is made.
Examples are told apart by (caption, label name): every caption is unique.
"""

import collections
import csv
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasmm.data import from_coco, from_folder, from_manifest, image_header, image_ops, pipeline

SEED = 20260611
LABELS = ("circle", "square", "triangle", "círculo")  # a non-ASCII name: a flipped byte can split it
WORDS = ("a", "red", "blue", "small", "large", "shape", "on", "grey", "café", "круг", "日本", "two, three")
FORMATS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP"}
BOM = b"\xef\xbb\xbf"
IMAGE_MUTATIONS = ("truncate", "flip", "header", "garbage")
NOT_UTF8 = (b"\xff", b"\xe9", b"\xc3(", b"\x80", b"\xed\xa0\x80")  # lone bytes, a bad sequence, a surrogate
READ = dict(on_error="skip", batch_size=2, image_size=8)


# --- images ----------------------------------------------------------------------------------

def encode_image(rng, ext):
    """A small valid image of format `ext`, 8-24 px a side, in one of the modes the format takes."""
    height, width = (int(v) for v in rng.integers(8, 25, 2))
    modes = {"png": ("RGB", "L", "RGBA", "P", "LA"), "jpg": ("RGB", "L"), "gif": ("P",), "bmp": ("RGB", "L", "RGBA")}
    mode = str(rng.choice(modes[ext]))
    pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
    if rng.random() < 0.5:  # flat colour compresses differently from noise
        pixels[:] = rng.integers(0, 256, 3, np.uint8)
    options = {"progressive": True} if ext == "jpg" and rng.random() < 0.3 else {}
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=FORMATS[ext], **options)
    return buffer.getvalue()


def _fields(data, ext):
    """`(offset, size, byte order)` of the header fields a decoder reads, for `header` edits."""
    if ext == "png":
        return [(16, 4, "big"), (20, 4, "big"), (24, 1, "big"), (25, 1, "big"), (26, 1, "big"), (27, 1, "big"),
                (28, 1, "big")]
    if ext == "bmp":
        return [(2, 4, "little"), (10, 4, "little"), (14, 4, "little"), (18, 4, "little"), (22, 4, "little"),
                (26, 2, "little"), (28, 2, "little"), (30, 4, "little"), (34, 4, "little"), (46, 4, "little")]
    if ext == "gif":
        fields = [(6, 2, "little"), (8, 2, "little"), (10, 1, "little"), (11, 1, "little")]
        start = data.find(b"\x2c", 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 13))
        if start > 0:
            fields += [(start + 1 + 2 * k, 2, "little") for k in range(4)] + [(start + 9, 1, "little")]
        return fields
    fields = []  # JPEG: the length and first body bytes of each frame, table and scan header
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc4", b"\xff\xdb", b"\xff\xda", b"\xff\xdd"):
        at = data.find(marker)
        if at > 0:
            fields += [(at + 2, 2, "big")] + [(at + k, 1, "big") for k in range(4, 12)]
    return fields


def mutate_image(rng, data, ext, how):
    data = bytearray(data)
    if how == "truncate":  # at any point
        return bytes(data[: int(rng.integers(1, len(data)))])
    if how == "flip":  # one byte of the first 64 replaced by a different one
        at = int(rng.integers(0, min(64, len(data))))
        data[at] ^= int(rng.integers(1, 256))
        return bytes(data)
    if how == "garbage":  # bytes appended: fine after a JPEG, PNG or GIF, refused after a BMP
        return bytes(data) + rng.integers(0, 256, int(rng.integers(1, 65)), np.uint8).tobytes()
    offset, size, order = _fields(bytes(data), ext)[int(rng.integers(0, len(_fields(bytes(data), ext))))]
    old = int.from_bytes(data[offset : offset + size], order)
    top = (1 << (8 * size)) - 1
    value = int(rng.choice([0, 1, 2, 3, 4, 8, 16, 24, 32, old + 1, old - 1, old * 2, old // 2, top, top // 2,
                            int(rng.integers(0, top + 1))])) & top
    data[offset : offset + size] = value.to_bytes(size, order)
    if ext == "png" and rng.random() < 0.5:  # fix up the IHDR CRC, or the CRC check alone would catch the edit
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def tf_decodes(data):
    """Whether TensorFlow reads `data`: `tf.io.decode_image` (the rule for "good") and the pipeline's decoder."""
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
        image_ops.decode_image(tf.constant(data), min_size=(8, 8))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False
    return True


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def mutant(rng, ext):
    """`(how, bytes)`: a valid image of format `ext` with one of `IMAGE_MUTATIONS`."""
    how = str(rng.choice(IMAGE_MUTATIONS))
    return how, mutate_image(rng, encode_image(rng, ext), ext, how)


class Images:
    """Writes each record's image, mutated or not, and knows whether it is good (see the module docstring).

    A mutant `check_image` accepts but TensorFlow cannot decode is bad too: a reader in skip mode finds
    it in its decoding pass (`pipeline.undecodable_images`) and lists it.
    """

    def __init__(self, rng, folder):
        self.rng, self.folder, self.mutations = rng, folder, collections.Counter()

    def write(self, index, mutate, folder=None, stem=None):
        """`(path, good)` of record `index`'s image, named `img_017_017.EXT` or `stem.EXT` (bytes)."""
        ext = str(self.rng.choice(list(FORMATS)))
        stem = stem or f"img_{index:03d}_{index:03d}".encode()
        path = os.fsdecode(os.path.join(os.fsencode(folder or self.folder), stem + b"." + ext.encode()))
        how, data = mutant(self.rng, ext) if mutate else ("intact", encode_image(self.rng, ext))
        write(path, data)
        good = image_header.check_image(path) is None and tf_decodes(data)
        self.mutations[f"{ext} {how}"] += 1
        return path, good


# --- checking a reader's result ----------------------------------------------------------------

def examples_of(ds):
    """Counter of `(caption, label name)` over the whole dataset: features image+text, targets label."""
    got = collections.Counter()
    for features, labels in ds:
        assert features["image"].shape[1:] == (8, 8, 3) and features["image"].dtype == tf.uint8
        for text, label in zip(features["text"].numpy(), labels.numpy()):
            got[(text.decode(), ds.class_names[int(label)])] += 1
    return got


def check_result(ds, expected, bad_sources, reasons_mention=None):
    """Kept examples are exactly `expected`; skipped sources exactly `bad_sources`, each with a reason."""
    skipped = list(ds.skipped_records)
    assert all(isinstance(reason, str) and reason.strip() for _, reason in skipped), skipped
    sources = [source for source, _ in skipped]
    assert len(sources) == len(set(sources)), "a record listed twice"
    assert set(sources) == set(bad_sources), (
        f"listed but good: {sorted(set(sources) - set(bad_sources))}; "
        f"bad but not listed: {sorted(set(bad_sources) - set(sources))}"
    )
    for source, reason in skipped:  # a record dropped for its image says which image
        if reasons_mention and source in reasons_mention:
            assert reasons_mention[source] in reason, (source, reason)
    got = examples_of(ds)
    assert got == expected, f"missing: {expected - got}; unexpected: {got - expected}"
    return got


def plan(rng, table, weights, count, at_least=2):
    """`count` mutation names from `table` in random order: each at least `at_least` times, the rest by weight."""
    names, weights = list(table), np.asarray(weights, float)
    picks = names * at_least
    picks += [names[i] for i in rng.choice(len(names), count - len(picks), p=weights / weights.sum())]
    return [picks[i] for i in rng.permutation(len(picks))]


def caption_of(rng, index):
    return f"caption {index} " + " ".join(str(w) for w in rng.choice(WORDS, int(rng.integers(1, 4))))


# --- from_folder --------------------------------------------------------------------------------

FOLDER_MUTATIONS = {  # what happens to a record's caption file (NAME.txt) -> is the record still good?
    "intact": True,
    "image": None,  # the image file mutated: good if the image is
    "no caption file": False,
    "empty caption": False,  # an empty file, or only whitespace
    "blank first line": False,  # the caption is the first line
    "not UTF-8": False,
    "BOM": True,  # Notepad writes one: the caption is the text after it
    "CRLF and more lines": True,
    "non-UTF-8 file name": None,  # a Latin-1 file name that exists: read like any other file
}


def test_from_folder_fuzz(tmp_path):
    rng = np.random.default_rng(SEED)
    root = str(tmp_path)
    for label in LABELS:
        os.makedirs(os.path.join(root, label))
    images = Images(rng, root)
    expected, bad, mix = collections.Counter(), set(), collections.Counter()
    for i, what in enumerate(plan(rng, FOLDER_MUTATIONS, [50, 30, 3, 3, 2, 3, 3, 3, 3], 120)):
        label = LABELS[int(rng.integers(0, len(LABELS)))]
        mix[what] += 1
        stem = f"img_{i:03d}_{i:03d}".encode() + (b"_caf\xe9" if what == "non-UTF-8 file name" else b"")
        path, good = images.write(i, what == "image", folder=os.path.join(root, label), stem=stem)
        caption = caption_of(rng, i)
        text = caption.encode()
        stem = os.fsencode(os.path.splitext(path)[0])
        content = {
            "empty caption": str(rng.choice(["", "  \t", "\n\n"])).encode(),
            "blank first line": b"\n" + text + b"\n",
            "not UTF-8": text[:5] + NOT_UTF8[int(rng.integers(0, len(NOT_UTF8)))] + text[5:],
            "BOM": BOM + text + b"\n",
            "CRLF and more lines": text + b"\r\nsecond line\r\n",
        }.get(what, text + b"\n" * int(rng.integers(0, 2)))
        if what != "no caption file":
            write(stem + b".txt", content)
        good = good and FOLDER_MUTATIONS[what] is not False
        if good:
            expected[(caption, label)] += 1
        else:
            bad.add(path)
    ds = from_folder(root, **READ)
    assert ds.class_names == sorted(LABELS)
    got = check_result(ds, expected, bad)
    assert sum(got.values()) + len(ds.skipped_records) == 120
    assert set(mix) == set(FOLDER_MUTATIONS)


# --- from_manifest ------------------------------------------------------------------------------

LINE_MUTATIONS = {  # fixed outcomes; None: judged by the format (see the module docstring)
    "intact": True,
    "image": None,  # the row is intact, its image file mutated
    "truncated": None,  # cut at a random point (JSONL: always malformed; CSV: good if cut inside the label)
    "byte replaced": None,  # one byte replaced by a random other one (never a line break)
    "field renamed": False,  # JSONL: a typo in a key; CSV: an extra field
    "duplicated": True,  # an exact repeat of a row is data too: kept twice
    "not UTF-8": False,
    "BOM at line start": False,  # as when two files with BOMs are concatenated: reported, not guessed at
}  # and file-wide: a byte-order mark, mixed LF and CRLF line endings, blank and whitespace-only lines


def manifest_line(rng, fmt, row):
    if fmt == "csv":
        text = io.StringIO()
        csv.writer(text, lineterminator="").writerow([row["image"], row["text"], row["label"]])
        return text.getvalue().encode()
    keys = list(row)
    rng.shuffle(keys)
    return json.dumps({k: row[k] for k in keys}, ensure_ascii=bool(rng.random() < 0.5)).encode()


def judge_line(line, fmt, row):
    """`(caption, label)` a line hit by a random change now gives, or None if it is a bad record."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if fmt == "csv":
        values = next(csv.reader(io.StringIO(text)), [])
        if len(values) != 3:
            return None
        fields = dict(zip(("image", "text", "label"), values))
    else:
        try:
            pairs = json.loads(text, object_pairs_hook=lambda pairs: pairs)
        except ValueError:
            return None
        if not isinstance(pairs, list) or sorted(k for k, _ in pairs) != ["image", "label", "text"]:
            return None
        fields = dict(pairs)
    if fields["image"] != row["image"] or not all(isinstance(v, str) for v in fields.values()):
        return None
    if not fields["text"].strip() or not fields["label"]:
        return None
    return fields["text"].strip(), fields["label"]


def mutate_line(rng, line, fmt, what):
    if what == "truncated":
        return line[: int(rng.integers(1, len(line)))]
    if what == "byte replaced":
        line, at = bytearray(line), int(rng.integers(0, len(line)))
        line[at] = int(rng.choice([b for b in range(256) if b not in (0x0A, 0x0D, line[at])]))
        return bytes(line)
    if what == "field renamed":
        if fmt == "csv":
            return line + b",extra"
        key = str(rng.choice(["image", "text", "label"]))
        return line.replace(f'"{key}"'.encode(), f'"{key[0]}{key[2]}{key[1]}{key[3:]}"'.encode(), 1)
    if what == "not UTF-8":
        at = int(rng.integers(0, len(line) + 1))
        return line[:at] + NOT_UTF8[int(rng.integers(0, len(NOT_UTF8)))] + line[at:]
    if what == "BOM at line start":
        return BOM + line
    return line


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_from_manifest_fuzz(tmp_path, fmt):
    rng = np.random.default_rng([SEED, len(fmt)])
    root = str(tmp_path)
    images = Images(rng, root)
    path = os.path.join(root, f"manifest.{fmt}")
    # (bytes, (caption, label) or "bad" or None for no record, what a reason must mention)
    lines = [(b"image,text,label", None, None)] if fmt == "csv" else []
    mix = collections.Counter()
    for i, what in enumerate(plan(rng, LINE_MUTATIONS, [45, 30, 6, 10, 3, 4, 3, 2], 130)):
        mix[what] += 1
        image, good = images.write(i, what == "image")
        row = {"image": os.path.basename(image), "text": caption_of(rng, i),
               "label": LABELS[int(rng.integers(0, len(LABELS)))]}
        line = manifest_line(rng, fmt, row)
        mutated = mutate_line(rng, line, fmt, what)
        if LINE_MUTATIONS[what] is None and what != "image":
            outcome = judge_line(mutated, fmt, row)
        elif LINE_MUTATIONS[what] is False or (what == "image" and not good):
            outcome = None
        else:
            outcome = (row["text"].strip(), row["label"])
        mention = os.path.basename(image) if what == "image" else None  # a bad image's reason names it
        for _ in range(2 if what == "duplicated" else 1):
            lines.append((mutated, outcome if outcome else "bad", mention))
        for _ in range(int(rng.random() < 0.08)):  # a blank line: no record
            lines.append((str(rng.choice(["", "   ", "\t"])).encode(), None, None))
    body = b"".join(line + (b"\r\n" if rng.random() < 0.3 else b"\n") for line, _, _ in lines)
    write(path, BOM + body)  # a byte-order mark, and mixed line endings

    ds = from_manifest(path, target="label", **READ)
    records = [(n, outcome) for n, (_, outcome, _) in enumerate(lines, start=1) if outcome is not None]
    expected = collections.Counter(outcome for _, outcome in records if outcome != "bad")
    bad = {f"{path}:{n}" for n, outcome in records if outcome == "bad"}
    mentions = {f"{path}:{n}": mention for n, (_, _, mention) in enumerate(lines, start=1) if mention}
    got = check_result(ds, expected, bad, mentions)
    assert sum(got.values()) + len(ds.skipped_records) == len(records)
    assert set(mix) == set(LINE_MUTATIONS)


def test_manifest_csv_header_mutations_stop_the_reader(tmp_path):
    # The header concerns every row, so a damaged one is an error whatever on_error (as documented).
    rng = np.random.default_rng(SEED)
    images = Images(rng, str(tmp_path))
    rows = b"".join(f"{os.path.basename(images.write(i, False)[0])},caption {i},circle\n".encode() for i in range(2))
    path = os.path.join(str(tmp_path), "manifest.csv")
    for k in range(12):
        header = bytearray(b"image,text,label")
        if k < 2:
            header = bytearray([b"imgae,text,label", b"image,caption,label"][k])
        else:
            at = int(rng.integers(0, len(header)))
            header[at] = int(rng.choice([b for b in range(256) if b not in (0x0A, 0x0D, header[at])]))
        write(path, bytes(header) + b"\n" + rows)
        with pytest.raises(ValueError, match=r"manifest\.csv:1: "):
            from_manifest(path, **READ)
    write(path, b"image,text,label\n" + rows)
    assert len(list(from_manifest(path, **READ))) == 1


# --- from_coco ----------------------------------------------------------------------------------

COCO_MUTATIONS = {  # per image entry and its annotations
    "intact": True,
    "image": None,  # the image file mutated: its annotations are good if the image is
    "entry duplicated": False,  # two entries with one id and one file: both bad, with every annotation of it
    "entry field renamed": False,  # 'id', 'file_name' or 'category_id': the entry and its annotations bad
    "file name not UTF-8": False,  # raw Latin-1 bytes in file_name, no such file: file not found
    "non-UTF-8 file name": True,  # the same, with the Latin-1 named file on disk: read like any other
    "annotation duplicated": None,  # one annotation's line twice: both copies bad (one id), the others good
    "annotation field renamed": None,  # 'caption' or 'image_id' of one annotation: that one bad
    "caption not UTF-8": None,  # raw bytes in one caption: that one bad
    "caption emptied": None,  # "" or whitespace: that one bad
    "caption character replaced": None,  # any other character: good, with the new caption
    "unknown image_id": None,  # that annotation bad
}


def coco_line(entry, raw=None):
    """One entry as a JSON line; `raw` = (field, bytes) puts bytes that are not UTF-8 into a string field."""
    if raw is None:
        return json.dumps(entry).encode()
    field, extra = raw
    marker = "\x00MARK\x00"
    text = json.dumps(dict(entry, **{field: entry[field] + marker})).encode()
    return text.replace(json.dumps(marker)[1:-1].encode(), extra)


def test_from_coco_fuzz(tmp_path):
    rng = np.random.default_rng([SEED, 3])
    root = str(tmp_path)
    images = Images(rng, root)
    path = os.path.join(root, "captions.json")
    # (line, expectation): an entry's is "bad" or None; an annotation's (id, image id, its caption or None
    # if the annotation itself is bad, the mutated image file or None)
    entries, annotations = [], []
    category = {name: 10 + k for k, name in enumerate(LABELS)}
    mix, next_annotation = collections.Counter(), 1000
    entry_good, file_good, image_label, annotation_ids = {}, {}, {}, collections.Counter()
    for i, what in enumerate(plan(rng, COCO_MUTATIONS, [35, 25, 3, 4, 3, 3, 4, 4, 3, 3, 6, 3], 60)):
        mix[what] += 1
        image_id = 100 + i
        label = LABELS[int(rng.integers(0, len(LABELS)))]
        latin1 = what in ("non-UTF-8 file name", "file name not UTF-8")
        file, good = images.write(i, what == "image", stem=f"img_{i:03d}_{i:03d}".encode() + b"_caf\xe9" * latin1)
        ext = os.path.splitext(file)[1]
        entry = {"id": image_id, "file_name": os.path.basename(file), "category_id": category[label]}
        if what == "file name not UTF-8":
            os.remove(file)
            good = False
        if what == "entry field renamed":
            key = str(rng.choice(["id", "file_name", "category_id"]))
            entry[key + "_"] = entry.pop(key)
        if latin1:
            entry["file_name"] = f"img_{i:03d}_{i:03d}"
            line = coco_line(entry, ("file_name", b"_caf\xe9" + ext.encode()))
        else:
            line = coco_line(entry)
        entry_ok = what not in ("entry duplicated", "entry field renamed")
        entries.append((line, None if entry_ok else "bad"))
        if what == "entry duplicated":
            entries.append((line, "bad"))
        entry_good[image_id], file_good[image_id], image_label[image_id] = entry_ok, good, label
        count = int(rng.integers(1, 4))
        victim = int(rng.integers(0, count))  # the annotation an annotation-level mutation hits
        for k in range(count):
            caption = caption_of(rng, 10 * i + k)
            annotation = {"id": next_annotation, "image_id": image_id, "caption": caption}
            next_annotation += 1
            raw, outcome, copies = None, caption.strip(), 1
            if k == victim and what.startswith(("annotation", "caption", "unknown")):
                if what == "annotation duplicated":
                    copies, outcome = 2, None
                elif what == "annotation field renamed":
                    key = str(rng.choice(["caption", "image_id"]))
                    annotation[key[:3] + "x" + key[4:]] = annotation.pop(key)
                    outcome = None
                elif what == "caption not UTF-8":
                    raw, outcome = ("caption", NOT_UTF8[int(rng.integers(0, len(NOT_UTF8)))]), None
                elif what == "caption emptied":
                    annotation["caption"], outcome = str(rng.choice(["", " ", "\t\n", "\u3000"])), None
                elif what == "caption character replaced":
                    at = int(rng.integers(0, len(caption)))
                    new = str(rng.choice(list("xZ9 ,.\"\\/\t\u2028é日\U0001F600")))
                    annotation["caption"] = caption[:at] + new + caption[at + 1 :]
                    outcome = annotation["caption"].strip()
                else:
                    annotation["image_id"], outcome = 99999, None
            line = coco_line(annotation, raw)
            for _ in range(copies):
                annotations.append((line, (annotation["id"], image_id, outcome, what == "image" and file)))
                annotation_ids[annotation["id"]] += 1
    categories = [json.dumps({"id": category[name], "name": name}).encode() for name in LABELS]

    def block(items):  # entries one a line, with the odd blank line between them
        return b",\n".join(item + (b"\n" * int(rng.random() < 0.1)) for item in items)

    text = (b'{"images": [\n' + block([line for line, _ in entries]) + b'\n],\n"categories": [\n' +
            block(categories) + b'\n],\n"annotations": [\n' + block([line for line, _ in annotations]) + b"\n]}\n")
    write(path, BOM + text.replace(b"\n", b"\r\n"))  # a byte-order mark and CRLF line endings

    bad_entries = {f"{path}: images[{n}]" for n, (_, outcome) in enumerate(entries) if outcome == "bad"}
    # captions="all": one example per annotation, each annotation of a bad image file listed with the file.
    expected, bad, mentions = collections.Counter(), set(bad_entries), {}
    # captions="sample": one example per image with a good file and at least one good annotation; an
    # image whose file is bad is listed once (as "image <id>"), its annotations are not.
    captions_of_image, bad_in_sample = collections.defaultdict(set), set(bad_entries)
    for index, (_, (annotation_id, image_id, outcome, mutated_file)) in enumerate(annotations):
        source = f"{path}: annotation {annotation_id}"
        if annotation_ids[annotation_id] > 1:
            source += f" (annotations[{index}])"
        if outcome is None or not entry_good.get(image_id):
            bad.add(source)
            bad_in_sample.add(source)
        elif not file_good[image_id]:
            bad.add(source)
            bad_in_sample.add(f"{path}: image {image_id}")
            if mutated_file:
                mentions[source] = mentions[f"{path}: image {image_id}"] = os.path.basename(mutated_file)
        else:
            expected[(outcome, image_label[image_id])] += 1
            captions_of_image[image_id].add((outcome, image_label[image_id]))
    ds = from_coco(path, root, captions="all", target="label", **READ)
    assert ds.class_names == list(LABELS)
    got = check_result(ds, expected, bad, mentions)
    assert sum(got.values()) + len(ds.skipped_records) == len(annotations) + len(bad_entries)
    assert set(mix) == set(COCO_MUTATIONS)

    ds = from_coco(path, root, captions="sample", target="label", **READ)
    skipped = dict(ds.skipped_records)
    assert set(skipped) == bad_in_sample and all(reason.strip() for reason in skipped.values())
    assert all(mentions[source] in reason for source, reason in skipped.items() if source in mentions)
    image_of = {example: image_id for image_id, examples in captions_of_image.items() for example in examples}
    sampled = collections.Counter(image_of.get(example) for example in examples_of(ds).elements())
    assert sampled == collections.Counter(set(captions_of_image))  # each image with a good caption, once


def test_coco_whole_file_mutations_are_clear_errors(tmp_path):
    # A COCO file is one JSON document: cut short or with a broken category it cannot be read at all.
    rng = np.random.default_rng([SEED, 4])
    images = Images(rng, str(tmp_path))
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "circle"}]}
    for i in range(3):
        name = os.path.basename(images.write(i, False)[0])
        data["images"].append({"id": i, "file_name": name, "category_id": 1})
        data["annotations"].append({"id": i, "image_id": i, "caption": f"caption {i}"})
    text = json.dumps(data, indent=1).encode()
    path = os.path.join(str(tmp_path), "captions.json")
    for _ in range(10):
        write(path, text[: int(rng.integers(1, len(text) - 1))])
        with pytest.raises(ValueError, match="is not valid JSON"):
            from_coco(path, str(tmp_path), **READ)
    for broken in ({"name": "circle"}, {"id": [1], "name": "circle"}, "circle"):
        write(path, json.dumps(dict(data, categories=[broken])).encode())
        with pytest.raises(ValueError, match=r"categories\[0\]"):
            from_coco(path, str(tmp_path), **READ)
    write(path, text)
    assert len(list(from_coco(path, str(tmp_path), target="label", **READ))) == 2


# --- the pre-check and the decoder ----------------------------------------------------------------

def test_the_pre_check_and_the_decoding_pass_accept_only_what_tensorflow_decodes(tmp_path):
    """What a skip-mode reader keeps must decode, or training would stop on it mid-epoch.

    The header pre-check (`check_image`) misses damage inside the image data (a PNG header edited
    with its checksum fixed, a GIF's damaged pixel data); the decoding pass catches those.
    """
    rng = np.random.default_rng([SEED, 5])
    paths, kinds = [], []
    for i in range(300):
        ext = str(rng.choice(list(FORMATS)))
        how, data = mutant(rng, ext)
        paths.append(write(os.path.join(str(tmp_path), f"mutant{i}.{ext}"), data))
        kinds.append(f"{ext} {how}")
    passed = [i for i, path in enumerate(paths) if image_header.check_image(path) is None]
    failed = pipeline.undecodable_images([os.fsencode(paths[i]) for i in passed], 8)
    kept = [i for n, i in enumerate(passed) if n not in failed]
    gaps = collections.Counter(kinds[i] for i in kept if not tf_decodes(open(paths[i], "rb").read()))
    assert not gaps, f"kept mutants TensorFlow cannot decode: {dict(gaps)}"


# --- regressions: what the fuzz found in the readers' own checks -----------------------------------

def png(shade=0):
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), shade, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def captions_of(ds):
    """Sorted captions of a dataset whose targets are the captions."""
    return sorted(text.decode() for _, targets in ds for text in targets.numpy())


def test_non_utf8_file_names_are_read(tmp_path):
    # A Latin-1 file name on Linux is a str with lone surrogates in Python, which TensorFlow refused:
    # the whole dataset failed to build, whatever on_error.
    root = os.fsencode(str(tmp_path))
    os.makedirs(os.path.join(root, b"cls"))
    for name in (b"plain", b"caf\xe9"):
        write(os.path.join(root, b"cls", name + b".png"), png())
        write(os.path.join(root, b"cls", name + b".txt"), b"caption " + name.decode("latin-1").encode())
    ds = from_folder(str(tmp_path), target="text", **READ)
    assert captions_of(ds) == ["caption café", "caption plain"] and not len(ds.skipped_records)
    coco = (b'{"images": [{"id": 1, "file_name": "cls/caf\xe9.png"}, {"id": 2, "file_name": "cls/plain.png"}],'
            b' "annotations": [{"id": 1, "image_id": 1, "caption": "latin-1 name"},'
            b' {"id": 2, "image_id": 2, "caption": "plain name"}]}')
    path = write(os.path.join(str(tmp_path), "captions.json"), coco)
    ds = from_coco(path, str(tmp_path), captions="all", **READ)
    assert captions_of(ds) == ["latin-1 name", "plain name"] and not len(ds.skipped_records)


def test_folder_caption_file_with_a_bom_gives_the_caption_without_it(tmp_path):
    # Notepad saves UTF-8 with a byte-order mark; it was kept as a U+FEFF at the caption's start.
    os.makedirs(os.path.join(str(tmp_path), "cls"))
    write(os.path.join(str(tmp_path), "cls", "a.png"), png())
    write(os.path.join(str(tmp_path), "cls", "a.txt"), BOM + "a red circle\r\n".encode())
    assert captions_of(from_folder(str(tmp_path), target="text", **READ)) == ["a red circle"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest_line_with_nul_or_a_huge_field_is_read_or_reported(tmp_path, fmt):
    # A CSV field over csv.field_size_limit() (131072 characters) raised _csv.Error out of the reader.
    for i in range(3):
        write(os.path.join(str(tmp_path), f"i{i}.png"), png(40 * i))
    rows = [{"image": f"i{i}.png", "text": text, "label": "circle"}
            for i, text in enumerate(["caption 0", "caption\x001", "x" * 200_000])]
    lines = [manifest_line(np.random.default_rng(0), fmt, row) for row in rows]
    header = [b"image,text,label"] if fmt == "csv" else []
    path = write(os.path.join(str(tmp_path), f"manifest.{fmt}"), b"\n".join(header + lines) + b"\n")
    ds = from_manifest(path, target="label", **READ)
    got, skipped = examples_of(ds), dict(ds.skipped_records)
    assert got[("caption 0", "circle")] == 1
    if fmt == "jsonl":  # json.dumps escapes the NUL, and JSON has no limit on a string's length
        assert got == {("caption 0", "circle"): 1, ("caption\x001", "circle"): 1, ("x" * 200_000, "circle"): 1}
    else:  # a NUL is data in CSV; the huge field is reported
        assert got == {("caption 0", "circle"): 1, ("caption\x001", "circle"): 1}
        assert list(skipped) == [f"{path}:4"] and "field larger than field limit" in skipped[f"{path}:4"]
        write(path, b"image,text," + b"x" * 200_000 + b"\n" + lines[0] + b"\n")
        with pytest.raises(ValueError, match=r"manifest\.csv:1: malformed CSV header \(field larger"):
            from_manifest(path, **READ)


def test_manifest_jsonl_rows_of_the_wrong_shape_are_bad_records(tmp_path):
    # Deep nesting (RecursionError) and a 5000-digit integer (ValueError) escaped the reader; labels of
    # the wrong JSON type became classes named 'None', 'True', '[1]'; image paths of the wrong type
    # were looked for as files named '5' or 'None'.
    for i in range(2):
        write(os.path.join(str(tmp_path), f"i{i}.png"), png(40 * i))
    good = ['{"image": "i0.png", "text": "zero", "label": "circle"}',
            '{"image": "i1.png", "text": "one", "label": "square"}']
    bad = {
        "[" * 100_000: "nested too deeply",
        '{"image": "i0.png", "text": "t", "label": ' + "1" * 5000 + "}": "Exceeds the limit",
        '{"image": "i0.png", "text": "t", "label": null}': "got null",
        '{"image": "i0.png", "text": "t", "label": true}': "got a boolean",
        '{"image": "i0.png", "text": "t", "label": [1]}': "got a list",
        '{"image": "i0.png", "text": "t", "label": {"a": 1}}': "got an object",
        '{"image": "i0.png", "text": "t", "label": 1.5}': "got a non-integer number",
        '{"image": null, "text": "t", "label": "circle"}': "image must be a file path (a string), got null",
        '{"image": 5, "text": "t", "label": "circle"}': "got an integer",
    }
    path = write(os.path.join(str(tmp_path), "m.jsonl"), "\n".join(good + list(bad)).encode())
    ds = from_manifest(path, **READ)
    assert examples_of(ds) == {("zero", "circle"): 1, ("one", "square"): 1}
    assert ds.class_names == ["circle", "square"]
    skipped = dict(ds.skipped_records)
    for n, part in enumerate(bad.values(), start=len(good) + 1):
        assert part in skipped.pop(f"{path}:{n}")
    assert not skipped


def test_manifest_index_labels_out_of_range_or_a_superscript_digit(tmp_path):
    # "²".isdigit() is True but int("²") fails: such a label beside index labels crashed the reader.
    # Index labels outside int32 (the pipeline's label type) are reported rather than overflowing.
    for i in range(4):
        write(os.path.join(str(tmp_path), f"i{i}.png"), png(40 * i))
    rows = [("i0.png", "0"), ("i1.png", "1"), ("i2.png", "²")]
    path = write(os.path.join(str(tmp_path), "m.csv"),
                 "image,text,label\n".encode() + "".join(f"{im},t{im},{lb}\n" for im, lb in rows).encode())
    ds = from_manifest(path, **READ)
    assert ds.class_names == ["0", "1", "²"] and sum(examples_of(ds).values()) == 3
    lines = ['{"image": "i0.png", "text": "a", "label": 0}', '{"image": "i1.png", "text": "b", "label": "1"}',
             '{"image": "i2.png", "text": "c", "label": -1}', '{"image": "i3.png", "text": "d", "label": "2147483648"}']
    path = write(os.path.join(str(tmp_path), "m.jsonl"), "\n".join(lines).encode())
    ds = from_manifest(path, **READ)
    assert sorted(int(y) for _, labels in ds for y in labels.numpy()) == [0, 1]
    skipped = dict(ds.skipped_records)
    assert set(skipped) == {f"{path}:3", f"{path}:4"}
    assert all("is not between 0 and 2147483647" in reason for reason in skipped.values())


def coco_file(tmp_path, images, categories=None):
    """A COCO file over `images` ((id, category_id or KEEP_OUT) pairs), one caption each."""
    entries, annotations = [], []
    for n, (image_id, category_id) in enumerate(images):
        write(os.path.join(str(tmp_path), f"c{n}.png"), png(30 * n))
        entry = {"id": image_id, "file_name": f"c{n}.png"}
        if category_id is not KEEP_OUT:
            entry["category_id"] = category_id
        entries.append(entry)
        annotations.append({"id": n, "image_id": image_id, "caption": f"caption {n}"})
    data = {"images": entries, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    return write(os.path.join(str(tmp_path), "captions.json"), json.dumps(data).encode())


KEEP_OUT = object()


def test_coco_entry_without_a_usable_category_id_is_a_bad_record(tmp_path):
    # One entry without category_id silently made the whole file unlabelled (target="label" then
    # failed with "these records have no labels"); an unhashable one crashed the reader.
    path = coco_file(tmp_path, [(1, 7), (2, KEEP_OUT), (3, [7]), (4, "x")], [{"id": 7, "name": "circle"}])
    ds = from_coco(path, str(tmp_path), captions="all", target="label", **READ)
    assert ds.class_names == ["circle", "x"]  # integer category ids first, then string ones
    assert examples_of(ds) == {("caption 0", "circle"): 1, ("caption 3", "x"): 1}
    skipped = dict(ds.skipped_records)
    assert "no 'category_id'" in skipped[f"{path}: images[1]"]
    assert "category_id must be an integer or a string" in skipped[f"{path}: images[2]"]
    assert set(skipped) == {f"{path}: images[1]", f"{path}: images[2]", f"{path}: annotation 1",
                            f"{path}: annotation 2"}


def test_coco_image_id_target_needs_integer_ids(tmp_path):
    # int("abc") raised out of the reader in skip mode.
    path = coco_file(tmp_path, [(1, KEEP_OUT), ("abc", KEEP_OUT), ("12", KEEP_OUT)])
    ds = from_coco(path, str(tmp_path), captions="all", target="image_id", **READ)
    assert sorted(int(y) for _, ids in ds for y in ids.numpy()) == [1, 12]
    (source, reason), = ds.skipped_records
    assert source == f"{path}: annotation 1" and "image id 'abc' is not an integer" in reason


def test_coco_json_nested_too_deeply_or_with_a_huge_integer_is_a_clear_error(tmp_path):
    path = os.path.join(str(tmp_path), "captions.json")
    for text in ('{"images": ' + "[" * 100_000, '{"images": [], "annotations": [], "x": ' + "9" * 5000 + "}"):
        write(path, text.encode())
        with pytest.raises(ValueError, match="is not valid JSON"):
            from_coco(path, str(tmp_path), **READ)


def test_index_labels_and_image_ids_too_long_for_int_are_bad_records(tmp_path):
    # int() of a string of more than 4300 digits raises ValueError.
    for i in range(2):
        write(os.path.join(str(tmp_path), f"i{i}.png"), png(40 * i))
    path = write(os.path.join(str(tmp_path), "m.csv"), b"image,text,label\ni0.png,a,0\ni1.png,b," + b"7" * 5000 + b"\n")
    ds = from_manifest(path, **READ)
    assert [source for source, _ in ds.skipped_records] == [f"{path}:3"]
    path = coco_file(tmp_path, [(1, KEEP_OUT), ("7" * 5000, KEEP_OUT)])
    ds = from_coco(path, str(tmp_path), captions="all", target="image_id", **READ)
    assert [source for source, _ in ds.skipped_records] == [f"{path}: annotation 1"]


def test_a_png_damaged_past_its_header_is_listed_in_skip_mode_not_a_crash_mid_epoch(tmp_path):
    (tmp_path / "a").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)  # > 64 KiB of image data
    Image.fromarray(noise).save(tmp_path / "a" / "good.png")
    data = bytearray((tmp_path / "a" / "good.png").read_bytes())
    data[-5000] ^= 0xFF  # inside the image data, far past what the header check reads
    write(str(tmp_path / "a" / "damaged.png"), bytes(data))
    assert image_header.check_image(str(tmp_path / "a" / "damaged.png")) is None  # the header looks fine
    ds = from_folder(str(tmp_path), on_error="skip", batch_size=2, image_size=8)
    assert sum(int(labels.shape[0]) for _, labels in ds) == 1
    [(source, reason)] = list(ds.skipped_records)
    assert source.endswith("damaged.png") and "cannot be decoded" in reason
    with pytest.raises(tf.errors.InvalidArgumentError):  # raise mode: the decoder's own error
        list(from_folder(str(tmp_path), batch_size=2, image_size=8))
