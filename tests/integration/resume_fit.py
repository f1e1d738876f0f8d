"""Run as a script: `fit_resumable` of a tiny zoo model, to be killed and started again.

`python resume_fit.py OUTPUT_DIR [--epochs 2] [--steps 6] [--save-every 2] [--model NAME]
[--overrides JSON] [--folder DIR]` trains with deterministic ops on shuffled shapes data
(`--overrides`: a JSON object of `kerasmm.zoo.get` overrides of the model;
`--folder`: a class-folder tree read shuffled and augmented instead),
checkpointing to OUTPUT_DIR/checkpoints and logging epochs to
OUTPUT_DIR/log.csv; prints `step N` after every step and, at the end, one
JSON line with the optimizer's iterations and the epochs this process ran,
and writes the final weights to OUTPUT_DIR/weights.npz. When `TF_CONFIG`
names a cluster it trains under MultiWorkerMirroredStrategy, and worker i
writes log-worker-i.csv and weights-worker-i.npz instead (the checkpoints are
shared). With `RESUME_FIT_PAUSE_AT_STEP=k` in the environment it prints
`paused at step k` after step k and sleeps, for a test to kill it there: the
same command started again resumes.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasmm  # noqa: E402

BATCH = 4


class StepPrinter(keras.callbacks.Callback):
    """Prints `step N` after each step; sleeps after step `pause_at` (for a test to kill the process)."""

    def __init__(self, pause_at=None):
        super().__init__()
        self.pause_at = pause_at

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        print(f"step {step}", flush=True)
        if step == self.pause_at:
            print(f"paused at step {step}", flush=True)
            time.sleep(3600)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--model", default="tiny_weighted_sum_classifier")
    parser.add_argument("--overrides", type=json.loads, default={}, help="zoo.get overrides, a JSON object")
    parser.add_argument("--folder", help="train on this class-folder tree (shuffled, augmented) instead of shapes")
    parser.add_argument("--cpu-replicas", type=int, default=1,
                        help="more than 1: MirroredStrategy over this many logical CPU devices of this process")
    args = parser.parse_args()
    pause_at = os.environ.get("RESUME_FIT_PAUSE_AT_STEP")
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task")
    suffix = f"-{task['type']}-{task['index']}" if task else ""

    if args.cpu_replicas > 1:  # one process whose replicas split each batch as that many workers would
        devices = [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas
        tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0], devices)
        strategy = kerasmm.distribute.get_strategy("mirrored", devices=[f"/cpu:{i}" for i in range(len(devices))])
    else:
        strategy = kerasmm.distribute.get_strategy()  # MultiWorkerMirroredStrategy when TF_CONFIG names a cluster
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = kerasmm.zoo.get(args.model, **args.overrides)
    if args.folder:  # passes of ceil(images / BATCH) batches, which epochs of --steps cross
        dataset = kerasmm.data.from_folder(args.folder, batch_size=BATCH, image_size=32, shuffle=True, augment=True,
                                           seed=1)
    else:
        dataset = kerasmm.data.shapes(num_examples=args.steps * BATCH, batch_size=BATCH, shuffle=True)
    history = kerasmm.distribute.fit_resumable(
        model, dataset, epochs=args.epochs, steps_per_epoch=args.steps, save_every=args.save_every,
        directory=os.path.join(args.output, "checkpoints"), verbose=0,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(args.output, f"log{suffix}.csv")),
                   StepPrinter(int(pause_at) if pause_at else None)],
    )
    np.savez(os.path.join(args.output, f"weights{suffix}.npz"), *model.get_weights())
    print(json.dumps({"iterations": int(model.optimizer.iterations.numpy()), "epochs": history.epoch}), flush=True)


if __name__ == "__main__":
    main()
