"""from_folder, from_manifest and from_coco on files the tests write, good and bad."""

import csv
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasmm
from kerasmm.data import BadRecordError, from_coco, from_folder, from_manifest

N = 6


def shapes_examples(n=N, with_audio=False):
    features, labels = kerasmm.data.shapes_arrays(num_examples=n, image_size=32, with_audio=with_audio, seed=3)
    return [
        {
            "image": features["image"][i],
            "text": str(features["text"][i]),
            "label": kerasmm.data.SHAPES[labels[i]],
            "audio": features["audio"][i] if with_audio else None,
        }
        for i in range(n)
    ]


def write_image(path, pixels, fmt=None):
    Image.fromarray(pixels).save(path, format=fmt)


def write_wav(path, waveform):
    wav = tf.audio.encode_wav(tf.constant(waveform[:, None], tf.float32), 16000)
    tf.io.write_file(path, wav)


def count(ds):
    return sum(int(tf.shape(targets)[0]) for _, targets in ds)


# --- bad files -----------------------------------------------------------------

def truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    open(path, "wb").write(data[: len(data) // 2])


def zero_bytes(path):
    open(path, "wb").close()


def text_named_jpg(path):
    open(path, "w").write("this is not an image\n")


BAD_IMAGES = {"truncated JPEG": truncated_jpeg, "zero-byte file": zero_bytes, "text file named .jpg": text_named_jpg}


# --- folder ------------------------------------------------------------------------

def make_folder(root, examples, with_text=True):
    for i, ex in enumerate(examples):
        folder = os.path.join(root, ex["label"])
        os.makedirs(folder, exist_ok=True)
        stem = os.path.join(folder, f"ex{i}")
        write_image(stem + ".png", ex["image"])
        if with_text:
            open(stem + ".txt", "w", encoding="utf-8").write(ex["text"] + "\nsecond line ignored\n")
        if ex["audio"] is not None:
            write_wav(stem + ".wav", ex["audio"])
    return root


def test_folder_reads_classes_captions_and_images(tmp_path):
    examples = shapes_examples()
    ds = from_folder(make_folder(str(tmp_path), examples), image_size=16, batch_size=4)
    assert ds.class_names == sorted({ex["label"] for ex in examples})
    features, labels = next(iter(ds))
    assert features["image"].shape == (4, 16, 16, 3) and features["image"].dtype == tf.uint8
    assert features["text"].dtype == tf.string
    got = {(t.decode(), ds.class_names[int(l)]) for f, y in ds for t, l in zip(f["text"].numpy(), y.numpy())}
    assert got == {(ex["text"], ex["label"]) for ex in examples}
    assert len(ds.skipped_records) == 0


def test_folder_caption_targets(tmp_path):
    ds = from_folder(make_folder(str(tmp_path), shapes_examples()), target="text", image_size=16, batch_size=6)
    features, captions = next(iter(ds))
    assert set(features) == {"image"} and captions.dtype == tf.string


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_folder_bad_images(tmp_path, kind):
    root = make_folder(str(tmp_path), shapes_examples())
    bad = os.path.join(root, "circle", "broken.jpg")
    os.makedirs(os.path.dirname(bad), exist_ok=True)
    BAD_IMAGES[kind](bad)
    open(os.path.join(root, "circle", "broken.txt"), "w").write("a broken circle")
    with pytest.raises(BadRecordError, match="broken.jpg"):
        from_folder(root, image_size=16)
    ds = from_folder(root, image_size=16, on_error="skip")
    assert count(ds) == N
    assert [source for source, _ in ds.skipped_records] == [bad]


def test_folder_bad_captions(tmp_path):
    root = make_folder(str(tmp_path), shapes_examples())
    circle = os.path.join(root, "circle")
    os.makedirs(circle, exist_ok=True)
    pixels = shapes_examples(1)[0]["image"]
    for name, caption in (("latin1", b"caf\xe9 circle"), ("empty", b"   \n")):
        write_image(os.path.join(circle, name + ".png"), pixels)
        open(os.path.join(circle, name + ".txt"), "wb").write(caption)
    write_image(os.path.join(circle, "nocaption.png"), pixels)
    with pytest.raises(BadRecordError, match="not valid UTF-8|empty caption|no caption file"):
        from_folder(root, image_size=16)
    ds = from_folder(root, image_size=16, on_error="skip")
    assert count(ds) == N
    reasons = sorted(reason for _, reason in ds.skipped_records)
    assert reasons == ["caption is not valid UTF-8", "empty caption", "no caption file nocaption.txt"]


# --- manifest ----------------------------------------------------------------------

def make_manifest(root, examples, fmt="jsonl", extra_lines=()):
    rows = []
    for i, ex in enumerate(examples):
        write_image(os.path.join(root, f"img{i}.png"), ex["image"])
        rows.append({"image": f"img{i}.png", "text": ex["text"], "label": ex["label"]})
    path = os.path.join(root, f"manifest.{fmt}")
    with open(path, "wb") as f:
        if fmt == "csv":
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=["image", "text", "label"])
            writer.writeheader()
            writer.writerows(rows)
            f.write(text.getvalue().encode())
        else:
            f.write(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
        for line in extra_lines:
            f.write(line + b"\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_manifest_reads_rows(tmp_path, fmt):
    examples = shapes_examples()
    ds = from_manifest(make_manifest(str(tmp_path), examples, fmt), image_size=16, batch_size=4)
    assert ds.class_names == sorted({ex["label"] for ex in examples})
    got = {(t.decode(), ds.class_names[int(l)]) for f, y in ds for t, l in zip(f["text"].numpy(), y.numpy())}
    assert got == {(ex["text"], ex["label"]) for ex in examples}


MANIFEST_BAD_LINES = {
    "jsonl": {
        "malformed JSON": b'{"image": "img0.png", "text": ',
        "not UTF-8": b'{"image": "img0.png", "text": "caf\xe9", "label": "circle"}',
        "empty caption": b'{"image": "img0.png", "text": "  ", "label": "circle"}',
        "missing file": b'{"image": "nope.png", "text": "a circle", "label": "circle"}',
    },
    "csv": {
        "malformed CSV": b'img0.png,"a circle",circle,extra',
        "not UTF-8": b"img0.png,caf\xe9,circle",
        "empty caption": b"img0.png, ,circle",
        "missing file": b"nope.png,a circle,circle",
    },
}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("kind", ["malformed", "not UTF-8", "empty caption", "missing file"])
def test_manifest_bad_lines(tmp_path, fmt, kind):
    lines = MANIFEST_BAD_LINES[fmt]
    line = next(v for k, v in lines.items() if k.startswith(kind))
    path = make_manifest(str(tmp_path), shapes_examples(), fmt, extra_lines=[line])
    with pytest.raises(BadRecordError, match=rf"manifest\.{fmt}:\d+"):
        from_manifest(path, image_size=16)
    ds = from_manifest(path, image_size=16, on_error="skip")
    assert count(ds) == N
    assert len(ds.skipped_records) == 1


def test_manifest_with_audio(tmp_path):
    examples = shapes_examples(with_audio=True)
    path = os.path.join(str(tmp_path), "m.jsonl")
    with open(path, "w") as f:
        for i, ex in enumerate(examples):
            write_image(os.path.join(str(tmp_path), f"{i}.png"), ex["image"])
            write_wav(os.path.join(str(tmp_path), f"{i}.wav"), ex["audio"])
            f.write(json.dumps({"image": f"{i}.png", "audio": f"{i}.wav", "text": ex["text"], "label": ex["label"]}) + "\n")
        f.write(json.dumps({"image": "0.png", "audio": "broken.wav", "text": "x", "label": "circle"}) + "\n")
    open(os.path.join(str(tmp_path), "broken.wav"), "w").write("not a wav")
    with pytest.raises(BadRecordError, match="broken.wav"):
        from_manifest(path, image_size=16, audio_length=4000)
    ds = from_manifest(path, image_size=16, audio_length=4000, on_error="skip", batch_size=3)
    features, _ = next(iter(ds))
    assert features["audio"].shape == (3, 4000)
    assert count(ds) == N


# --- COCO ---------------------------------------------------------------------------

def make_coco(root, examples, extra_annotations=(), captions_per_image=2):
    images, annotations = [], []
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(kerasmm.data.SHAPES)]
    category = {c["name"]: c["id"] for c in categories}
    for i, ex in enumerate(examples):
        write_image(os.path.join(root, f"{i:03d}.jpg"), ex["image"], "JPEG")
        images.append({"id": 100 + i, "file_name": f"{i:03d}.jpg", "category_id": category[ex["label"]]})
        for k in range(captions_per_image):
            annotations.append({"id": len(annotations), "image_id": 100 + i, "caption": f"{ex['text']} #{k}"})
    annotations.extend(extra_annotations)
    path = os.path.join(root, "captions.json")
    text = json.dumps({"images": images, "annotations": annotations, "categories": categories})
    open(path, "wb").write(text.encode().replace(b"CAFE", b"caf\xe9"))
    return path


def test_coco_sample_and_all(tmp_path):
    examples = shapes_examples()
    path = make_coco(str(tmp_path), examples)
    sampled = from_coco(path, str(tmp_path), image_size=16, batch_size=4, seed=1)
    assert count(sampled) == N
    features, captions = next(iter(sampled))
    assert set(features) == {"image"} and captions.dtype == tf.string
    expanded = from_coco(path, str(tmp_path), captions="all", image_size=16, batch_size=4)
    assert count(expanded) == 2 * N
    labelled = from_coco(path, str(tmp_path), target="label", image_size=16, batch_size=N)
    assert labelled.class_names == list(kerasmm.data.SHAPES)
    features, labels = next(iter(labelled))
    assert set(features) == {"image", "text"}
    names = [labelled.class_names[i] for i in labels.numpy()]
    assert sorted(names) == sorted(ex["label"] for ex in examples)


def test_coco_samples_different_captions_across_epochs(tmp_path):
    path = make_coco(str(tmp_path), shapes_examples(2), captions_per_image=8)
    ds = from_coco(path, str(tmp_path), image_size=16, batch_size=2, seed=0)
    epochs = [tuple(next(iter(ds))[1].numpy()) for _ in range(4)]
    assert len(set(epochs)) > 1


COCO_BAD = {
    "image_id with no image": {"id": 900, "image_id": 12345, "caption": "an orphan caption"},
    "empty caption": {"id": 901, "image_id": 100, "caption": ""},
    "not UTF-8": {"id": 902, "image_id": 100, "caption": "a CAFE circle"},
}


@pytest.mark.parametrize("kind", sorted(COCO_BAD))
def test_coco_bad_annotations(tmp_path, kind):
    path = make_coco(str(tmp_path), shapes_examples(), extra_annotations=[COCO_BAD[kind]])
    with pytest.raises(BadRecordError, match=f"annotation {COCO_BAD[kind]['id']}"):
        from_coco(path, str(tmp_path), captions="all", image_size=16)
    ds = from_coco(path, str(tmp_path), captions="all", image_size=16, on_error="skip")
    assert count(ds) == 2 * N
    assert len(ds.skipped_records) == 1


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES) + ["missing file"])
def test_coco_bad_image_files(tmp_path, kind):
    path = make_coco(str(tmp_path), shapes_examples())
    target = os.path.join(str(tmp_path), "000.jpg")
    if kind == "missing file":
        os.remove(target)
    else:
        BAD_IMAGES[kind](target)
    with pytest.raises(BadRecordError, match="000.jpg"):
        from_coco(path, str(tmp_path), image_size=16)
    ds = from_coco(path, str(tmp_path), image_size=16, on_error="skip")
    assert count(ds) == N - 1


def test_malformed_coco_json_is_a_clear_error(tmp_path):
    path = os.path.join(str(tmp_path), "bad.json")
    open(path, "w").write('{"images": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        from_coco(path, str(tmp_path))


# --- pipeline behaviour -----------------------------------------------------------

def test_sharding_by_input_context_splits_the_records(tmp_path):
    path = make_manifest(str(tmp_path), shapes_examples())
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ds = from_manifest(path, image_size=16, batch_size=4, input_context=context)
        seen.append({t.decode() for f, _ in ds for t in f["text"].numpy()})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == N


def test_augmentation_changes_images_only_when_asked(tmp_path):
    path = make_manifest(str(tmp_path), shapes_examples())
    plain = [f["image"].numpy() for f, _ in from_manifest(path, image_size=16, batch_size=N)]
    again = [f["image"].numpy() for f, _ in from_manifest(path, image_size=16, batch_size=N)]
    augmented = [f["image"].numpy() for f, _ in from_manifest(path, image_size=16, batch_size=N, augment=True, seed=1)]
    np.testing.assert_array_equal(plain[0], again[0])
    assert not np.array_equal(plain[0], augmented[0])
    assert augmented[0].dtype == np.uint8 and augmented[0].shape == plain[0].shape


def test_iterator_state_saves_in_a_checkpoint(tmp_path):
    path = make_manifest(str(tmp_path), shapes_examples())
    ds = from_manifest(path, image_size=16, batch_size=2, shuffle=True, seed=0, augment=True)
    iterator = iter(ds)
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    saved = checkpoint.save(os.path.join(str(tmp_path), "ckpt"))
    expected = [t.numpy() for t in next(iterator)[1:]]
    checkpoint.restore(saved)
    np.testing.assert_array_equal(next(iterator)[1].numpy(), expected[0])


def test_readers_feed_a_zoo_classifier(tmp_path):
    examples = shapes_examples()
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", num_classes=4, class_names=list(kerasmm.data.SHAPES))
    folder = make_folder(os.path.join(str(tmp_path), "folder"), examples)
    manifest_dir = os.path.join(str(tmp_path), "manifest")
    coco_dir = os.path.join(str(tmp_path), "coco")
    os.makedirs(manifest_dir)
    os.makedirs(coco_dir)
    datasets = [
        from_folder(folder, image_size=32, batch_size=3),
        from_manifest(make_manifest(manifest_dir, examples), image_size=32, batch_size=3),
        from_coco(make_coco(coco_dir, examples), coco_dir, target="label", image_size=32, batch_size=3),
    ]
    for ds in datasets:
        history = model.fit(ds, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_readers_feed_a_dual_encoder(tmp_path):
    examples = shapes_examples()
    model = kerasmm.zoo.get("tiny_dual_encoder")
    coco_dir = os.path.join(str(tmp_path), "coco")
    os.makedirs(coco_dir)
    datasets = [
        from_coco(make_coco(coco_dir, examples), coco_dir, image_size=32, batch_size=3),  # caption targets
        from_folder(make_folder(os.path.join(str(tmp_path), "folder"), examples), image_size=32, batch_size=3),
    ]
    for ds in datasets:
        history = model.fit(ds, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    logs = model.evaluate(datasets[0], verbose=0, return_dict=True)
    assert 0.0 <= logs["text_to_image_recall@1"] <= 1.0


def test_coco_image_ids_make_every_caption_count_in_retrieval(tmp_path):
    from kerasmm.metrics import paired_retrieval_scores

    examples = shapes_examples(3)
    path = make_coco(str(tmp_path), examples, captions_per_image=2)
    ds = from_coco(path, str(tmp_path), captions="all", target="image_id", image_size=32, batch_size=4)
    ids = np.concatenate([y.numpy() for _, y in ds])
    assert sorted(ids) == [100, 100, 101, 101, 102, 102]
    model = kerasmm.zoo.get("tiny_dual_encoder", retrieval_groups="targets")
    logs = model.evaluate(ds, verbose=0, return_dict=True)
    images = np.concatenate([f["image"].numpy() for f, _ in ds])
    texts = [t.decode() for f, _ in ds for t in f["text"].numpy()]
    expected = paired_retrieval_scores(model.encode_image(images), model.encode_text(texts), groups=ids)
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, abs=1e-5), key
    with pytest.raises(ValueError, match="use captions='all'"):
        from_coco(path, str(tmp_path), target="image_id")


# --- validation_split ------------------------------------------------------------

def image_bytes(ds):
    return sorted(features["image"][i].tobytes() for features, _ in ds.as_numpy_iterator()
                  for i in range(len(features["image"])))


def test_validation_split_holds_out_the_same_images_evenly_and_keeps_an_images_records_together(tmp_path):
    root = make_folder(str(tmp_path / "folder"), shapes_examples(10))
    train, val = from_folder(root, image_size=32, batch_size=4, validation_split=0.2, subset="both", shuffle=True)
    assert count(train) == 8 and count(val) == 2 and train.class_names == val.class_names
    assert not set(image_bytes(train)) & set(image_bytes(val))
    assert image_bytes(from_folder(root, image_size=32, validation_split=0.2, subset="validation")) == image_bytes(val)
    with_training = from_folder(root, image_size=32, validation_split=0.2, subset="training")
    assert image_bytes(with_training) == image_bytes(train)

    # Two rows of one image (two captions): both go to the same side.
    path = make_manifest(str(tmp_path), shapes_examples(5))
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({**r, "text": r["text"] + extra}) + "\n" for r in rows for extra in ("", " again"))
    train, val = from_manifest(path, image_size=32, validation_split=0.2, subset="both")
    assert count(train) == 8 and count(val) == 2 and len(set(image_bytes(val))) == 1


def test_validation_split_refuses_bad_values(tmp_path):
    root = make_folder(str(tmp_path), shapes_examples(4))
    with pytest.raises(ValueError, match="validation_split must be a float between 0 and 1 \\(exclusive\\), got 1.5"):
        from_folder(root, validation_split=1.5, subset="both")
    with pytest.raises(ValueError, match="subset must be one of .*training.*validation.*both.*got 'test'"):
        from_folder(root, validation_split=0.5, subset="test")
    with pytest.raises(ValueError, match="subset must be one of"):
        from_folder(root, validation_split=0.5)
    with pytest.raises(ValueError, match="validation_split=0.1 of 4 records leaves no validation records"):
        from_folder(root, validation_split=0.1, subset="validation")
