"""`kerasmm train` and `kerasmm eval` on a tiny recipe: outputs, exactly-once resume, held-out metrics."""

import glob
import json
import os

import keras
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.cli import main

RECIPE = "tiny_weighted_sum_classifier"  # 16 examples, batch 8: 2 steps an epoch
STEPS_PER_EPOCH = 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch run of the tiny recipe."""
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(["train", RECIPE, "--out", str(out), "--verbose", "0"]) == 0
    keras.backend.clear_session()
    return out


def optimizer_steps(out):
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    return int(model.optimizer.iterations)


def test_train_writes_the_run_folder(run_dir):
    assert sorted(os.listdir(run_dir)) == [".lock", "checkpoints", "history.json", "logs", "model.keras",
                                           "recipe.json", "training.csv"]
    assert glob.glob(str(run_dir / "checkpoints" / "ckpt-2.index"))
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epoch"] == [1] and set(history) == {"epoch", "loss", "accuracy"}
    settings = json.loads((run_dir / "recipe.json").read_text())
    assert settings["entry"] == RECIPE and settings["train"]["epochs"] == 1
    assert settings["data"] == {"reader": "shapes", "task": "classification", "num_examples": 16}
    events = glob.glob(str(run_dir / "logs" / "train" / "events.out.tfevents.*"))
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(events[0]) for value in event.summary.value}
    assert {"epoch_loss", "epoch_accuracy"} <= tags  # keras.callbacks.TensorBoard's scalars
    assert optimizer_steps(run_dir) == STEPS_PER_EPOCH


def test_running_again_does_no_extra_steps_and_more_epochs_resume(run_dir, capsys):
    history = (run_dir / "history.json").read_text()
    assert main(["train", RECIPE, "--out", str(run_dir), "--verbose", "2"]) == 0
    assert "is complete: step 2 of 2" in capsys.readouterr().out
    assert (run_dir / "history.json").read_text() == history
    assert optimizer_steps(run_dir) == STEPS_PER_EPOCH

    assert main(["train", RECIPE, "--out", str(run_dir), "--verbose", "2", "--set", "epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "Resuming from" in out and "at step 2 of 4" in out
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]
    assert optimizer_steps(run_dir) == 2 * STEPS_PER_EPOCH


def test_other_settings_recipe_or_data_in_the_same_folder_are_refused(run_dir, tmp_path, capsys):
    assert main(["train", RECIPE, "--out", str(run_dir), "--set", "batch_size=4"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size differ" in err and "new --out" in err
    assert main(["train", "tiny_concat_classifier", "--out", str(run_dir)]) == 2
    assert "(entry differ)" in capsys.readouterr().err
    (tmp_path / "images" / "circle").mkdir(parents=True)
    assert main(["train", RECIPE, "--out", str(run_dir), "--data", f"folder:{tmp_path / 'images'}"]) == 2
    assert "(data differ)" in capsys.readouterr().err


def test_eval_prints_held_out_metrics_as_json(run_dir, capsys):
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(metrics) == {"loss", "accuracy"} and 0 <= metrics["accuracy"] <= 1
    # A recipe name and --model score the same model on the recipe's held-out data, settings applied.
    assert main(["eval", RECIPE, "--model", str(run_dir / "model.keras"), "--set", "held_out_examples=4"]) == 0
    assert set(json.loads(capsys.readouterr().out.splitlines()[-1])) == {"loss", "accuracy"}


def test_train_on_user_data_needs_eval_data(tmp_path, capsys):
    """--data folder:DIR trains on a user's images; eval then wants --data too."""
    from PIL import Image

    features, labels = kerasmm.data.shapes_arrays(num_examples=8, image_size=32)
    for i, (image, label) in enumerate(zip(features["image"], labels)):
        folder = tmp_path / "photos" / kerasmm.data.label_names("classification")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    out = tmp_path / "run"
    status = main(["train", "tiny_weighted_sum_classifier", "--out", str(out), "--verbose", "0", "--data",
                   f"folder:{tmp_path / 'photos'}", "--set", "model.encoders.text=None"])
    assert status == 0, capsys.readouterr().err
    assert main(["eval", str(out)]) == 2
    assert "give it with --data" in capsys.readouterr().err
    assert main(["eval", str(out), "--data", f"folder:{tmp_path / 'photos'}"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.splitlines()[-1])
