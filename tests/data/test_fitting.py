"""kerasmm.data.fitting and manifest.read_rows: what fitting a model to `--data` reads, without decoding images."""

import json
import os

import pytest
import tensorflow as tf

from kerasmm import data
from kerasmm.data import fitting, manifest


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
    return str(path)


def test_read_rows_parses_as_from_manifest_and_gives_the_reasons(tmp_path):
    rows = list(manifest.read_rows(write(tmp_path / "m.jsonl", "\n".join([
        json.dumps({"image": "a.png", "label": 3}),
        "",
        "{not json",
        json.dumps({"image": "b.png", "colour": "red"}),
    ]) + "\n")))
    assert rows[0] == (1, {"image": "a.png", "label": 3}, None)
    assert [(number, row) for number, row, _ in rows[1:]] == [(3, None), (4, None)]
    assert rows[1][2].startswith("malformed JSON") and "unknown field(s) 'colour'" in rows[2][2]

    bad_utf8 = write(tmp_path / "u.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert [reason for _, _, reason in manifest.read_rows(bad_utf8)] == [None, "line is not valid UTF-8"]

    csv_path = write(tmp_path / "m.csv", "\ufeffimage,text,label\na.png,a cat,cat\nb.png,,dog\nc.png,x\n")
    assert list(manifest.read_rows(csv_path))[:2] == [
        (2, {"image": "a.png", "text": "a cat", "label": "cat"}, None),
        (3, {"image": "b.png", "label": "dog"}, None),  # empty fields left out
    ]
    assert list(manifest.read_rows(csv_path))[2] == (4, None, "malformed CSV row: 2 fields where the header has 3")
    with pytest.raises(ValueError, match="unknown column"):
        list(manifest.read_rows(write(tmp_path / "bad.csv", "imgae,label\na.png,1\n")))


def test_largest_integer_label_reads_manifests_only(tmp_path):
    numbered = write(tmp_path / "n.jsonl", "\n".join(json.dumps({"image": f"{i}.png", "label": label})
                                                     for i, label in enumerate([0, "5", 2])))
    assert fitting.largest_integer_label({"reader": "manifest", "path": numbered}) == 5
    named = write(tmp_path / "c.csv", "image,label\na.png,3\nb.png,cat\n")
    assert fitting.largest_integer_label({"reader": "manifest", "path": named}) is None  # a class name
    unlabelled = write(tmp_path / "t.jsonl", json.dumps({"image": "a.png", "text": "hi"}))
    assert fitting.largest_integer_label({"reader": "manifest", "path": unlabelled}) is None
    assert fitting.largest_integer_label({"reader": "folder", "root": str(tmp_path)}) is None


def test_texts_in_files_of_each_reader(tmp_path):
    jsonl = write(tmp_path / "m.jsonl", "\n".join(json.dumps(row) for row in [
        {"image": "a.png", "text": "  a red circle "}, {"image": "b.png", "text": "   "}, {"image": "c.png"}]))
    assert fitting.texts_in_files({"reader": "manifest", "path": jsonl}) == ["a red circle"]

    coco = write(tmp_path / "captions.json", json.dumps({
        "images": [{"id": 1, "file_name": "1.png"}],
        "annotations": [{"image_id": 1, "caption": "two dogs"}, {"image_id": 1, "caption": ""}, "junk"]}))
    assert fitting.texts_in_files({"reader": "coco", "annotations_json": coco, "image_dir": str(tmp_path)}) \
        == ["two dogs"]

    write(tmp_path / "folder" / "cats" / "1.txt", b"\xef\xbb\xbfa cat\r\nsecond line\n")
    write(tmp_path / "folder" / "dogs" / "2.txt", "a dog")
    write(tmp_path / "folder" / "dogs" / "2.png", b"not read")
    assert fitting.texts_in_files({"reader": "folder", "root": str(tmp_path / "folder")}) == ["a cat", "a dog"]

    assert fitting.texts_in_files({"reader": "tfrecord", "pattern": "*.tfrecord"}) is None
    assert fitting.texts_in_files({"reader": "shapes"}) is None


def test_texts_in_dataset_and_unknown_tokens():
    captions = tf.data.Dataset.from_tensor_slices(({"image": tf.zeros((3, 2, 2, 3), tf.uint8)},
                                                   tf.constant(["a red circle", "zebra", "b"]))).batch(2)
    assert fitting.texts_in_dataset(captions) == ["a red circle", "zebra", "b"]
    labelled = tf.data.Dataset.from_tensor_slices(({"image": tf.zeros((2, 2, 2, 3), tf.uint8)}, [0, 1])).batch(2)
    assert fitting.texts_in_dataset(labelled) == []

    vocabulary = data.shapes_vocabulary()
    unknown, total = fitting.count_unknown_tokens(["a red circle"], vocabulary)
    assert (unknown, total) == (0, 3)
    unknown, total = fitting.count_unknown_tokens(["a red circle", "xylophone"], vocabulary)
    assert unknown >= 1 and total >= 4
