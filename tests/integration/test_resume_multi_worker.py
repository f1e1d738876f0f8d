"""Two `fit_resumable` workers (MultiWorkerMirroredStrategy): one SIGKILLed mid-epoch, the job restarted, ends as an
uninterrupted run.

Worker 1 is killed after a step that is not on a checkpoint boundary; worker 0, left waiting in the step's
collective, is killed too, as a cluster manager restarting the job would. Both are started again with the same
commands (on new ports: the job is its checkpoint directory) and must end after exactly epochs × steps optimizer
updates, with equal weights, those of an uninterrupted run.

The uninterrupted run is one process with 2 CPU replicas (`resume_fit.py --cpu-replicas 2`), not 2 workers: it
splits each global batch into the same 2 halves, draws the same dropout masks and sums the same 2 gradients, and
ends bit for bit with the weights of an uninterrupted 2-worker run (checked when this test was written: difference
0.0) at half the CPU time. A plain single-replica run would not do: its dropout masks differ (0.006 apart; 2e-7
even without dropout, from the summation order).
"""

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "resume_fit.py")
EPOCHS, STEPS, SAVE_EVERY = 2, 3, 2
KILL_AT = 5  # mid-epoch 2, past the newest checkpoint (step 4)
# The smallest model: a bag-of-words text classifier (the head's dropout stays on: its seed is checkpointed too).
OVERRIDES = {"encoders": {"text": {"name": "bow", "output_dim": 8}}, "fusion": {"name": "concat"}, "hidden_dim": 8,
             "sequence_length": 8}
TIMEOUT_S = 300  # per phase: the workers of a phase, or the wait for the step to kill at


def command(output, *extra):
    return [sys.executable, SCRIPT, str(output), "--epochs", str(EPOCHS), "--steps", str(STEPS),
            "--save-every", str(SAVE_EVERY), "--overrides", json.dumps(OVERRIDES), *extra]


def free_ports(count):
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]


class Job:
    """Processes started with their output in files (a full pipe would stall one and hang the collectives)."""

    def __init__(self, logs):
        self.logs = logs
        self.processes = []

    def start(self, name, cmd, **env):
        out, err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True,
                                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                                            **env})
        process.name, process.out, process.err = name, out, err
        self.processes.append(process)
        return process

    def start_workers(self, name, output, pause_at=None):
        """Worker 0 and 1 of a new cluster on localhost; worker 1 pauses after step `pause_at`."""
        cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
        workers = []
        for index in range(2):
            env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            if pause_at is not None and index == 1:
                env["RESUME_FIT_PAUSE_AT_STEP"] = str(pause_at)
            workers.append(self.start(f"{name}-worker{index}", command(output), **env))
        return workers

    def finish(self, processes):
        """Wait for `processes` to end, stopping at the first failure; their final JSON reports."""
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in processes) and not any(p.poll() for p in processes):
            if time.monotonic() > deadline:
                pytest.fail(f"not finished within {TIMEOUT_S} s:\n{self.tails(processes)}")
            time.sleep(0.2)
        assert [p.poll() for p in processes] == [0] * len(processes), "a process failed:\n" + self.tails(processes)
        return [json.loads(p.out.read_text().splitlines()[-1]) for p in processes]

    def wait_for_line(self, process, line, watched):
        """Wait until `process` prints `line`; fail when one of `watched` ends first."""
        deadline = time.monotonic() + TIMEOUT_S
        while line not in process.out.read_text().splitlines():
            if time.monotonic() > deadline or any(p.poll() is not None for p in watched):
                pytest.fail(f"no {line!r} from {process.name}:\n{self.tails(watched)}")
            time.sleep(0.1)

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)

    @staticmethod
    def tails(processes):
        return "\n".join(f"--- {p.name} (exit {p.poll()}):\n{p.out.read_text()[-1000:]}\n{p.err.read_text()[-2000:]}"
                         for p in processes)


def saved_steps(output):
    """The steps of the checkpoints listed in the `checkpoint` state file (read as text: no TensorFlow here)."""
    with open(os.path.join(output, "checkpoints", "checkpoint")) as f:
        return [int(step) for step in re.findall(r'^all_model_checkpoint_paths: ".*ckpt-(\d+)"$', f.read(), re.M)]


def weights(path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(weights(a), weights(b), strict=True))


@pytest.mark.integration
def test_a_job_whose_worker_is_killed_mid_epoch_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    reference, run = tmp_path / "uninterrupted", tmp_path / "killed"
    job = Job(tmp_path)
    try:
        uninterrupted = job.start("ref", command(reference, "--cpu-replicas", "2"))  # alongside, to save time
        worker0, worker1 = job.start_workers("first", run, pause_at=KILL_AT)
        job.wait_for_line(worker1, f"paused at step {KILL_AT}", [worker0, worker1])
        worker1.send_signal(signal.SIGKILL)
        worker1.wait(timeout=60)
        worker0.kill()  # it cannot finish the next step without worker 1
        worker0.wait(timeout=60)
        assert worker1.returncode == -signal.SIGKILL
        assert worker0.returncode != 0, job.tails([worker0])
        assert saved_steps(run) == [2, 3, 4]

        restarted = job.start_workers("second", run)
        assert job.finish(restarted) == [{"iterations": EPOCHS * STEPS, "epochs": [1]}] * 2
        assert job.finish([uninterrupted]) == [{"iterations": EPOCHS * STEPS, "epochs": [0, 1]}]
    finally:
        job.kill_all()

    for worker in restarted:  # both resumed after step 4, the newest checkpoint
        assert [line for line in worker.out.read_text().splitlines() if line.startswith("step ")][0] == "step 5"
    assert difference(run / "weights-worker-0.npz", run / "weights-worker-1.npz") <= 1e-6
    assert difference(run / "weights-worker-0.npz", reference / "weights.npz") <= 1e-6
    for index in range(2):
        with open(run / f"log-worker-{index}.csv") as f:
            assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
