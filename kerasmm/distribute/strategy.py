"""`get_strategy(kind)`: the tf.distribute strategy for this machine or cluster."""

import json
import os

import tensorflow as tf

KINDS = ("auto", "default", "mirrored", "multi_worker", "tpu")
_TPU_ENV = ("TPU_NAME", "COLAB_TPU_ADDR", "TPU_WORKER_HOSTNAMES")


def cluster_spec():
    """The cluster named by `TF_CONFIG` as `{job: [addresses]}`, or None when it names none."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e.msg}): {raw[:200]!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not cluster:
        return None
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise ValueError(f"TF_CONFIG's 'cluster' must map job names to address lists, got {cluster!r}.")
    return cluster


def _tpu_resolver(tpu=None):
    """A TPU cluster resolver when a TPU is configured here, else None (never probes the network)."""
    if tpu is None and not any(os.environ.get(name) for name in _TPU_ENV):
        return None
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    except (ValueError, tf.errors.NotFoundError):
        return None


def get_strategy(kind="auto", devices=None, tpu=None):
    """The strategy for `kind`.

    - "auto": `TPUStrategy` when a TPU is configured (`TPU_NAME` and friends
      or `tpu=`), `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a
      cluster of more than one task, `MirroredStrategy` over all GPUs when
      there are several, else the default strategy (one device).
    - "default", "mirrored" (over `devices`, default all GPUs, else the
      CPU), "multi_worker" and "tpu" force one; asking for hardware or a
      cluster that is not there is a `ValueError` saying what is missing.

    Scale the global batch with the replicas (`per-replica batch ×
    strategy.num_replicas_in_sync`) and, as a rule, the learning rate
    linearly with the global batch.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown strategy kind {kind!r}; valid kinds: {', '.join(KINDS)}.")
    if kind == "auto":
        if _tpu_resolver(tpu) is not None:
            kind = "tpu"
        elif cluster_spec() and sum(len(v) for v in cluster_spec().values()) > 1:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return _mirrored(devices)
    if kind == "multi_worker":
        if not cluster_spec():
            raise ValueError(
                "kind='multi_worker' needs a cluster: set TF_CONFIG to "
                '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}} '
                "on every worker."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = _tpu_resolver(tpu)
    if resolver is None:
        raise ValueError(
            "kind='tpu' but no TPU is configured here: pass tpu='name-or-grpc-address' or run where "
            f"one of {', '.join(_TPU_ENV)} is set."
        )
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _mirrored(devices):
    available = {_short(d.name) for d in tf.config.list_logical_devices()}
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] if gpus else ["/cpu:0"]
    missing = [d for d in devices if _short(d) not in available]
    if missing:
        raise ValueError(
            f"kind='mirrored' asked for devices {missing}, which this machine does not have. "
            f"Available: {sorted(available)}."
        )
    return tf.distribute.MirroredStrategy(devices)


def _short(name):
    """'/job:localhost/replica:0/task:0/device:CPU:0' and '/cpu:0' → 'cpu:0'."""
    return name.lower().split("device:")[-1].lstrip("/")
