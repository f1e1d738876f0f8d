"""`kerasmm train` validation: --val-fraction of --data (kept as the held-out set), --patience, bad options."""

import dataclasses
import json

import numpy as np
import pytest

import kerasmm
from kerasmm import recipes
from kerasmm.cli import main


def test_val_fraction_splits_the_data_the_same_way_every_time():
    recipe = recipes.load("tiny_captioner").with_settings(["examples=10", "batch_size=4"])
    recipe = dataclasses.replace(recipe, held_out=None).with_settings(["val_fraction=0.3"])

    def images(section, shuffle=False):
        dataset = recipe.dataset(section, shuffle=shuffle)
        return [bytes(image) for x, _ in dataset for image in x["image"].numpy()], int(dataset.cardinality())

    train, train_batches = images("data", shuffle=True)
    held_out, held_out_batches = images("held_out")
    assert len(held_out) == 3 and len(train) == 7 and (train_batches, held_out_batches) == (2, 1)
    assert not set(train) & set(held_out)
    assert images("held_out")[0] == held_out and sorted(images("data")[0]) == sorted(train)


@pytest.fixture
def photos(tmp_path):
    from PIL import Image

    features, labels = kerasmm.data.shapes_arrays(num_examples=12, image_size=32)
    for i, (image, label) in enumerate(zip(features["image"], labels)):
        folder = tmp_path / "photos" / kerasmm.data.label_names("classification")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return tmp_path / "photos"


def test_val_fraction_keeps_the_held_out_set_and_patience_stops_early(photos, tmp_path, capsys):
    out = tmp_path / "run"
    # A learning rate of 0 leaves val_loss as it is: no improvement, so patience 1 stops after epoch 2.
    command = ["train", "tiny_weighted_sum_classifier", "--out", str(out), "--verbose", "0", "--data",
               f"folder:{photos}", "--val-fraction", "0.25", "--patience", "1", "--set", "model.encoders.text=None",
               "--set", "learning_rate=0.0", "--set", "epochs=4", "--set", "batch_size=4"]
    assert main(command) == 0, capsys.readouterr().err
    assert "Stopped early after epoch 2" in capsys.readouterr().out
    settings = json.loads((out / "recipe.json").read_text())
    assert settings["train"]["val_fraction"] == 0.25 and settings["train"]["validate"] is True
    assert settings["held_out"] is None and settings["data"]["reader"] == "folder"
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2] and "val_loss" in history
    assert json.loads((out / "early_stopping.json").read_text())["best_epoch"] == 1

    assert main(command) == 0  # a run that stopped early is finished
    assert "stopped early after epoch 2" in capsys.readouterr().out
    # eval scores the held-out quarter of the data without being told the data again.
    assert main(["eval", str(out)]) == 0, capsys.readouterr().err
    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert np.isclose(metrics["loss"], history["val_loss"][0], rtol=1e-4)


@pytest.mark.parametrize("options, message", [
    (["--precision", "float8"], "Unknown precision 'float8'; valid: float32, mixed_float16, mixed_bfloat16."),
    (["--strategy", "cluster"], "Unknown strategy 'cluster'; valid: auto, default, mirrored, multi_worker, tpu."),
    (["--val-fraction", "1.5", "--data", "shapes"], "--val-fraction must be between 0 and 1 (exclusive), got 1.5."),
    (["--val-fraction", "0", "--data", "shapes"], "--val-fraction must be between 0 and 1 (exclusive), got 0."),
    (["--val-fraction", "0.2"], "--val-fraction holds out part of --data: give --data SPEC too"),
    (["--patience", "2"], "patience (early stopping) needs a validation set"),
    (["--strategy", "tpu"], "--strategy tpu: no TPU is configured on this machine"),
    (["--strategy", "multi_worker"], "--strategy multi_worker: needs a cluster: set TF_CONFIG"),
])
def test_bad_training_options_are_one_line_errors(options, message, tmp_path, capsys, monkeypatch):
    for name in ("TF_CONFIG", "TPU_NAME", "COLAB_TPU_ADDR", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    assert main(["train", "tiny_weighted_sum_classifier", "--out", str(tmp_path / "run"), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kerasmm train: error: " + message) and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "checkpoints").exists()
