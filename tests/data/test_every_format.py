"""Done-when of the data issue: one zoo classifier trains from every format, written by the test."""

import json
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

import kerasmm
from kerasmm.data import tfds as kerasmm_tfds

N = 8


def write_sources(root):
    features, labels = kerasmm.data.shapes_arrays(num_examples=N, image_size=32, seed=5)
    names = kerasmm.data.SHAPES
    os.makedirs(os.path.join(root, "coco", "annotations"))
    os.makedirs(os.path.join(root, "coco", "train"))
    images, annotations, rows = [], [], []
    for i in range(N):
        caption, label = str(features["text"][i]), names[labels[i]]
        folder = os.path.join(root, "folder", label)
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(features["image"][i]).save(os.path.join(folder, f"{i}.png"))
        open(os.path.join(folder, f"{i}.txt"), "w").write(caption)
        Image.fromarray(features["image"][i]).save(os.path.join(root, "coco", "train", f"{i}.jpg"))
        images.append({"id": i, "file_name": f"{i}.jpg", "category_id": int(labels[i])})
        annotations.append({"id": i, "image_id": i, "caption": caption})
        rows.append({"image": os.path.join("folder", label, f"{i}.png"), "text": caption, "label": label})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": k, "name": n} for k, n in enumerate(names)]}
    coco_json = os.path.join(root, "coco", "annotations", "captions_train.json")
    json.dump(coco, open(coco_json, "w"))
    manifest = os.path.join(root, "manifest.jsonl")
    open(manifest, "w").writelines(json.dumps(r) + "\n" for r in rows)
    return coco_json, manifest


def test_one_classifier_trains_from_every_format(tmp_path):
    root = str(tmp_path)
    coco_json, manifest = write_sources(root)
    common = dict(image_size=32, batch_size=4)
    folder = kerasmm.data.from_folder(os.path.join(root, "folder"), **common)
    shards = kerasmm.data.to_tfrecord(folder, os.path.join(root, "shards", "train"), num_shards=2)
    datasets = {
        "coco": kerasmm.data.from_coco(coco_json, os.path.join(root, "coco", "train"), target="label", **common),
        "folder": folder,
        "manifest": kerasmm.data.from_manifest(manifest, **common),
        "tfrecord": kerasmm.data.from_tfrecord(os.path.join(root, "shards", "train-*"), batch_size=4),
        "tfds": kerasmm_tfds.from_tfds(
            "kerasmm_local_coco/labelled", split="train", data_dir=os.path.join(root, "tfds"),
            manual_dir=os.path.join(root, "coco"), target="label", **common),
    }
    assert len(shards) == 2
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    weights = [np.array(w) for w in model.trainable_weights]
    for name, ds in datasets.items():
        features, labels = next(iter(ds))
        assert set(features) == {"image", "text"}, name
        assert features["image"].shape[1:] == (32, 32, 3) and labels.dtype.name == "int32", name
        history = model.fit(ds, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]), name
    assert any(not np.array_equal(a, np.array(b)) for a, b in zip(weights, model.trainable_weights))
    assert tfds.builder("kerasmm_local_coco/labelled", data_dir=os.path.join(root, "tfds")).info.splits["train"].num_examples == N
    # The captioner reads the same batches: captions come from the "text" feature, labels are ignored.
    captioner = kerasmm.zoo.get("tiny_captioner")
    for name, ds in datasets.items():
        history = captioner.fit(ds, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0]), name
    assert len(captioner.generate(next(iter(datasets["coco"]))[0], max_length=6)) == 4
