"""A `.keras` file edited to hold a `Lambda` layer or to name an unsafe function is refused by `safe_mode=True`."""

import json
import zipfile

import keras
import pytest

import kerasmm

UNSAFE_FUNCTION = {"module": "os", "class_name": "function", "config": "system", "registered_name": None}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    paths = {}
    for name in ("tiny_weighted_sum_classifier", "tiny_captioner"):
        paths[name] = root / f"{name}.keras"
        kerasmm.zoo.get(name).save(paths[name])
    return paths


def edited(path, out, change):
    """A copy of the `.keras` zip at `path` whose config.json went through `change(config)`."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    change(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out


def root_cause(error):
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error


def lambda_layer(function=None):
    config = keras.layers.serialize(keras.layers.Lambda(lambda x: x["image"], name="weighted_sum_fusion"))
    if function is not None:
        config["config"]["function"] = function
    return config


def test_the_unedited_files_load_in_safe_mode(saved):
    for path in saved.values():
        assert keras.saving.load_model(path, safe_mode=True) is not None


def test_a_lambda_layer_with_python_code_is_refused(saved, tmp_path):
    path = edited(saved["tiny_weighted_sum_classifier"], tmp_path / "lambda.keras",
                  lambda c: c["config"]["backbone"]["config"].__setitem__("fusion", lambda_layer()))
    with pytest.raises(ValueError, match="`Lambda` layer whose `function` is a Python lambda"):
        keras.saving.load_model(path, safe_mode=True)


def test_a_lambda_layer_naming_os_system_is_refused(saved, tmp_path):
    path = edited(saved["tiny_weighted_sum_classifier"], tmp_path / "lambda_system.keras",
                  lambda c: c["config"]["backbone"]["config"].__setitem__("fusion", lambda_layer(UNSAFE_FUNCTION)))
    with pytest.raises(TypeError) as caught:
        keras.saving.load_model(path, safe_mode=True)
    assert "Could not locate function 'system'" in str(root_cause(caught.value))


@pytest.mark.parametrize("slot", ["loss", "sampler"])
def test_a_config_naming_an_unsafe_function_is_refused(saved, tmp_path, slot):
    def change(config):
        if slot == "loss":
            config["compile_config"]["loss"] = UNSAFE_FUNCTION
        else:
            config["config"]["sampler"] = UNSAFE_FUNCTION

    path = edited(saved["tiny_captioner"], tmp_path / f"{slot}.keras", change)
    with pytest.raises(TypeError) as caught:
        keras.saving.load_model(path, safe_mode=True)
    assert "Could not locate function 'system'" in str(root_cause(caught.value))


def test_an_unknown_class_in_place_of_an_encoder_is_refused(saved, tmp_path):
    bogus = {"module": "os", "class_name": "system", "config": {"command": "echo unsafe"}, "registered_name": None}
    path = edited(saved["tiny_weighted_sum_classifier"], tmp_path / "encoder.keras",
                  lambda c: c["config"]["backbone"]["config"]["encoders"].__setitem__("image", bogus))
    with pytest.raises(TypeError) as caught:
        keras.saving.load_model(path, safe_mode=True)
    assert "Could not locate class 'system'" in str(root_cause(caught.value))
