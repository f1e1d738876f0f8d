"""A zoo recipe's tiny twin for each of three tasks, trained by `kerasmm train` in real processes SIGKILLed mid-epoch and at an
epoch's end, then run again with the same --out, ends with the weights and step count of an uninterrupted run."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from kerasmm import recipes, zoo

SCRIPT = os.path.join(os.path.dirname(__file__), "kill_train.py")
# 4 steps an epoch, 2 epochs; checkpoints at steps 2, 4 (epoch end), 6 and 8 (epoch end).
SETTINGS = ["examples=32", "batch_size=8", "epochs=2", "save_every=2", "seed=3"]
KILLS = (
    {"KILL_BEFORE_STEP": "4"},  # mid-epoch 1: step 3 ran and was not saved; resume from ckpt-2
    {"KILL_AT_EPOCH_END": "2"},  # epoch 2's last step ran, its checkpoint not yet written; resume from ckpt-6
)


def train(recipe, out, kill=None):
    command = [sys.executable, SCRIPT, "train", recipe, "--out", str(out), "--verbose", "0"]
    for setting in SETTINGS:
        command += ["--set", setting]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(kill or {})}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait(process, expect):
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == expect, stderr[-3000:]


def final_weights(out):
    import keras

    import kerasmm  # noqa: F401  (registers the classes)

    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    return int(model.optimizer.iterations.numpy()), model.get_weights()


# One task of each family that trains on its own kind of batch (labels, captions, caption pairs); the other
# recipes go through the same fit loop and checkpointing, differing only in model classes and layer choices,
# which resuming does not look at.
TASKS = ("classification", "captioning", "retrieval")


def one_recipe_per_task():
    chosen = {}
    for name in recipes.names():
        entry = zoo.entry(name)
        if entry.alias_of is None and entry.task in TASKS:
            chosen.setdefault(entry.task, zoo.TINY_PREFIX + name)
    return sorted(chosen.values())


@pytest.mark.integration
@pytest.mark.parametrize("recipe", one_recipe_per_task())
def test_killed_and_resumed_training_ends_as_an_uninterrupted_run(recipe, tmp_path):
    uninterrupted = train(recipe, tmp_path / "uninterrupted")  # beside the killed runs: two cores
    for kill in KILLS:
        wait(train(recipe, tmp_path / "killed", kill), -signal.SIGKILL)
    wait(train(recipe, tmp_path / "killed"), 0)
    wait(uninterrupted, 0)

    steps, weights = final_weights(tmp_path / "killed")
    expected_steps, expected = final_weights(tmp_path / "uninterrupted")
    assert steps == expected_steps == 8
    assert len(weights) == len(expected)
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(weights, expected)) <= 1e-6
