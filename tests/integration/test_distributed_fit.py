"""`fit` under MirroredStrategy on 2 logical CPU devices matches one device, for a tiny zoo entry of each
task (the others differ only in layer choices, each tested on its own; VQA's model is the classifier's)."""

import json
import os
import subprocess
import sys

import pytest

import kerasmm

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_fit.py")


def one_entry_per_task():
    chosen = {}
    for name in kerasmm.zoo.list(include_tiny=True, include_aliases=False):
        if name.startswith("tiny_"):
            task = kerasmm.zoo.entry(name).task
            # A VQA classifier trains as a classifier does, generative VQA as a captioner does.
            chosen.setdefault({"vqa": "classification", "vqa_generation": "captioning"}.get(task, task), name)
    return sorted(chosen.values())


TINY = one_entry_per_task()


@pytest.fixture(scope="module")
def reports():
    result = subprocess.run([sys.executable, SCRIPT, *TINY], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {r["name"]: r for r in lines}


@pytest.mark.integration
@pytest.mark.parametrize("name", TINY)
def test_weights_after_fit_match_a_single_device_run(reports, name):
    report = reports[name]
    assert report["replicas"] == 2
    assert report["max_weight_change"] > 1e-3  # the steps did train
    assert report["max_weight_diff"] <= 1e-5
