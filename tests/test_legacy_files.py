"""`.keras` files saved by an earlier kerasmm (before the one-folder-per-family redesign) load
with `safe_mode=True` and give the outputs they gave then. Made by tests/fixtures/make_legacy_models.py."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm  # noqa: F401  (registers the classes the files name)

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "legacy_models")
SAVED = json.load(open(os.path.join(HERE, "index.json")))


@pytest.mark.parametrize("name", sorted(SAVED))
def test_an_old_file_loads_in_safe_mode_with_identical_outputs(name):
    model = keras.saving.load_model(os.path.join(HERE, f"{name}.keras"), safe_mode=True)
    assert type(model).__name__ == SAVED[name]
    arrays = np.load(os.path.join(HERE, f"{name}.npz"))
    x = {k[2:]: arrays[k] for k in arrays.files if k.startswith("x_")}
    outputs = model.predict(tf.data.Dataset.from_tensors((x, arrays["y"])), verbose=0)
    outputs = outputs if isinstance(outputs, dict) else {"y": outputs}
    expected = {k[4:]: arrays[k] for k in arrays.files if k.startswith("out_")}
    assert sorted(outputs) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(outputs[key], value, atol=1e-5, err_msg=f"{name}: {key}")
