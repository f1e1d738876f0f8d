import json

import pytest
import tensorflow as tf

import kerasmm
from kerasmm.distribute import cluster_spec, get_strategy


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch):
    for name in ("TF_CONFIG", "TPU_NAME", "COLAB_TPU_ADDR", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)


def test_auto_on_a_single_cpu_machine_is_the_default_strategy():
    strategy = get_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_over_named_devices():
    strategy = get_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    with strategy.scope():
        model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    history = model.fit(kerasmm.data.shapes(num_examples=8, batch_size=4), epochs=1, verbose=0)
    assert history.history["loss"][0] > 0


def test_hardware_that_is_not_there_is_a_clear_error():
    with pytest.raises(ValueError, match=r"asked for devices \['/gpu:3'\], which this machine does not have"):
        get_strategy("mirrored", devices=["/gpu:3"])
    with pytest.raises(ValueError, match="no TPU is configured here"):
        get_strategy("tpu")
    with pytest.raises(ValueError, match="kind='multi_worker' needs a cluster: set TF_CONFIG"):
        get_strategy("multi_worker")
    with pytest.raises(ValueError, match="valid kinds: auto, default, mirrored, multi_worker, tpu"):
        get_strategy("horovod")


def test_tf_config_is_read_and_checked(monkeypatch):
    cluster = {"worker": ["localhost:12345", "localhost:12346"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert cluster_spec() == cluster
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        cluster_spec()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"task": {"type": "worker", "index": 0}}))
    assert cluster_spec() is None
