"""Run as a script: dual-encoder loss and gradients on 2 logical CPU devices vs one device.

Prints one JSON line of the largest differences; tests/integration runs it in a
subprocess because logical devices must be set before TensorFlow starts.
"""

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

NAME = sys.argv[1] if len(sys.argv) > 1 else "tiny_dual_encoder"
GLOBAL_BATCH = 8


def get_model():
    """The entry without dropout, so the two runs differ only in how the batch is split."""
    towers = kerasmm.zoo.entry(NAME).config["encoders"]
    return kerasmm.zoo.get(NAME, encoders={m: {"dropout": 0.0} for m in towers})


def batch():
    model = get_model()
    raw = kerasmm.data.shapes(num_examples=GLOBAL_BATCH, batch_size=GLOBAL_BATCH, with_audio=True)
    x, y = next(iter(raw))
    x = {k: v for k, v in x.items() if k in model.backbone.modalities}
    features, _, _ = keras.utils.unpack_x_y_sample_weight(model.preprocessor(x, y))
    return features


def build(strategy, weights=None):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = get_model()
        model.preprocessor = None
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        if weights is not None:
            model.set_weights(weights)
    return model


def loss_and_grads(model, strategy, features):
    def step(x):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            loss = model.compute_loss(x=x, y_pred=y_pred)
        return loss, tape.gradient(loss, model.trainable_variables)

    dataset = tf.data.Dataset.from_tensors(features)
    distributed = strategy.experimental_distribute_dataset(dataset)
    per_replica = strategy.run(tf.function(step), args=(next(iter(distributed)),))
    loss = strategy.reduce("SUM", per_replica[0], axis=None)
    grads = [strategy.reduce("SUM", g, axis=None) for g in per_replica[1]]
    return float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]


def main():
    features = batch()
    single = tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one = build(single)
    two = build(mirrored, one.get_weights())
    loss_one, grads_one = loss_and_grads(one, single, features)
    loss_two, grads_two = loss_and_grads(two, mirrored, features)
    grad_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(grads_one, grads_two))
    # One fit step each at the same global batch: the weights must agree.
    dataset = tf.data.Dataset.from_tensors((features, tf.zeros((GLOBAL_BATCH,))))
    one.fit(dataset, epochs=1, verbose=0)
    two.fit(dataset, epochs=1, verbose=0)
    weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one.get_weights(), two.get_weights()))
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync, "loss_single": loss_one, "loss_mirrored": loss_two,
        "max_grad_diff": grad_diff, "max_weight_diff_after_fit": weight_diff,
        "grad_norm": float(sum(np.sum(g * g) for g in grads_one)) ** 0.5,
    }))


if __name__ == "__main__":
    main()
