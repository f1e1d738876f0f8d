"""`kerasmm export`: a saved `.keras` model (or a zoo entry) to a TF Serving SavedModel."""

import json
import os

import pytest

import kerasmm
from kerasmm.cli import main


@pytest.fixture(scope="module")
def saved_model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.keras"
    kerasmm.zoo.get("tiny_text_to_image").save(path)
    return path


def test_export_a_keras_file_prints_the_signatures_and_the_version_dir(saved_model_file, tmp_path, capsys):
    out = tmp_path / "serving" / "painter"
    assert main(["export", str(saved_model_file), str(out), "--version", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"Exported a text to image (TextToImage) to {out / '2'}"
    assert printed[1] == "  serving_default(text) -> images, png_bytes"
    assert printed[-1] == str(out / "2")
    with open(out / "2" / "assets" / "kerasmm_export.json") as f:
        assert json.load(f)["family"] == "text_to_image"
    assert os.path.isfile(out / "2" / "assets.extra" / "tf_serving_warmup_requests")


def test_user_mistakes_are_one_line_errors(saved_model_file, tmp_path, capsys):
    out = tmp_path / "serving"
    assert main(["export", str(tmp_path / "missing.keras"), str(out)]) == 2
    assert "kerasmm export: error: No model at" in capsys.readouterr().err
    assert main(["export", "no_such_entry", str(out), "--zoo"]) == 2
    assert "kerasmm export: error:" in capsys.readouterr().err
    assert main(["export", str(saved_model_file), str(out), "--no-warmup"]) == 0
    capsys.readouterr()
    assert main(["export", str(saved_model_file), str(out)]) == 2
    error = capsys.readouterr().err
    assert "already exists" in error and "(--overwrite replaces it)" in error
