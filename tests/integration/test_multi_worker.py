"""`fit` under MultiWorkerMirroredStrategy: 2 worker processes on localhost (keras-team/keras#20585).

Both workers finish, end with identical weights, and the loss falls, for a
classifier (plain `fit` of a raw dataset) and a dual encoder (whose loss
gathers embeddings over the global batch, across the workers; fed by
`kerasmm.distribute.distribute_dataset`). Each also runs `evaluate`.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "multi_worker_fit.py")
RUNS = ["tiny_weighted_sum_classifier:fit", "tiny_dual_encoder:distribute_dataset"]
TIMEOUT_S = 300


def free_ports(count):
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi_worker")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes, logs = [], [out / f"worker{index}.log" for index in range(2)]
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        with open(logs[index], "w") as log:  # files, not pipes: a full pipe would stall a worker and both hang
            processes.append(subprocess.Popen([sys.executable, SCRIPT, str(out / f"worker{index}"), *RUNS],
                                              env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        # A worker that fails leaves the other waiting in a collective: stop at the first failure.
        while any(p.poll() is None for p in processes) and not any(p.poll() for p in processes):
            if time.monotonic() > deadline:
                pytest.fail(f"the workers did not finish within {TIMEOUT_S} s:\n" + tails(logs))
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    assert [p.returncode for p in processes] == [0, 0], "a worker failed:\n" + tails(logs)
    reports = [json.loads((out / f"worker{i}.json").read_text()) for i in range(2)]
    weights = [dict(np.load(out / f"worker{i}.npz")) for i in range(2)]
    return reports, weights


def tails(logs):
    return "\n".join(f"--- {log.name}:\n{log.read_text()[-2000:]}" for log in logs)


@pytest.mark.integration
def test_both_workers_train_as_one_model(workers):
    reports, weights = workers
    assert [r["replicas"] for r in reports] == [2, 2]
    assert sorted(weights[0]) == sorted(weights[1])
    assert sorted(reports[0]["runs"]) == sorted(reports[1]["runs"]) == sorted(RUNS)
    for key in weights[0]:
        np.testing.assert_allclose(weights[0][key], weights[1][key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.integration
@pytest.mark.parametrize("run", RUNS)
def test_loss_falls_and_workers_agree_on_it(workers, run):
    reports, _ = workers
    mine, other = (r["runs"][run] for r in reports)
    assert np.all(np.isfinite(mine["loss"])) and np.isfinite(mine["evaluate_loss"])
    assert mine["loss"][-1] < mine["loss"][0]
    np.testing.assert_allclose(mine["loss"], other["loss"], rtol=1e-6)  # logs are reduced over the workers
    np.testing.assert_allclose(mine["evaluate_loss"], other["evaluate_loss"], rtol=1e-6)
