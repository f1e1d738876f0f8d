"""Run as a script: `fit` of every tiny zoo entry on 2 logical CPU devices vs one device.

For each entry, two copies with the same initial weights take the same two
SGD steps at global batch 8, one under the default strategy and one under
MirroredStrategy over 2 logical CPU devices; prints one JSON line per entry
with the loss and the largest weight difference. Dropout and modality
dropout are switched off, so the runs differ only in how the batch is split.
"""

import inspect
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasmm  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 2
# One strategy for the whole process: a second MirroredStrategy over the same
# devices reuses collective instance keys and aborts the first one's gathers.
MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def without_randomness(name):
    """Overrides that zero every dropout the entry's architecture has."""
    config = kerasmm.zoo.entry(name).config
    encoders = {}
    for modality, spec in (config.get("encoders") or {}).items():
        params = inspect.signature(kerasmm.encoders.lookup(spec["name"]).__init__).parameters
        if "dropout" in params:
            encoders[modality] = {"dropout": 0.0}
    overrides = {"encoders": encoders} if encoders else {}
    if config.get("fusion"):
        fusion = {"modality_dropout": 0.0}
        if "dropout" in inspect.signature(kerasmm.fusions.lookup(config["fusion"]["name"]).__init__).parameters:
            fusion["dropout"] = 0.0
        overrides["fusion"] = fusion
    for key in ("dropout", "modality_dropout"):
        if key in config:
            overrides[key] = 0.0
    return overrides


# The shapes task each zoo task trains on.
DATA_TASK = {"vqa": "vqa", "captioning": "captioning", "text_to_image": "captioning"}


def training_batches(name):
    model = kerasmm.zoo.get(name)
    task = kerasmm.zoo.entry(name).task
    raw = kerasmm.data.shapes(
        num_examples=GLOBAL_BATCH * STEPS, batch_size=GLOBAL_BATCH, with_audio=True,
        task=DATA_TASK.get(task, "classification"),
    )
    batches = []
    for x, y in raw:
        # text_to_image learns the image from the caption: its pixels are the target.
        keep = ["image"] if task == "text_to_image" else model.backbone.modalities
        x = {k: v for k, v in x.items() if k in keep}
        features, targets, weights = keras.utils.unpack_x_y_sample_weight(model.preprocessor(x, y))
        batch = (features, targets if targets is not None else y)
        batches.append(batch if weights is None else (*batch, weights))
    return batches


def build(name, strategy, weights=None):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = kerasmm.zoo.get(name, **without_randomness(name))
        model.preprocessor = None
        model.compile(optimizer=keras.optimizers.SGD(0.05), **({} if hasattr(model, "contrastive_loss") else
                                                              {"loss": "auto", "metrics": []}))
        if weights is not None:
            model.set_weights(weights)
    return model


def compare(name):
    batches = training_batches(name)
    dataset = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=tf.nest.map_structure(
        tf.TensorSpec.from_tensor, batches[0]))
    single = build(name, tf.distribute.get_strategy())
    mirrored = build(name, MIRRORED, single.get_weights())
    loss_single = single.fit(dataset, epochs=1, verbose=0).history["loss"][-1]
    loss_mirrored = mirrored.fit(dataset, epochs=1, verbose=0).history["loss"][-1]
    weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), mirrored.get_weights()))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), build(
        name, tf.distribute.get_strategy()).get_weights()))
    return {"name": name, "replicas": MIRRORED.num_replicas_in_sync, "loss_single": loss_single,
            "loss_mirrored": loss_mirrored, "max_weight_diff": weight_diff, "max_weight_change": moved}


def main():
    names = sys.argv[1:] or [n for n in kerasmm.zoo.list(include_tiny=True) if n.startswith("tiny_")]
    for name in names:
        print(json.dumps(compare(name)), flush=True)


if __name__ == "__main__":
    main()
