"""`kerasmm train --strategy mirrored` on 2 logical CPU devices: the model is built and trained in the scope.

The logical devices must be set before TensorFlow starts, so the run is a
child process: this file run as a script (`main`).
"""

import json
import os
import subprocess
import sys


def test_mirrored_strategy_trains_over_two_replicas(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, __file__, str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    assert report["replicas"] == 2 and report["variables_mirrored"]
    assert "2 replicas (MirroredStrategy)" in done.stdout
    assert json.loads((out / "recipe.json").read_text())["train"]["strategy"] == "mirrored"
    assert json.loads((out / "history.json").read_text())["epoch"] == [1]


def main(out):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import kerasmm.distribute
    from kerasmm import recipes
    from kerasmm.cli import main as kerasmm_main

    # "mirrored" mirrors over all GPUs, else the one CPU: here, over the two logical CPUs.
    get_strategy = kerasmm.distribute.get_strategy
    kerasmm.distribute.get_strategy = lambda kind: get_strategy(kind, devices=["/cpu:0", "/cpu:1"])
    report = {}
    build_model = recipes.Recipe.build_model

    def built_in_scope(recipe):
        model = build_model(recipe)
        strategy = tf.distribute.get_strategy()
        report["replicas"] = strategy.num_replicas_in_sync
        report["variables_mirrored"] = all(
            isinstance(v.value, tf.distribute.DistributedValues) for v in model.trainable_variables)
        return model

    recipes.Recipe.build_model = built_in_scope
    report["status"] = kerasmm_main(["train", "tiny_weighted_sum_classifier", "--out", out, "--strategy", "mirrored",
                                     "--verbose", "0", "--set", "examples=8"])
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
