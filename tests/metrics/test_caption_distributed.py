"""Caption metrics under MirroredStrategy over 2 logical CPU devices match one device and pycocoevalcap.

Logical devices must be configured before TensorFlow runs its first op, which
the rest of the suite has done long before this test runs, so the strategy
part runs in a fresh interpreter: this file, executed as a script, prints a
JSON report on its last line.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_caption import FIXTURE, TOLERANCE, TOKENS, encode, reference_scores  # noqa: E402

# 13 examples in batches of 4: the last global batch has 1, so one replica gets none.
EXAMPLES = FIXTURE + FIXTURE[:2]
CAPACITY = 8  # per replica: under the strategy 13 examples fit, as each replica keeps its own slots
KEYS = ("bleu_4", "cider_d", "rouge_l")


def make_metrics(capacity=CAPACITY):
    from kerasmm.metrics import Bleu, CiderD, RougeL

    return [Bleu(**TOKENS), CiderD(capacity=capacity, max_length=16, **TOKENS), RougeL(**TOKENS)]


@pytest.mark.slow
def test_mirrored_strategy_matches_a_single_device():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, timeout=300, cwd=REPO, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["replicas"] == 2
    assert report["local_batch_sizes"] == [[2, 2], [2, 2], [2, 2], [1, 0]]
    expected = reference_scores(EXAMPLES)
    for run in ("single", "mirrored", "evaluate"):
        for key in KEYS:
            assert report[run][key] == pytest.approx(expected[key], abs=TOLERANCE[key]), (run, key)
    # Each replica stored its own examples in its own slot range; the read sums the copies.
    assert report["replica_counts"] == [7, 6]
    assert report["replica_slots"] == [[0, 7], [CAPACITY, CAPACITY + 6]]
    assert report["outside_strategy_run_error"]


def main():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    import numpy as np

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    y_true, y_pred = encode(EXAMPLES)
    data = tf.data.Dataset.from_tensor_slices((y_true, y_pred)).batch(4)
    report = {"replicas": strategy.num_replicas_in_sync}

    def scores(metrics):
        return {metric.name: float(metric.result()) for metric in metrics}

    single = make_metrics(capacity=2 * CAPACITY)
    for references, candidates in data:
        for metric in single:
            metric.update_state(references, candidates)
    report["single"] = scores(single)

    with strategy.scope():
        mirrored = make_metrics()

    @tf.function
    def step(references, candidates):
        def update(references, candidates):
            for metric in mirrored:
                metric.update_state(references, candidates)

        strategy.run(update, args=(references, candidates))

    local_sizes = []
    for references, candidates in strategy.experimental_distribute_dataset(data):
        local_sizes.append([int(t.shape[0]) for t in strategy.experimental_local_results(candidates)])
        step(references, candidates)
    report["local_batch_sizes"] = local_sizes
    report["mirrored"] = scores(mirrored)
    cider = mirrored[1]
    report["replica_counts"] = [int(v.numpy()) for v in cider.count.value.values]
    slots = []
    for copy in cider.lengths.value.values:
        used = np.flatnonzero(copy.numpy()[:-1, 1:].any(axis=1))
        slots.append([int(used.min()), int(used.max()) + 1])
    report["replica_slots"] = slots
    try:
        with strategy.scope():
            cider.update_state(y_true[:2], y_pred[:2])
        report["outside_strategy_run_error"] = ""
    except ValueError as error:
        report["outside_strategy_run_error"] = str(error)

    # model.evaluate with a model that updates the metrics in compute_metrics, as a captioner does.
    class Echo(keras.Model):
        """Outputs its input token ids: stands in for a captioner's generated captions."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.caption_metrics = make_metrics()

        def call(self, inputs):
            return inputs

        def compute_loss(self, *args, **kwargs):
            return tf.constant(0.0)

        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            for metric in self.caption_metrics:
                metric.update_state(y, y_pred, sample_weight)
            return super().compute_metrics(x, y, y_pred, sample_weight)

    with strategy.scope():
        model = Echo()
        model.compile()
    logs = model.evaluate(y_pred, y_true, batch_size=4, verbose=0, return_dict=True)
    report["evaluate"] = {key: float(logs[key]) for key in KEYS}
    keras.backend.clear_session()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
