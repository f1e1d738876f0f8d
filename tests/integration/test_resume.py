"""A `fit_resumable` process killed with SIGKILL mid-epoch and started again ends as an uninterrupted one."""

import csv
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "resume_fit.py")
EPOCHS, STEPS, SAVE_EVERY = 2, 6, 2


def command(output, *extra):
    return [sys.executable, SCRIPT, str(output), "--epochs", str(EPOCHS), "--steps", str(STEPS),
            "--save-every", str(SAVE_EVERY), *extra]


def start(output, *extra):
    return subprocess.Popen(command(output, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    """Wait for `process` to end; its final JSON report."""
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.splitlines()[-1])


def kill_after(output, step, *extra):
    """Start the command, SIGKILL it once it has finished `step`; the steps it printed."""
    env = {**os.environ, "RESUME_FIT_PAUSE_AT_STEP": str(step)}
    process = subprocess.Popen(command(output, *extra), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    printed = []
    try:
        for line in process.stdout:
            printed.append(line.strip())
            if line.strip() == f"paused at step {step}":
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, printed
    return printed


def saved_steps(output):
    """The steps of the checkpoints listed in the `checkpoint` state file (read as text: no TensorFlow here)."""
    with open(os.path.join(output, "checkpoints", "checkpoint")) as f:
        return [int(step) for step in re.findall(r'^all_model_checkpoint_paths: ".*ckpt-(\d+)"$', f.read(), re.M)]


def weights(output):
    with np.load(os.path.join(output, "weights.npz")) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


@pytest.mark.integration
def test_a_process_killed_twice_mid_epoch_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    uninterrupted = start(tmp_path / "uninterrupted")  # alongside the killed runs, to save time
    run = tmp_path / "killed"
    # Steps 5 and 9 are not on a checkpoint boundary: 4 and 8 are the newest saved.
    assert kill_after(run, 5)[-2:] == ["step 5", "paused at step 5"]
    assert saved_steps(run) == [2, 4]
    printed = kill_after(run, 9)
    assert printed[0] == "step 5"  # resumed after step 4
    assert saved_steps(run) == [4, 6, 8]
    assert finish(start(run)) == {"iterations": EPOCHS * STEPS, "epochs": [1]}
    assert finish(uninterrupted) == {"iterations": EPOCHS * STEPS, "epochs": [0, 1]}

    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(weights(run), weights(tmp_path / "uninterrupted")))
    assert difference <= 1e-6
    with open(run / "log.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]


@pytest.mark.integration
def test_a_shuffled_augmented_folder_resumes_exactly_across_passes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("circle", "square", "triangle"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(5):  # 15 images: passes of 4 batches (the last of 3) that the 6-step epochs cross
            pixels = rng.integers(0, 256, (20 + 3 * i, 28, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{i}.png")
    folder = ("--folder", str(tmp_path / "images"))
    uninterrupted = start(tmp_path / "uninterrupted", *folder)
    run = tmp_path / "killed"
    kill_after(run, 5, *folder)  # mid-pass 2, a step after ckpt-4
    kill_after(run, 9, *folder)  # mid-pass 3
    assert finish(start(run, *folder))["iterations"] == EPOCHS * STEPS
    assert finish(uninterrupted)["iterations"] == EPOCHS * STEPS
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(weights(run), weights(tmp_path / "uninterrupted")))
    assert difference <= 1e-6
