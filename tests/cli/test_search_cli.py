import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kerasmm
from kerasmm.cli import main
from kerasmm.search import Index

RESULT_LINE = re.compile(r"^\s+(\d+)\s+(-?\d+\.\d{3})\s+(\S.*)$")
ERROR_PREFIX = "kerasmm search: error:"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """tmp/model.keras (a tiny dual encoder), tmp/classifier.keras, and 6 shapes PNGs under tmp/images."""
    root = tmp_path_factory.mktemp("search")
    kerasmm.zoo.get("tiny_dual_encoder").save(root / "model.keras")
    kerasmm.zoo.get("tiny_weighted_sum_classifier").save(root / "classifier.keras")
    images = root / "images"
    (images / "nested").mkdir(parents=True)
    features, _ = kerasmm.data.shapes_arrays(num_examples=6, image_size=32)
    for i, image in enumerate(features["image"]):
        Image.fromarray(image).save(images / ("nested" if i % 2 else "") / f"shape{i}.png")
    (images / "notes.txt").write_text("not an image")
    return root


def run_cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run([sys.executable, "-m", "kerasmm.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def test_search_end_to_end(workspace):
    images = workspace / "images"
    done = run_cli("search", "a red circle", "--model", workspace, "--images", images, "--k", 3,
                   "--out", workspace / "sheet.png")
    assert done.returncode == 0, done.stderr
    results = [RESULT_LINE.match(line) for line in done.stdout.splitlines()]
    results = [m for m in results if m]
    assert [int(m[1]) for m in results] == [1, 2, 3]
    assert all(m[3].startswith(str(images)) and m[3].endswith(".png") for m in results)
    scores = [float(m[2]) for m in results]
    assert scores == sorted(scores, reverse=True)
    assert (workspace / "sheet.png").is_file() and str(workspace / "sheet.png") in done.stdout
    with Image.open(workspace / "sheet.png") as sheet:
        assert sheet.format == "PNG"
    assert "Traceback" not in done.stderr


def test_help_and_user_mistake_in_a_real_process(workspace):
    done = run_cli("search", "--help")
    assert done.returncode == 0 and "--model" in done.stdout and "--images" in done.stdout
    done = run_cli("search", "a red circle", "--model", workspace / "missing.keras", "--images", workspace)
    assert done.returncode == 2
    assert len(error_lines(done.stderr)) == 1 and "missing.keras" in error_lines(done.stderr)[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_top_level_help_lists_search(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "search" in capsys.readouterr().out


def test_default_out_is_in_the_cwd_and_a_saved_index_answers_alike(workspace, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "a circle", "a square", "--model", str(workspace / "model.keras"),
                 "--images", str(workspace / "images"), "--k", "10", "--save-index", "saved/gallery.npz"]) == 0
    out = capsys.readouterr().out
    matches = [line for line in out.splitlines() if RESULT_LINE.match(line)]
    assert len(matches) == 12  # k clamped to the 6 images
    assert (tmp_path / "search_results.png").is_file() and (tmp_path / "saved" / "gallery.npz").is_file()
    assert main(["search", "a circle", "a square", "--model", str(workspace / "model.keras"),
                 "--index", "saved/gallery.npz", "--k", "1", "--out", "again.png"]) == 0
    out = capsys.readouterr().out
    assert "Loaded an index of 6 image(s)" in out and (tmp_path / "again.png").is_file()
    assert [line for line in out.splitlines() if RESULT_LINE.match(line)] == [matches[0], matches[6]]


@pytest.mark.parametrize(
    "mistake, expected",
    [
        ("missing_model", "No model at"),
        ("directory_without_model", "holds no model.keras"),
        ("not_a_dual_encoder", "not a dual encoder"),
        ("not_a_keras_file", "not a .keras model file"),
        ("no_images", "No images"),
        ("missing_images_dir", "No image folder"),
        ("empty_query", "Query 1 is empty"),
        ("bad_k", "--k must be at least 1"),
        ("rerank_below_k", "--rerank must be at least --k (5), got 2"),
        ("rerank_without_head", "--rerank needs a dual encoder with an image–text matching head"),
        ("broken_image", "broken.png"),
        ("index_of_another_width", "model embeds into 16 dimensions but the index holds 8"),
        ("approximate_without_faiss", "pip install kerasmm[search]"),
    ],
)
def test_user_mistakes_give_one_line_and_status_2(mistake, expected, workspace, tmp_path, capsys, monkeypatch):
    model, images, query, extra = str(workspace), str(workspace / "images"), "a red circle", []
    if mistake == "missing_model":
        model = str(tmp_path / "nothing.keras")
    elif mistake == "directory_without_model":
        model = str(tmp_path)
    elif mistake == "not_a_dual_encoder":
        model = str(workspace / "classifier.keras")
    elif mistake == "not_a_keras_file":
        model = str(tmp_path / "model.keras")
        (tmp_path / "model.keras").write_text("not a zip")
    elif mistake == "no_images":
        images = str(tmp_path)
    elif mistake == "missing_images_dir":
        images = str(tmp_path / "absent")
    elif mistake == "empty_query":
        query = " "
    elif mistake == "bad_k":
        extra = ["--k", "0"]
    elif mistake == "rerank_below_k":
        extra = ["--rerank", "2"]
    elif mistake == "rerank_without_head":
        extra = ["--rerank", "5"]
    elif mistake == "broken_image":
        images = str(tmp_path)
        Image.open(workspace / "images" / "shape0.png").save(tmp_path / "good.png")
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    elif mistake == "index_of_another_width":
        images, extra = None, ["--index", Index(np.eye(8, dtype="float32")).save(tmp_path / "narrow.npz")]
    elif mistake == "approximate_without_faiss":
        monkeypatch.setitem(sys.modules, "faiss", None)
        extra = ["--method", "approximate"]
    gallery = ["--images", images] if images else []
    status = main(["search", query, "--model", model, *gallery, "--out", str(tmp_path / "s.png"), *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert "\n" not in err and err.startswith(ERROR_PREFIX) and expected in err, err


def test_skip_drops_the_broken_image(workspace, tmp_path, capsys):
    Image.open(workspace / "images" / "shape0.png").save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"")
    status = main(["search", "a circle", "--model", str(workspace), "--images", str(tmp_path),
                   "--on-error", "skip", "--out", str(tmp_path / "s.png")])
    captured = capsys.readouterr()
    assert status == 0 and "warning" in captured.err and "broken.png" in captured.err
    matches = [RESULT_LINE.match(line) for line in captured.out.splitlines() if RESULT_LINE.match(line)]
    assert [m[3] for m in matches] == [str(tmp_path / "good.png")]
