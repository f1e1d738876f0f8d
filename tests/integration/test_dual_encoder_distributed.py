"""Contrastive training over the global batch: 2 logical CPU devices match one device (≤ 1e-5)."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_dual_encoder.py")


@pytest.mark.integration
@pytest.mark.parametrize("name", ["tiny_dual_encoder", "tiny_siglip_dual_encoder"])
def test_global_batch_loss_and_gradients_match_a_single_device(name):
    result = subprocess.run([sys.executable, SCRIPT, name], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert abs(report["loss_single"] - report["loss_mirrored"]) <= 1e-5
    assert report["max_grad_diff"] <= 1e-5
    assert report["max_weight_diff_after_fit"] <= 1e-5
    assert report["grad_norm"] > 0
