"""Long steps show progress on stderr unless `--quiet`; stdout keeps the command's results."""

import pytest
from PIL import Image

import kerasmm
from kerasmm.cli import main
from kerasmm.cli import search as search_cli
from kerasmm.search import Index


@pytest.fixture(scope="module")
def model():
    return kerasmm.zoo.get("tiny_dual_encoder")


def test_index_from_images_shows_a_progress_bar_only_when_verbose(model, capsys):
    features, _ = kerasmm.data.shapes_arrays(num_examples=6, image_size=32)
    Index.from_images(model, images=features["image"], batch_size=4, verbose=1)
    assert "6/6" in capsys.readouterr().out
    Index.from_images(model, images=features["image"], batch_size=4)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("quiet", [False, True])
def test_search_progress_goes_to_stderr_unless_quiet(model, quiet, tmp_path, monkeypatch, capsys):
    features, _ = kerasmm.data.shapes_arrays(num_examples=5, image_size=32)
    for i, image in enumerate(features["image"]):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(search_cli, "load_dual_encoder", lambda path: model)
    argv = ["search", "a red circle", "--model", "unused", "--images", str(tmp_path), "--k", "2",
            "--out", str(tmp_path / "sheet.png"), *(["--quiet"] if quiet else [])]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Indexed 5 image(s)" in out and "5/5" not in out
    assert ("5/5" in err) != quiet


@pytest.mark.parametrize("quiet", [False, True])
def test_export_reports_its_steps_on_stderr_unless_quiet(quiet, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kerasmm.export, "saved_model", lambda model, directory, **kwargs: _fake_export(directory))
    argv = ["export", "tiny_weighted_sum_classifier", str(tmp_path / "out"), "--zoo", *(["--quiet"] if quiet else [])]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Exported a classifier" in out
    assert ("writing the SavedModel" in err) != quiet


def _fake_export(directory):
    """What `kerasmm.export.saved_model` leaves for the command's summary (the real one is tested in tests/export)."""
    import json
    import os

    path = os.path.join(directory, "1")
    os.makedirs(os.path.join(path, "assets"))
    with open(os.path.join(path, "assets", "kerasmm_export.json"), "w") as f:
        json.dump({"family": "classifier", "model_class": "Classifier", "signatures": {}}, f)
    return path
