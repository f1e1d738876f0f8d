"""RetrievalMetrics under MirroredStrategy over 2 logical CPU devices matches one device.

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

import numpy as np
import pytest

from kerasmm.metrics import paired_retrieval_scores

REPO = pathlib.Path(__file__).resolve().parents[2]
ROWS = 13  # batches of 4: the last global batch has 1 row, so one replica gets none
GROUPS = np.array([0, 0, 1, 1, 2, 3, 3, 3, 4, 5, 5, 6, 7])
WEIGHTS = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1], "float32")


def pairs():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(ROWS, 4)).astype("float32")
    texts = images + 0.7 * rng.normal(size=(ROWS, 4)).astype("float32")
    return images, texts


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
    # Each replica saw part of each batch (so the all-gather matters), the last one nothing.
    assert report["local_batch_sizes"] == [[2, 2], [2, 2], [2, 2], [1, 0]]
    images, texts = pairs()
    kept = WEIGHTS > 0
    expected = paired_retrieval_scores(images[kept], texts[kept], GROUPS[kept])
    assert expected["text_to_image_recall@1"] < 1.0
    for run in ("single", "mirrored"):
        assert report[run].keys() == expected.keys()
        for key, value in expected.items():
            assert report[run][key] == pytest.approx(value, abs=1e-5), (run, key)
    # Every replica's copy holds the same global rows; reads take the first.
    assert report["replica_counts"] == [int(kept.sum())] * 2
    assert report["replica_buffers_equal"]
    assert report["naive_replica_counts"] == [7, 4]  # the control without the all-gather: a partial set
    # model.evaluate with the documented compute_metrics pattern, under the strategy.
    assert report["evaluate_single"] == pytest.approx(report["evaluate_mirrored"], abs=1e-5)
    assert report["evaluate_mirrored"] == pytest.approx(report["evaluate_reference"], abs=1e-5)
    assert "embedding_dim" in report["lazy_build_error"]


def main():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras

    from kerasmm.metrics import RetrievalMetrics

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_retrieval import KEYS, tiny_dual_encoder  # the documented compute_metrics pattern

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    images, texts = pairs()
    predictions = {"image_embedding": images, "text_embedding": texts}
    data = tf.data.Dataset.from_tensor_slices((GROUPS, predictions, WEIGHTS)).batch(4)
    report = {"replicas": strategy.num_replicas_in_sync}

    def floats(result):
        return {key: float(value) for key, value in result.items()}

    # One device.
    single = RetrievalMetrics(capacity=16, embedding_dim=4)
    for groups, batch, weights in data:
        single.update_state(groups, batch, weights)
    report["single"] = floats(single.result())

    # Two replicas, each updating with its local slice inside strategy.run.
    with strategy.scope():
        mirrored = RetrievalMetrics(capacity=16, embedding_dim=4)

    @tf.function
    def step(groups, batch, weights):
        strategy.run(mirrored.update_state, args=(groups, batch, weights))

    local_sizes = []
    for groups, batch, weights in strategy.experimental_distribute_dataset(data):
        local_sizes.append([int(t.shape[0]) for t in strategy.experimental_local_results(groups)])
        step(groups, batch, weights)
    report["local_batch_sizes"] = local_sizes
    report["mirrored"] = floats(mirrored.result())
    report["replica_counts"] = [int(v.numpy()) for v in mirrored.count.value.values]
    copies = [v.numpy() for v in mirrored.query_buffer.value.values]
    report["replica_buffers_equal"] = bool(np.array_equal(copies[0], copies[1]))

    # Control: without the all-gather each replica keeps its own slice and the first copy (what a read
    # returns) misses the other replica's rows.
    from kerasmm.metrics import retrieval

    gather = retrieval._replica_context
    retrieval._replica_context = lambda: None
    try:
        with strategy.scope():
            naive = RetrievalMetrics(capacity=16, embedding_dim=4)

        @tf.function
        def naive_step(groups, batch, weights):
            strategy.run(naive.update_state, args=(groups, batch, weights))

        for groups, batch, weights in strategy.experimental_distribute_dataset(data):
            naive_step(groups, batch, weights)
    finally:
        retrieval._replica_context = gather
    report["naive_replica_counts"] = [int(v.numpy()) for v in naive.count.value.values]

    # model.evaluate: one device, then the same weights under the strategy.
    inputs = {"image": images, "text": texts}
    weights = [
        np.eye(4, dtype="float32") if w.ndim == 2 else np.zeros_like(w) for w in tiny_dual_encoder().get_weights()
    ]
    weights[0] = weights[0] + np.float32(0.3)  # a projection that is not the identity
    evaluated = {}
    for name, scope in (("single", None), ("mirrored", strategy)):
        if scope is None:
            model = tiny_dual_encoder(embedding_dim=4)
            model.compile(optimizer="sgd")
        else:
            with scope.scope():
                model = tiny_dual_encoder(embedding_dim=4)
                model.compile(optimizer="sgd")
        model.set_weights(weights)
        logs = model.evaluate(inputs, GROUPS, batch_size=4, verbose=0, return_dict=True)
        evaluated[name] = {key: float(logs[key]) for key in KEYS}
        if scope is None:
            predicted = model.predict(inputs, verbose=0)
    report["evaluate_single"] = evaluated["single"]
    report["evaluate_mirrored"] = evaluated["mirrored"]
    reference = paired_retrieval_scores(predicted["image_embedding"], predicted["text_embedding"], GROUPS)
    report["evaluate_reference"] = {key: float(reference[key]) for key in KEYS}

    # Buffers sized lazily cannot be created inside the replicas.
    with strategy.scope():
        lazy = RetrievalMetrics(capacity=16)
    try:
        strategy.run(tf.function(lazy.update_state), args=(None, predictions))
        report["lazy_build_error"] = ""
    except ValueError as error:
        report["lazy_build_error"] = str(error)
    keras.backend.clear_session()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
