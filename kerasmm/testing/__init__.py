"""Test helpers for kerasmm layers and models, reusable for your own plugins.

Example:
```python
import numpy as np
from kerasmm import testing
from kerasmm.encoders.image import CNNImageEncoder

testing.run_layer_test(
    CNNImageEncoder,
    init_kwargs={"output_dim": 8, "filters": [8]},
    input_data=np.random.rand(2, 16, 16, 3).astype("float32"),
)
```
"""

import contextlib
import os
import socket
import tempfile
from unittest import mock

import keras
import numpy as np
from keras import tree


def _as_numpy(x):
    return tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), x)


def _symbolic_inputs(input_data):
    def symbolic(array, name=None):
        dtype = keras.backend.standardize_dtype(getattr(array, "dtype", None) or np.asarray(array).dtype)
        return keras.Input(shape=np.shape(array)[1:], dtype=dtype, name=name)

    if isinstance(input_data, dict):
        return {key: symbolic(value, name=key) for key, value in input_data.items()}
    return tree.map_structure(symbolic, input_data)


def _scalar_head(outputs):
    """A `[B, 1]` tensor depending on every float output, for a fit step."""
    terms = []
    for out in tree.flatten(outputs):
        if "float" not in keras.backend.standardize_dtype(out.dtype):
            continue
        flat = keras.layers.Flatten()(out) if len(out.shape) > 2 else out
        if len(flat.shape) == 1:
            flat = keras.layers.Reshape((1,))(flat)
        terms.append(keras.layers.Dense(1)(flat))
    if not terms:
        raise ValueError("The layer has no float output to train against.")
    return terms[0] if len(terms) == 1 else keras.layers.Add()(terms)


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape=None,
    expected_num_trainable_weights=None,
    expected_num_params=None,
    run_training_check=True,
    run_saving_check=True,
    call_kwargs=None,
):
    """Check a layer the way every kerasmm layer is checked.

    Builds the layer from `init_kwargs`; round-trips its config (the class's
    `from_config` and Keras serialization); calls it symbolically and eagerly
    on `input_data` and checks the shapes agree (and match
    `expected_output_shape`, a structure of shapes with `None` for the batch);
    checks weight counts; runs one `fit` step of a model around the layer; and
    round-trips that model through a `.keras` file under `safe_mode=True`.

    Returns the eager outputs.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)

    # Config round trip, both direct and through Keras' registry.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, "get_config() does not round-trip through from_config()"
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(revived) is layer_cls, f"deserialized to {type(revived)}, not {layer_cls}"

    # Symbolic call.
    inputs = _symbolic_inputs(input_data)
    symbolic = layer(inputs, **call_kwargs)
    symbolic_shapes = [tuple(t.shape) for t in tree.flatten(symbolic)]
    if expected_output_shape is not None:
        assert_shapes_equal(symbolic_shapes, expected_output_shape)

    # Eager call on a fresh layer, shapes consistent with the symbolic ones.
    eager_layer = layer_cls(**init_kwargs)
    eager = _as_numpy(eager_layer(input_data, **call_kwargs))
    batch = np.shape(tree.flatten(input_data)[0])[0]
    eager_shapes = [np.shape(e) for e in tree.flatten(eager)]
    assert_shapes_equal(eager_shapes, [tuple(batch if d is None else d for d in s) for s in symbolic_shapes])

    if expected_num_trainable_weights is not None:
        got = len(layer.trainable_weights)
        assert got == expected_num_trainable_weights, (
            f"expected {expected_num_trainable_weights} trainable weights, got {got}"
        )
    if expected_num_params is not None:
        got = layer.count_params()
        assert got == expected_num_params, f"expected {expected_num_params} parameters, got {got}"

    model = keras.Model(inputs, _scalar_head(symbolic))
    if run_training_check:
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        before = [np.array(w) for w in layer.trainable_weights]
        history = model.fit(input_data, np.ones((batch, 1), "float32"), epochs=1, batch_size=batch, verbose=0)
        assert np.isfinite(history.history["loss"][0]), "fit produced a non-finite loss"
        if before:
            changed = any(not np.array_equal(b, np.array(w)) for b, w in zip(before, layer.trainable_weights))
            assert changed, "one fit step left every trainable weight of the layer unchanged"
    if run_saving_check:
        run_model_saving_test(model, input_data)
    return eager


def _flatten_shapes(shapes):
    """Shape tuples in `tree.flatten` order (dicts by sorted key), shapes as leaves."""
    if isinstance(shapes, dict):
        return [s for key in sorted(shapes) for s in _flatten_shapes(shapes[key])]
    if isinstance(shapes, (list, tuple)) and not all(d is None or isinstance(d, int) for d in shapes):
        return [s for item in shapes for s in _flatten_shapes(item)]
    return [tuple(shapes)]


def assert_shapes_equal(got, expected):
    """Compare (structures of) shapes, `None` in `expected` matching anything."""
    flat_got, flat_expected = _flatten_shapes(got), _flatten_shapes(expected)
    assert len(flat_got) == len(flat_expected), f"shapes {got} vs expected {expected}"
    for g, e in zip(flat_got, flat_expected):
        assert len(g) == len(e) and all(b is None or a == b for a, b in zip(g, e)), (
            f"shape {g} does not match expected {e}"
        )


def run_model_saving_test(model, input_data, atol=1e-5):
    """Save `model` to a `.keras` file, load it with `safe_mode=True`, compare outputs.

    Returns the loaded model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model), f"loaded a {type(loaded).__name__}, saved a {type(model).__name__}"
    expected = _as_numpy(model(input_data, training=False))
    got = _as_numpy(loaded(input_data, training=False))
    tree.map_structure(lambda e, g: np.testing.assert_allclose(g, e, atol=atol, rtol=1e-5), expected, got)
    return loaded


@contextlib.contextmanager
def offline_tfds(data_dir):
    """Inside: any network connection, GCS lookup or TFDS download fails with an AssertionError.

    `TFDS_DATA_DIR` points at `data_dir`, so nothing outside the test's
    folder is read or written. For tests of code that must never download.

    Example:
    ```python
    import tempfile
    from kerasmm import testing
    with testing.offline_tfds(tempfile.mkdtemp()):
        pass  # tfds.load(...) of a dataset not prepared here would fail at once
    ```
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import gcs_utils

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    targets = [(socket.socket, "connect"), (socket, "create_connection"), (gcs_utils, "exists"),
               (gcs_utils, "download_gcs_folder")]
    targets += [(tfds.download.DownloadManager, m) for m in ("download", "download_and_extract",
                                                             "download_kaggle_data")]
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, {"TFDS_DATA_DIR": str(data_dir)}))
        for owner, name in targets:
            stack.enter_context(mock.patch.object(owner, name, refuse))
        yield
