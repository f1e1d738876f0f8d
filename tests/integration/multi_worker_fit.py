"""Run as a script, once per worker with its own TF_CONFIG: `fit` of tiny zoo entries under MultiWorkerMirroredStrategy.

Usage: `TF_CONFIG=... python multi_worker_fit.py OUT_PREFIX NAME:INPUT [NAME:INPUT ...]`.

Each entry NAME is trained at global batch 8 (4 per worker) for a few
epochs, then evaluated, on INPUT: "fit" is a raw dataset given to plain
`model.fit` (Keras shards it over the workers, the model preprocesses it);
"distribute_dataset" is `kerasmm.distribute.distribute_dataset` (per-worker
shards, the preprocessor in the input pipeline). Writes `OUT_PREFIX.npz`
(the final weights, keys "<name>:<input>/<i>") and `OUT_PREFIX.json` (loss
histories, the evaluation loss, the replica count).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerasmm  # noqa: E402

GLOBAL_BATCH = 8
NUM_EXAMPLES = 32
EPOCHS = 3


def build(name, strategy):
    with strategy.scope():
        model = kerasmm.zoo.get(name)
        if hasattr(model, "contrastive_loss"):
            model.compile(optimizer=keras.optimizers.Adam(3e-3))
        else:
            model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="auto", metrics="auto")
    return model


def inputs(model, strategy, kind):
    raw = dict(num_examples=NUM_EXAMPLES, task="classification")
    if kind == "fit":
        return kerasmm.data.shapes(batch_size=GLOBAL_BATCH, **raw)
    features, labels = kerasmm.data.shapes_arrays(**raw)
    return kerasmm.distribute.distribute_dataset(
        strategy, lambda context: tf.data.Dataset.from_tensor_slices((features, labels)),
        global_batch_size=GLOBAL_BATCH, preprocessor=model.preprocessor,
    )


def main():
    out_prefix, runs = sys.argv[1], sys.argv[2:]
    strategy = kerasmm.distribute.get_strategy()  # "auto": TF_CONFIG names a cluster of 2
    assert kerasmm.distribute.in_multi_worker_mode(strategy), type(strategy).__name__
    report = {"replicas": strategy.num_replicas_in_sync, "runs": {}}
    weights = {}
    for run in runs:
        name, kind = run.split(":")
        model = build(name, strategy)  # every worker starts from the chief's initial weights
        history = model.fit(inputs(model, strategy, kind), epochs=EPOCHS, verbose=0).history
        validation = kerasmm.data.shapes(num_examples=16, batch_size=GLOBAL_BATCH, split="validation")
        logs = model.evaluate(validation, verbose=0, return_dict=True)
        report["runs"][run] = {"loss": history["loss"], "evaluate_loss": logs["loss"]}
        for i, w in enumerate(model.get_weights()):
            weights[f"{run}/{i}"] = w
        print(run, history["loss"], logs, flush=True)
    np.savez(out_prefix + ".npz", **weights)
    with open(out_prefix + ".json", "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
