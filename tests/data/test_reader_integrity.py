"""Readers never silently change data: BOMs, unknown columns, duplicate and conflicting records.

Every test writes a tiny data set into `tmp_path`: 8x8 PNG/JPEG images of one
colour each (so an example's pixels say which file it was read from), and a
manifest or COCO annotation file naming them.
"""

import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from kerasmm.data import BadRecordError, from_coco, from_manifest

BOM = b"\xef\xbb\xbf"
N = 4
LABELS = ("circle", "square", "circle", "triangle")


def write_image(root, name, shade, fmt=None):
    Image.fromarray(np.full((8, 8, 3), shade, np.uint8)).save(os.path.join(root, name), format=fmt)


def shade_of(i):
    return 40 * (i + 1)


def examples_of(ds):
    """`(shade, text, label)` of every example; `label` is a class name, `None` without labels."""
    got = []
    for features, targets in ds:
        texts = features["text"].numpy() if "text" in features else targets.numpy()
        labels = targets.numpy() if "text" in features else [None] * len(texts)
        for image, text, label in zip(features["image"].numpy(), texts, labels):
            name = None if label is None else ds.class_names[int(label)]
            got.append((int(round(float(image.mean()), -1)), text.decode(), name))
    return sorted(got, key=str)


# --- manifests ---------------------------------------------------------------------

def manifest_rows(root):
    for i in range(N):
        write_image(root, f"img{i}.png", shade_of(i))
    return [{"image": f"img{i}.png", "text": f"caption {i}", "label": LABELS[i]} for i in range(N)]


def expected_examples(indices=range(N), rows=None):
    rows = rows or [{"text": f"caption {i}", "label": LABELS[i]} for i in range(N)]
    return sorted(((shade_of(i), rows[i]["text"], rows[i]["label"]) for i in indices), key=str)


def write_manifest(root, rows, fmt, prefix=b"", header=("image", "text", "label")):
    path = os.path.join(root, f"manifest.{fmt}")
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")  # what spreadsheet programs write
        writer.writerow(header)
        writer.writerows([[row.get(k, "") for k in ("image", "text", "label")] for row in rows])
        body = text.getvalue().encode()
    else:
        body = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    open(path, "wb").write(prefix + body)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest_with_a_utf8_bom_reads_every_row(tmp_path, fmt):
    path = write_manifest(str(tmp_path), manifest_rows(str(tmp_path)), fmt, prefix=BOM)
    ds = from_manifest(path, image_size=8, batch_size=2)
    assert examples_of(ds) == expected_examples()
    assert len(ds.skipped_records) == 0


def test_manifest_csv_with_an_unknown_column_is_an_error(tmp_path):
    path = write_manifest(str(tmp_path), manifest_rows(str(tmp_path)), "csv", header=("imgae", "text", "label"))
    for on_error in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"manifest\.csv:1.*'imgae'.*'image', 'audio', 'text', 'label'"):
            from_manifest(path, image_size=8, batch_size=2, on_error=on_error)


def test_manifest_csv_with_a_repeated_column_is_an_error(tmp_path):
    path = write_manifest(str(tmp_path), manifest_rows(str(tmp_path)), "csv", header=("image", "text", "text"))
    with pytest.raises(ValueError, match=r"manifest\.csv:1.*'text'.*more than once"):
        from_manifest(path, image_size=8, batch_size=2)


def test_manifest_jsonl_row_with_an_unknown_field_is_a_bad_record(tmp_path):
    rows = manifest_rows(str(tmp_path))
    rows[2] = {"imgae": rows[2]["image"], "text": rows[2]["text"], "label": rows[2]["label"]}
    path = write_manifest(str(tmp_path), rows, "jsonl")
    with pytest.raises(BadRecordError, match=r"manifest\.jsonl:3.*'imgae'.*'image', 'audio', 'text', 'label'"):
        from_manifest(path, image_size=8, batch_size=2)
    ds = from_manifest(path, image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == expected_examples([0, 1, 3])
    assert [source for source, _ in ds.skipped_records] == [f"{path}:3"]


def test_manifest_jsonl_row_repeating_a_field_is_a_bad_record(tmp_path):
    path = write_manifest(str(tmp_path), manifest_rows(str(tmp_path)), "jsonl")
    with open(path, "ab") as f:
        f.write(b'{"image": "img0.png", "text": "caption 0", "label": "circle", "label": "square"}\n')
    with pytest.raises(BadRecordError, match=rf"manifest\.jsonl:{N + 1}.*'label'"):
        from_manifest(path, image_size=8, batch_size=2)
    ds = from_manifest(path, image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == expected_examples()
    assert [source for source, _ in ds.skipped_records] == [f"{path}:{N + 1}"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest_image_with_conflicting_labels_is_reported(tmp_path, fmt):
    rows = manifest_rows(str(tmp_path))
    rows.append({"image": "./img1.png", "text": "caption 1 again", "label": "triangle"})  # img1 is a square
    path = write_manifest(str(tmp_path), rows, fmt)
    first, second = (2, N + 1) if fmt == "jsonl" else (3, N + 2)  # the CSV header is line 1
    message = (rf"manifest\.{fmt}:{first}: image .*img1\.png has conflicting labels: "
               rf"'square' on line {first}, 'triangle' on line {second}")
    with pytest.raises(BadRecordError, match=message):
        from_manifest(path, image_size=8, batch_size=2)
    ds = from_manifest(path, image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == expected_examples([0, 2, 3])
    assert [source for source, _ in ds.skipped_records] == [f"{path}:{first}", f"{path}:{second}"]


def test_manifest_bad_row_does_not_make_a_good_row_conflict(tmp_path):
    rows = manifest_rows(str(tmp_path))
    rows.append({"image": "img1.png", "text": "   ", "label": "triangle"})  # bad anyway: empty caption
    path = write_manifest(str(tmp_path), rows, "jsonl")
    with pytest.raises(BadRecordError, match=rf"manifest\.jsonl:{N + 1}: empty caption"):
        from_manifest(path, image_size=8, batch_size=2)
    ds = from_manifest(path, image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == expected_examples()
    assert list(ds.skipped_records) == [(f"{path}:{N + 1}", "empty caption")]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest_image_with_several_captions_and_one_label_is_fine(tmp_path, fmt):
    rows = manifest_rows(str(tmp_path))
    rows.append({"image": "img1.png", "text": "another caption of 1", "label": "square"})
    rows.append(dict(rows[0]))  # an exact repeat is data too, not a conflict
    path = write_manifest(str(tmp_path), rows, fmt)
    ds = from_manifest(path, image_size=8, batch_size=2)
    expected = expected_examples() + [(shade_of(1), "another caption of 1", "square"),
                                      (shade_of(0), "caption 0", "circle")]
    assert examples_of(ds) == sorted(expected, key=str)
    assert len(ds.skipped_records) == 0


def test_manifest_caption_rows_may_repeat_an_image(tmp_path):
    rows = [{"image": r["image"], "text": r["text"]} for r in manifest_rows(str(tmp_path))]
    rows += [{"image": "img0.png", "text": "a second caption"}, {"image": "img0.png", "text": "a third caption"}]
    path = write_manifest(str(tmp_path), rows, "jsonl")
    ds = from_manifest(path, image_size=8, batch_size=2)
    texts = sorted(text for _, text, _ in examples_of(ds))
    assert texts == sorted([f"caption {i}" for i in range(N)] + ["a second caption", "a third caption"])


def test_manifest_integer_labels_written_two_ways_do_not_conflict(tmp_path):
    rows = manifest_rows(str(tmp_path))
    rows = [dict(r, label=i % 2) for i, r in enumerate(rows)] + [{"image": "img1.png", "text": "again", "label": "1"}]
    path = write_manifest(str(tmp_path), rows, "jsonl")
    ds = from_manifest(path, image_size=8, batch_size=2)
    assert sum(int(y.shape[0]) for _, y in ds) == N + 1
    assert len(ds.skipped_records) == 0


# --- COCO --------------------------------------------------------------------------

def write_coco(root, images=(), annotations=(), prefix=b""):
    """N images `00i.jpg` (ids 100+i), two captions each, plus the extra `images` and `annotations`."""
    all_images, all_annotations = [], []
    for i in range(N):
        write_image(root, f"{i:03d}.jpg", shade_of(i), "JPEG")
        all_images.append({"id": 100 + i, "file_name": f"{i:03d}.jpg"})
        for k in range(2):
            all_annotations.append({"id": 10 * i + k, "image_id": 100 + i, "caption": f"caption {i}.{k}"})
    path = os.path.join(root, "captions.json")
    text = json.dumps({"images": all_images + list(images), "annotations": all_annotations + list(annotations)})
    open(path, "wb").write(prefix + text.encode())
    return path


def coco_pairs(indices):
    return sorted(((shade_of(i), f"caption {i}.{k}", None) for i in indices for k in range(2)), key=str)


def test_coco_with_a_utf8_bom_reads_every_annotation(tmp_path):
    path = write_coco(str(tmp_path), prefix=BOM)
    ds = from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2)
    assert examples_of(ds) == coco_pairs(range(N))
    assert len(ds.skipped_records) == 0


def test_coco_duplicate_image_id_is_reported_not_replaced(tmp_path):
    write_image(str(tmp_path), "other.jpg", 250, "JPEG")
    path = write_coco(str(tmp_path), images=[{"id": 100, "file_name": "other.jpg"}])
    with pytest.raises(BadRecordError, match=r"captions\.json: images\[0\]: .*image id 100.*'000\.jpg'.*'other\.jpg'"):
        from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2)
    for captions in ("all", "sample"):
        ds = from_coco(path, str(tmp_path), captions=captions, image_size=8, batch_size=2, on_error="skip")
        if captions == "all":
            assert examples_of(ds) == coco_pairs([1, 2, 3])  # no caption of 000.jpg moved to other.jpg
        else:
            assert sorted(shade for shade, _, _ in examples_of(ds)) == [shade_of(i) for i in (1, 2, 3)]
        sources = [source for source, _ in ds.skipped_records]
        assert sources == [f"{path}: images[0]", f"{path}: images[{N}]",
                           f"{path}: annotation 0", f"{path}: annotation 1"]
        assert all("image id 100" in reason or "image_id 100" in reason for _, reason in ds.skipped_records)


def test_coco_two_images_with_one_file_name_are_reported(tmp_path):
    path = write_coco(
        str(tmp_path),
        images=[{"id": 200, "file_name": "./001.jpg"}],
        annotations=[{"id": 900, "image_id": 200, "caption": "the same file under another id"}],
    )
    with pytest.raises(BadRecordError, match=r"captions\.json: images\[1\]: .*001\.jpg.*ids? 101.*200"):
        from_coco(path, str(tmp_path), image_size=8, batch_size=2)
    ds = from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == coco_pairs([0, 2, 3])
    sources = [source for source, _ in ds.skipped_records]
    assert sources == [f"{path}: images[1]", f"{path}: images[{N}]", f"{path}: annotation 10",
                       f"{path}: annotation 11", f"{path}: annotation 900"]


def test_coco_annotation_of_an_unknown_image_is_reported(tmp_path):
    path = write_coco(str(tmp_path), annotations=[{"id": 900, "image_id": 12345, "caption": "an orphan caption"}])
    with pytest.raises(BadRecordError, match=r"captions\.json: annotation 900: image_id 12345 has no image"):
        from_coco(path, str(tmp_path), image_size=8, batch_size=2)
    ds = from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == coco_pairs(range(N))
    assert [source for source, _ in ds.skipped_records] == [f"{path}: annotation 900"]


def test_coco_annotation_of_a_bad_image_entry_names_the_entry(tmp_path):
    path = write_coco(
        str(tmp_path),
        images=[{"id": 300}],
        annotations=[{"id": 900, "image_id": 300, "caption": "a caption of an image with no file name"}],
    )
    with pytest.raises(BadRecordError, match=rf"images\[{N}\]: needs 'id' and 'file_name'"):
        from_coco(path, str(tmp_path), image_size=8, batch_size=2)
    ds = from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2, on_error="skip")
    assert examples_of(ds) == coco_pairs(range(N))
    skipped = list(ds.skipped_records)
    assert [source for source, _ in skipped] == [f"{path}: images[{N}]", f"{path}: annotation 900"]
    assert f"images[{N}]" in skipped[1][1]


def test_coco_duplicate_annotation_id_is_reported(tmp_path):
    path = write_coco(str(tmp_path), annotations=[{"id": 20, "image_id": 103, "caption": "which annotation 20?"}])
    message = (r"annotation 20 \(annotations\[4\]\): "
               r"annotation id 20 is used by 2 annotations: annotations\[4\], annotations\[8\]")
    with pytest.raises(BadRecordError, match=message):
        from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2)
    ds = from_coco(path, str(tmp_path), captions="all", image_size=8, batch_size=2, on_error="skip")
    expected = [pair for pair in coco_pairs(range(N)) if pair[1] != "caption 2.0"]
    assert examples_of(ds) == expected
    assert [source for source, _ in ds.skipped_records] == [
        f"{path}: annotation 20 (annotations[4])", f"{path}: annotation 20 (annotations[8])"]
