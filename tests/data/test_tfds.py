"""`kerasmm.data.tfds`: the `kerasmm_local_coco` builder and `from_tfds`, all offline."""

import io
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from kerasmm import testing
from kerasmm.data import errors
from kerasmm.data import tfds as ktfds
from kerasmm.data.shapes_data import SHAPES, shapes_arrays

NUM_TRAIN, NUM_VAL = 12, 4


# ---------------------------------------------------------------- offline guard


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    """Any network access, GCS lookup or TFDS download fails the test."""

    with testing.offline_tfds(tmp_path_factory.mktemp("tfds_default")):
        yield


# ------------------------------------------------------------------ test data


def encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def captions_of(i, caption):
    texts = [caption, f"picture {i} shows {caption}"]
    return texts + [f"image number {i}"] if i % 3 == 0 else texts


def write_split(root, stem, split, num_examples):
    """`num_examples` shapes scenes as files + a COCO json with categories; returns (images, captions, labels)."""
    features, captions = shapes_arrays(num_examples=num_examples, task="captioning", split=split, seed=0)
    _, labels = shapes_arrays(num_examples=num_examples, task="classification", split=split, seed=0)
    images = features["image"]
    os.makedirs(os.path.join(root, stem), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    entries, annotations, texts = [], [], []
    for i in range(num_examples):
        fmt, ext = ("JPEG", "jpg") if i % 4 == 3 else ("PNG", "png")
        name = f"{i:03d}.{ext}"
        with open(os.path.join(root, stem, name), "wb") as f:
            f.write(encode(images[i], fmt))
        # Category ids 10.. (not 0..) so the ClassLabel mapping is exercised.
        entries.append({"id": 100 + i, "file_name": name, "category_id": 10 + int(labels[i])})
        texts.append(captions_of(i, str(captions[i])))
        annotations += [{"id": len(annotations), "image_id": 100 + i, "caption": t} for t in texts[-1]]
    data = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": 10 + k, "name": name} for k, name in enumerate(SHAPES)],
    }
    with open(os.path.join(root, "annotations", f"captions_{stem}.json"), "w") as f:
        json.dump(data, f)
    return images, texts, labels


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("manual"))
    return {
        "root": root,
        "train": write_split(root, "train", "train", NUM_TRAIN),
        "validation": write_split(root, "val", "validation", NUM_VAL),
    }


@pytest.fixture(scope="module")
def data_dir(coco, tmp_path_factory):
    """Both configs prepared offline: "captions" through tfds.load, "labelled" through from_tfds."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    config = tfds.download.DownloadConfig(manual_dir=coco["root"], try_download_gcs=False)
    tfds.load("kerasmm_local_coco", split="train", data_dir=data_dir, try_gcs=False,
              download_and_prepare_kwargs={"download_config": config})
    ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=data_dir, manual_dir=coco["root"])
    return data_dir


def nearest(image, originals):
    """Index of the original picture closest to `image` (PNGs match exactly, JPEGs nearly)."""
    distances = np.abs(originals.astype(int) - image.astype(int)).mean(axis=(1, 2, 3))
    closest, runner_up = np.argsort(distances)[:2]
    assert distances[closest] < 0.5 * distances[runner_up], distances
    return int(closest)


def examples(ds):
    """Unbatched `(features, target)` numpy pairs and the batch sizes."""
    out, sizes = [], []
    for features, targets in ds:
        sizes.append(int(targets.shape[0]))
        for i in range(sizes[-1]):
            out.append(({k: v[i].numpy() for k, v in features.items()}, targets[i].numpy()))
    return out, sizes


# ---------------------------------------------------------------------- tests


def test_tfds_load_reads_prepared_local_coco_offline(coco, data_dir):
    ds, info = tfds.load("kerasmm_local_coco", split="train", data_dir=data_dir, download=False, with_info=True)
    assert info.splits["train"].num_examples == NUM_TRAIN
    assert info.splits["validation"].num_examples == NUM_VAL
    assert set(info.features.keys()) == {"image", "captions", "image_id"}
    images, texts, _ = coco["train"]
    seen = set()
    for example in ds:
        i = int(example["image_id"]) - 100
        seen.add(i)
        assert [c.decode() for c in example["captions"].numpy()] == texts[i]
        assert example["image"].shape == (32, 32, 3)
        assert nearest(example["image"].numpy(), images) == i
    assert seen == set(range(NUM_TRAIN))
    # The image is stored as the file's own bytes (JPEG stays JPEG).
    raw = tfds.load("kerasmm_local_coco", split="train", data_dir=data_dir, download=False,
                    decoders={"image": tfds.decode.SkipDecoding()})
    stored = {int(e["image_id"]) - 100: e["image"].numpy() for e in raw}
    with open(os.path.join(coco["root"], "train", "003.jpg"), "rb") as f:
        assert stored[3] == f.read()


def test_from_tfds_text_target(coco, data_dir):
    ds = ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, target="text", batch_size=5, image_size=32)
    spec_features, spec_targets = ds.element_spec
    assert set(spec_features) == {"image"} and spec_targets.dtype == tf.string
    pairs, sizes = examples(ds)
    assert sizes == [5, 5, 2]
    images, texts, _ = coco["train"]
    indices = [nearest(f["image"], images) for f, _ in pairs]
    assert sorted(indices) == list(range(NUM_TRAIN))
    for (features, caption), i in zip(pairs, indices):
        assert features["image"].dtype == np.uint8 and features["image"].shape == (32, 32, 3)
        assert caption.decode() in texts[i]
    assert ds.class_names is None and len(ds.skipped_records) == 0

    val = ktfds.from_tfds("kerasmm_local_coco", split="validation", data_dir=data_dir, batch_size=8,
                          image_size=(16, 24), aspect_policy="pad")
    (features, captions), = list(val)
    assert features["image"].shape == (NUM_VAL, 16, 24, 3) and captions.shape == (NUM_VAL,)


def test_from_tfds_label_target(coco, data_dir):
    ds = ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=data_dir, target="label", batch_size=4,
                         image_size=32)
    assert ds.class_names == list(SHAPES)
    pairs, sizes = examples(ds)
    assert sizes == [4, 4, 4]
    images, texts, labels = coco["train"]
    for features, label in pairs:
        assert set(features) == {"image", "text"} and label.dtype == np.int32
        i = nearest(features["image"], images)
        assert label == labels[i] and features["text"].decode() in texts[i]


def test_captions_all_expands_every_pair(coco, data_dir):
    ds = ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, captions="all", batch_size=7, image_size=32)
    pairs, _ = examples(ds)
    images, texts, _ = coco["train"]
    got = sorted((nearest(f["image"], images), c.decode()) for f, c in pairs)
    assert got == sorted((i, t) for i in range(NUM_TRAIN) for t in texts[i])


def test_caption_sampling_is_seeded_fresh_each_epoch_and_checkpointable(coco, data_dir, tmp_path):
    def make(shuffle):
        return ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, batch_size=4, image_size=32,
                               shuffle=shuffle, seed=3)

    def epoch(ds):
        return [(nearest(image, coco["train"][0]), caption)
                for features, captions in ds for image, caption in zip(features["image"].numpy(), captions.numpy())]

    ds = make(shuffle=False)
    epochs = [epoch(ds) for _ in range(3)]
    assert [i for i, _ in epochs[0]] == [i for i, _ in epochs[1]]  # same order without shuffling...
    assert epochs[0] != epochs[1] != epochs[2]  # ...but captions drawn afresh each epoch
    assert epochs[0] == epoch(make(shuffle=False))  # same seed, same draws
    shuffled = make(shuffle=True)
    assert [i for i, _ in epoch(shuffled)] != [i for i, _ in epoch(shuffled)]  # reshuffled each epoch

    iterator = iter(make(shuffle=True))
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    expected = [next(iterator)[1].numpy() for _ in range(2)]
    checkpoint.restore(path)
    for want in expected:
        np.testing.assert_array_equal(next(iterator)[1].numpy(), want)


def test_second_call_reuses_prepared_data(coco, data_dir, monkeypatch):
    def no_rebuild(*args, **kwargs):
        raise AssertionError("the prepared dataset was rebuilt")

    monkeypatch.setattr(ktfds.LocalCocoCaptions, "_split_generators", no_rebuild)
    ds = ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=data_dir, manual_dir=coco["root"], batch_size=12,
                         image_size=8)
    assert next(iter(ds))[1].shape == (12,)


def test_input_context_gives_each_worker_its_own_examples(coco, data_dir):
    images = coco["train"][0]
    shards = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ds = ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, batch_size=8, image_size=32,
                             input_context=context)
        pairs, sizes = examples(ds)
        assert max(sizes) == 4  # per-replica batch
        shards.append({nearest(f["image"], images) for f, _ in pairs})
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(NUM_TRAIN))


# A generic image-classification dataset (greyscale) and a coco_captions-like one, built offline.


class KerasmmTinyDigits(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see LocalCocoCaptions.code_path

    def _info(self):
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(6, 5, 1)),
            "label": tfds.features.ClassLabel(names=["zero", "one", "two"]),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(9):
            yield i, {"image": np.full((6, 5, 1), 20 * i, np.uint8), "label": i % 3}


class KerasmmTinyCocoLike(tfds.core.GeneratorBasedBuilder):
    """The `coco_captions` layout: captions as a Sequence of {"id", "text"}."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see LocalCocoCaptions.code_path

    def _info(self):
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "image/id": np.int64,
            "captions": tfds.features.Sequence({"id": np.int64, "text": tfds.features.Text()}),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        texts = [["zero a", "zero b"], ["one a", "  "], ["two a"]]
        for i, captions in enumerate(texts):
            yield i, {"image": np.full((4, 6, 3), 40 * i, np.uint8), "image/id": i,
                      "captions": [{"id": j, "text": t} for j, t in enumerate(captions)]}


class KerasmmTinyTextOnly(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see LocalCocoCaptions.code_path

    def _info(self):
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {"text": "hello", "label": 1}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tiny"))
    config = tfds.download.DownloadConfig(try_download_gcs=False)
    # Three files for the digits, so TFDS can give each of two workers its own files.
    KerasmmTinyDigits(data_dir=data_dir).download_and_prepare(download_config=config.replace(num_shards=3))
    KerasmmTinyCocoLike(data_dir=data_dir).download_and_prepare(download_config=config)
    return data_dir


def test_generic_image_label_dataset(tiny_dir):
    ds = ktfds.from_tfds("kerasmm_tiny_digits", data_dir=tiny_dir, batch_size=9, image_size=4)
    assert ds.class_names == ["zero", "one", "two"]
    (features, labels), = list(ds)
    assert set(features) == {"image"} and features["image"].shape == (9, 4, 4, 3)
    images = features["image"].numpy()
    for image, label in zip(images, labels.numpy()):
        value = image[0, 0, 0]
        np.testing.assert_array_equal(image, value)  # greyscale repeated over RGB
        assert label == (value // 20) % 3
    with pytest.raises(ValueError, match="needs captions"):
        ktfds.from_tfds("kerasmm_tiny_digits", data_dir=tiny_dir, target="text")


def test_input_context_uses_tfds_file_sharding_when_there_are_enough_files(tiny_dir):
    builder = tfds.builder("kerasmm_tiny_digits", data_dir=tiny_dir)
    assert builder.info.splits["train"].num_shards == 3
    shards = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        read_config, shard_examples = ktfds._read_config(builder, "train", False, None, context)
        assert read_config.input_context is context and not shard_examples
        ds = ktfds.from_tfds("kerasmm_tiny_digits", data_dir=tiny_dir, batch_size=18, image_size=2,
                             input_context=context)
        shards.append([int(image[0, 0, 0]) // 20 for features, _ in ds for image in features["image"].numpy()])
    assert len(shards[0]) + len(shards[1]) == 9 and set(shards[0]) | set(shards[1]) == set(range(9))
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])


def test_coco_captions_layout_and_read_time_bad_captions(tiny_dir):
    ds = ktfds.from_tfds("kerasmm_tiny_coco_like", data_dir=tiny_dir, captions="all", batch_size=10,
                         image_size=4, on_error="skip")
    (features, captions), = list(ds)
    got = sorted((int(image[0, 0, 0]) // 40, c.decode()) for image, c in zip(features["image"].numpy(),
                                                                          captions.numpy()))
    assert got == [(0, "zero a"), (0, "zero b"), (1, "one a"), (2, "two a")]
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty caption"):
        list(ktfds.from_tfds("kerasmm_tiny_coco_like", data_dir=tiny_dir, batch_size=10, image_size=4))
    with pytest.raises(ValueError, match="needs labels"):
        ktfds.from_tfds("kerasmm_tiny_coco_like", data_dir=tiny_dir, target="label")


def test_unsupported_layout_lists_the_supported_ones(tiny_dir):
    with pytest.raises(ValueError, match="Supported layouts") as raised:
        ktfds.from_tfds("kerasmm_tiny_text_only", data_dir=tiny_dir)
    for layout in ktfds.SUPPORTED_LAYOUTS:
        assert layout in str(raised.value)


def test_unknown_or_unprepared_dataset_errors_without_downloading(tmp_path):
    empty = str(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dataset 'kerasmm_no_such_dataset'"):
        ktfds.from_tfds("kerasmm_no_such_dataset", data_dir=empty)
    with pytest.raises(ValueError, match="not prepared.*manual_dir"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=empty)
    with pytest.raises(ValueError, match="not prepared.*never downloads"):
        ktfds.from_tfds("kerasmm_tiny_digits", data_dir=empty)
    with pytest.raises(ValueError, match="manual_dir is only for"):
        ktfds.from_tfds("kerasmm_tiny_digits", data_dir=empty, manual_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no caption annotations"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=empty, manual_dir=str(tmp_path))
    assert not os.path.exists(empty) or not any(files for _, _, files in os.walk(empty))


def write_bad_manual_dir(root):
    """6 good images plus 5 bad records: no such image, empty and non-UTF-8 captions, missing and truncated files."""
    features, captions = shapes_arrays(num_examples=8, task="captioning", seed=1)
    os.makedirs(os.path.join(root, "train"))
    os.makedirs(os.path.join(root, "annotations"))
    images, annotations = [], []
    for i in range(8):
        name = f"{i}.png"
        images.append({"id": i, "file_name": name})
        annotations.append({"id": i, "image_id": i, "caption": str(captions[i])})
        data = encode(features["image"][i], "PNG")
        if i == 6:
            continue  # missing file
        with open(os.path.join(root, "train", name), "wb") as f:
            f.write(data[: len(data) // 2] if i == 7 else data)  # 7: truncated
    annotations += [
        {"id": 100, "image_id": 999, "caption": "an orphan caption"},
        {"id": 101, "image_id": 0, "caption": "   "},
        {"id": 102, "image_id": 1, "caption": "NOT_UTF8"},
    ]
    text = json.dumps({"images": images, "annotations": annotations}).encode()
    with open(os.path.join(root, "annotations", "captions_train.json"), "wb") as f:
        f.write(text.replace(b"NOT_UTF8", b"caf\xe9 \xff"))


def test_bad_records_raise_by_default_and_skip_when_asked(tmp_path, caplog):
    manual = str(tmp_path / "bad")
    write_bad_manual_dir(manual)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(errors.BadRecordError, match="image_id 999 has no image"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, manual_dir=manual)
    assert not tfds.builder("kerasmm_local_coco", data_dir=data_dir).is_prepared()  # nothing half-prepared

    with caplog.at_level(logging.WARNING, logger="kerasmm.data"):
        ds = ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, manual_dir=manual, on_error="skip",
                             batch_size=16, image_size=8)
    assert "skipped 5 bad record(s)" in caplog.text
    reasons = sorted(reason for _, reason in ds.skipped_records)
    assert len(reasons) == 5
    for expected in ("empty caption", "caption is not valid UTF-8", "image_id 999 has no image",
                     "file not found", "truncated PNG"):
        assert any(expected in r for r in reasons), (expected, reasons)
    (_, captions), = list(ds)
    assert captions.shape == (6,)
    # Reused prepared data still reports what was skipped when it was prepared.
    again = ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, on_error="skip")
    assert len(again.skipped_records) == 5


def test_nothing_usable_raises(tmp_path):
    manual = str(tmp_path / "bad")
    write_bad_manual_dir(manual)
    for name in os.listdir(os.path.join(manual, "train")):
        os.remove(os.path.join(manual, "train", name))
    with pytest.raises(ValueError, match="no usable records"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=str(tmp_path / "tfds"), manual_dir=manual, on_error="skip")


def test_labelled_config_needs_category_ids(tmp_path):
    manual = str(tmp_path / "bad")
    write_bad_manual_dir(manual)  # no category_id anywhere
    with pytest.raises(ValueError, match="use the 'captions' config"):
        ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=str(tmp_path / "tfds"), manual_dir=manual,
                        on_error="skip")


def write_labelled_manual_dir(root, fields=None, categories=None):
    """4 labelled images (category ids 10, 11); `fields` maps an image index to values replacing its entry's."""
    features, captions = shapes_arrays(num_examples=4, task="captioning", seed=2)
    os.makedirs(os.path.join(root, "train"))
    os.makedirs(os.path.join(root, "annotations"))
    images, annotations = [], []
    for i in range(4):
        with open(os.path.join(root, "train", f"{i}.png"), "wb") as f:
            f.write(encode(features["image"][i], "PNG"))
        images.append({"id": i, "file_name": f"{i}.png", "category_id": 10 + i % 2, **(fields or {}).get(i, {})})
        annotations.append({"id": i, "image_id": i, "caption": str(captions[i])})
    annotations.append({"id": 9, "image_id": [0], "caption": "a caption for a list"})
    data = {"images": images, "annotations": annotations,
            "categories": categories or [{"id": 10, "name": "ten"}, {"id": 11, "name": "eleven"}]}
    with open(os.path.join(root, "annotations", "captions_train.json"), "w") as f:
        json.dump(data, f)


def test_ids_and_file_names_of_the_wrong_type_are_bad_records(tmp_path):
    # A list or object category_id once crashed preparing with "TypeError: unhashable type".
    manual = str(tmp_path / "manual")
    write_labelled_manual_dir(manual, {1: {"category_id": [10]}, 2: {"category_id": {"id": 11}}})
    json_path = os.path.join(manual, "annotations", "captions_train.json")
    with pytest.raises(errors.BadRecordError, match=r"images\[1\]: category_id must be an integer or a string, "
                                                    r"got \[10\]") as raised:
        ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=str(tmp_path / "tfds"), manual_dir=manual)
    assert json_path in str(raised.value)

    ds = ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=str(tmp_path / "tfds_skip"), manual_dir=manual,
                         on_error="skip", target="label", batch_size=8, image_size=8)
    skipped = sorted(ds.skipped_records)
    assert skipped == [
        (f"{json_path}: annotation 1", "image_id 1 has no image"),
        (f"{json_path}: annotation 2", "image_id 2 has no image"),
        (f"{json_path}: annotation 9", "image_id [0] has no image"),
        (f"{json_path}: images[1]", "category_id must be an integer or a string, got [10]"),
        (f"{json_path}: images[2]", "category_id must be an integer or a string, got {'id': 11}"),
    ]
    (_, labels), = list(ds)
    assert sorted(labels.numpy().tolist()) == [0, 1]  # images 0 and 3: categories 10 and 11

    manual = str(tmp_path / "file_name")
    write_labelled_manual_dir(manual, {3: {"file_name": ["3.png"]}})
    with pytest.raises(errors.BadRecordError, match=r"images\[3\]: file_name must be a non-empty string"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=str(tmp_path / "tfds_file_name"), manual_dir=manual)


def test_a_category_with_an_id_of_the_wrong_type_is_an_error_whatever_on_error(tmp_path):
    manual = str(tmp_path / "manual")
    write_labelled_manual_dir(manual, categories=[{"id": 10, "name": "ten"}, {"id": [11], "name": "eleven"}])
    with pytest.raises(ValueError, match=r"captions_train.json: categories\[1\] needs an integer or string 'id', "
                                         r"got \[11\]"):
        ktfds.from_tfds("kerasmm_local_coco/labelled", data_dir=str(tmp_path / "tfds"), manual_dir=manual,
                        on_error="skip")


def test_argument_errors(data_dir):
    with pytest.raises(ValueError, match="captions must be one of"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, captions="every")
    with pytest.raises(ValueError, match="on_error must be one of"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, on_error="ignore")
    with pytest.raises(ValueError, match="needs labels"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, target="label")
    with pytest.raises(ValueError, match="aspect policy"):
        ktfds.from_tfds("kerasmm_local_coco", data_dir=data_dir, aspect_policy="squash")
