"""Data integrity through the CLI: models fitted to `--data`, one-line errors for bad inputs, the `--out` lock."""

import json
import os
import signal
import subprocess
import sys
import zipfile

import keras
import pytest
from PIL import Image

import kerasmm
from kerasmm.cli import main, train

CLASSIFIER = "tiny_weighted_sum_classifier"
IMAGE_ONLY = "model.encoders.text=None"
FAST = ["--verbose", "0", "--set", "epochs=1"]


def env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}


def write_images(folder, count, start=0, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    features, _ = kerasmm.data.shapes_arrays(num_examples=start + count, image_size=size)
    paths = []
    for i, image in enumerate(features["image"][start:]):
        paths.append(folder / f"{start + i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def assert_one_line_error(status, err, command, expected):
    """Exit status 2 and one short line naming the problem: no traceback, no Keras config dump."""
    err = err.strip()
    assert status == 2, err
    assert "\n" not in err and err.startswith(f"kerasmm {command}: error:"), err
    assert len(err) < 300 and "Traceback" not in err and "{'module':" not in err, err
    assert expected in err, err


@pytest.fixture(scope="module")
def five_classes(tmp_path_factory):
    """A folder of 5 classes: one more than the shapes classes the tiny classifier's head has."""
    root = tmp_path_factory.mktemp("five")
    for i, name in enumerate(["ant", "bee", "cat", "dog", "eel"]):
        write_images(root / name, 2, start=2 * i)
    return root


@pytest.fixture(scope="module")
def foreign_keras(tmp_path_factory):
    """A `.keras` file of a Keras model whose layer class is not installed here."""

    @keras.saving.register_keras_serializable("integrity_test")
    class Passthrough(keras.layers.Layer):
        def call(self, x):
            return x

    path = tmp_path_factory.mktemp("foreign") / "foreign.keras"
    keras.Sequential([keras.Input((3,)), Passthrough(), keras.layers.Dense(2)]).save(path)
    with zipfile.ZipFile(path) as archive:
        items = {name: archive.read(name) for name in archive.namelist()}
    items["config.json"] = items["config.json"].replace(b"integrity_test>Passthrough", b"elsewhere>Passthrough")
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in items.items():
            archive.writestr(name, content)
    return path


# 1. --data fits the model: class names and count, vocabulary.


@pytest.fixture(scope="module")
def five_class_run(five_classes, tmp_path_factory):
    """`(argv, out)`: the tiny classifier trained on `five_classes`."""
    out = tmp_path_factory.mktemp("five_run") / "run"
    argv = ["train", CLASSIFIER, "--out", str(out), "--data", f"folder:{five_classes}", "--set", IMAGE_ONLY, *FAST]
    assert main(argv) == 0
    return argv, out


@pytest.mark.slow
def test_train_on_a_folder_takes_its_classes_through_eval_and_export(five_class_run, five_classes, tmp_path,
                                                                     capsys):
    argv, out = five_class_run
    names = ["ant", "bee", "cat", "dog", "eel"]
    model_settings = json.loads((out / "recipe.json").read_text())["model"]
    assert model_settings["class_names"] == names and model_settings["num_classes"] == 5
    assert keras.saving.load_model(out / "model.keras").class_names == names

    assert main([*argv, "--verbose", "2"]) == 0  # the same data fit the same model: no "other settings"
    printed = capsys.readouterr().out
    assert "5 classes from the data (ant, bee, cat, dog, eel)" in printed and "is complete" in printed
    assert main(["eval", str(out), "--data", f"folder:{five_classes}"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main(["export", str(out), str(tmp_path / "serving"), "--no-warmup"]) == 0
    assert (tmp_path / "serving" / "1" / "assets" / "labels.txt").read_text().split() == names


def test_eval_refuses_data_of_other_classes(five_class_run, tmp_path, capsys):
    _, out = five_class_run
    write_images(tmp_path / "other" / "ant", 2)
    write_images(tmp_path / "other" / "cat", 2)
    status = main(["eval", str(out), "--data", f"folder:{tmp_path / 'other'}"])
    assert_one_line_error(status, capsys.readouterr().err, "eval", "classes (ant, cat) are not those of the model")


def write_manifest(tmp_path, labels):
    paths = write_images(tmp_path / "images", len(labels))
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"image": str(p), "label": label}) + "\n"
                                for p, label in zip(paths, labels)))
    return manifest


def test_integer_labels_give_the_class_count_or_a_one_line_error(tmp_path, capsys):
    manifest = write_manifest(tmp_path, [0, 1, 5, 2, 3, 4, 1, 0])
    out = tmp_path / "run"
    assert main(["train", CLASSIFIER, "--out", str(out), "--data", f"manifest:{manifest}",
                 "--set", IMAGE_ONLY, *FAST]) == 0, capsys.readouterr().err
    assert "6 classes from the data's labels (0 to 5, no names)" in capsys.readouterr().out
    assert json.loads((out / "recipe.json").read_text())["model"]["num_classes"] == 6

    status = main(["train", CLASSIFIER, "--out", str(tmp_path / "small"), "--data", f"manifest:{manifest}",
                   "--set", IMAGE_ONLY, "--set", "model.num_classes=3", *FAST])
    assert_one_line_error(status, capsys.readouterr().err, "train", "--set model.num_classes=6")
    assert not os.path.exists(tmp_path / "small")


@pytest.fixture(scope="module")
def unnamed_records(tmp_path_factory):
    """TFRecord shards of shapes classification (labels 0-3) without class names."""
    root = tmp_path_factory.mktemp("records")
    dataset = kerasmm.data.shapes(num_examples=16, batch_size=8, image_size=32, task="classification")
    dataset.class_names = None
    kerasmm.data.to_tfrecord(dataset, str(root / "shapes"), num_shards=1)
    return f"tfrecord:{root / 'shapes'}*.tfrecord"


def test_integer_labels_of_unknown_count_ask_for_num_classes(unnamed_records, tmp_path, capsys):
    status = main(["train", CLASSIFIER, "--out", str(tmp_path / "run"), "--data", unnamed_records,
                   "--set", IMAGE_ONLY, *FAST])
    assert_one_line_error(status, capsys.readouterr().err, "train", "--set model.num_classes=N")
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_captioner_on_new_words_trains_a_vocabulary(tmp_path, capsys):
    words = ["a photo of a dog on grass", "two cats asleep on a sofa", "a red car near a tree",
             "people walking in a park"]
    for i, path in enumerate(write_images(tmp_path / "photos", 8)):
        path.with_suffix(".txt").write_text(words[i % len(words)] + "\n")
    out = tmp_path / "run"
    argv = ["train", "tiny_captioner", "--out", str(out), "--data", f"folder:{tmp_path / 'photos'}", *FAST]
    assert main(argv) == 0, capsys.readouterr().err
    assert "WordPiece tokens trained on the data's 8 texts" in capsys.readouterr().out
    vocabulary = json.loads((out / "recipe.json").read_text())["model"]["vocabulary"]
    assert vocabulary[:2] == ["[PAD]", "[UNK]"]
    ids = [int(i) for row in kerasmm.data.text.tokenizer(vocabulary).tokenize(words) for i in row]
    assert vocabulary.index("[UNK]") not in ids  # no word of the data is unknown
    assert keras.saving.load_model(out / "model.keras").preprocessor.tokenizer.get_vocabulary() == vocabulary
    # Resumed, the run keeps its vocabulary.
    assert main([*argv, "--verbose", "2"]) == 0
    out_text = capsys.readouterr().out
    assert "Vocabulary: the run's own" in out_text and "is complete" in out_text


def test_dual_encoder_on_coco_captions_trains_a_vocabulary(tmp_path, capsys):
    paths = write_images(tmp_path / "images", 8)
    captions = ["a dog runs on the beach", "a cat sleeps", "two birds in the sky", "a boat on a lake"]
    coco = {"images": [{"id": i, "file_name": p.name} for i, p in enumerate(paths)],
            "annotations": [{"id": 2 * i + j, "image_id": i, "caption": captions[(i + j) % 4]}
                            for i in range(len(paths)) for j in range(2)]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    out = tmp_path / "run"
    assert main(["train", "tiny_dual_encoder", "--out", str(out), "--data",
                 f"coco:{tmp_path / 'captions.json'}:{tmp_path / 'images'}", *FAST]) == 0, capsys.readouterr().err
    assert "trained on the data's 16 texts" in capsys.readouterr().out  # every caption, not one per image
    assert "vocabulary" in json.loads((out / "recipe.json").read_text())["model"]


def test_shapes_words_keep_the_shapes_vocabulary(tmp_path, capsys):
    features, captions = kerasmm.data.shapes_arrays(num_examples=8, image_size=32, task="captioning")
    (tmp_path / "photos").mkdir()
    for i, (image, caption) in enumerate(zip(features["image"], captions)):
        Image.fromarray(image).save(tmp_path / "photos" / f"{i}.png")
        (tmp_path / "photos" / f"{i}.txt").write_text(str(caption) + "\n")
    out = tmp_path / "run"
    assert main(["train", "tiny_captioner", "--out", str(out), "--data", f"folder:{tmp_path / 'photos'}",
                 *FAST]) == 0, capsys.readouterr().err
    assert "vocabulary" not in json.loads((out / "recipe.json").read_text())["model"]


# 2. One line, exit status 2, for bad inputs of every command.


def test_train_a_label_outside_the_head_is_one_line(unnamed_records, tmp_path, capsys):
    status = main(["train", CLASSIFIER, "--out", str(tmp_path / "run"), "--data", unnamed_records,
                   "--set", IMAGE_ONLY, "--set", "model.num_classes=2", "--set", "steps_per_epoch=2", *FAST])
    assert_one_line_error(status, capsys.readouterr().err, "train", "outside the valid range")


@pytest.mark.parametrize("command", ["eval", "export", "search"])
def test_a_keras_file_that_does_not_load_is_one_line(command, foreign_keras, tmp_path, capsys):
    argv = {
        "eval": ["eval", CLASSIFIER, "--model", str(foreign_keras)],
        "export": ["export", str(foreign_keras), str(tmp_path / "serving")],
        "search": ["search", "a circle", "--model", str(foreign_keras), "--images", str(tmp_path)],
    }[command]
    write_images(tmp_path, 1)
    status = main(argv)
    expected = f"Cannot load the model in {foreign_keras}: Could not locate class 'Passthrough'"
    assert_one_line_error(status, capsys.readouterr().err, command, expected)


def test_a_damaged_keras_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "damaged.keras"
    kerasmm.zoo.get(CLASSIFIER).save(path)
    with zipfile.ZipFile(path) as archive:
        items = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in items.items():
            archive.writestr(name, content[:1000] if name.endswith(".h5") else content)
    status = main(["export", str(path), str(tmp_path / "serving")])
    assert_one_line_error(status, capsys.readouterr().err, "export", f"Cannot load the model in {path}")


def test_a_damaged_saved_model_is_one_line(tmp_path, capsys):
    image = write_images(tmp_path / "images", 1)[0]
    (tmp_path / "export" / "1").mkdir(parents=True)
    (tmp_path / "export" / "1" / "saved_model.pb").write_bytes(b"\x08garbage" * 10)
    status = main(["caption", str(image), "--model", str(tmp_path / "export")])
    assert_one_line_error(status, capsys.readouterr().err, "caption", "Cannot load the exported model in")


# 3. One run at a time in an --out folder.


def test_a_second_train_on_a_locked_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with train.locked(str(out)):
        done = subprocess.run([sys.executable, "-m", "kerasmm.cli", "train", CLASSIFIER, "--out", str(out),
                               "--verbose", "0"], capture_output=True, text=True, env=env(), timeout=300)
        # TensorFlow's C++ start-up logs may come before: the command's own output is its error line.
        ours = [line for line in done.stderr.splitlines() if line.startswith("kerasmm") or "Traceback" in line]
        assert done.returncode == 2 and len(ours) == 1 and done.stdout == "", done.stderr
        assert_one_line_error(2, ours[0], "train", f"in use by another kerasmm train (process {os.getpid()})")
        assert main(["train", CLASSIFIER, "--out", str(out), "--verbose", "0"]) == 2  # this process too
        assert "in use by another kerasmm train" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == [".lock"]  # the refused runs wrote nothing


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    hold_and_die = ("import fcntl, os, signal, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                    "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid()); "
                    "os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", hold_and_die, str(out / ".lock")], timeout=60)
    assert done.returncode == -signal.SIGKILL and (out / ".lock").read_text()
    assert main(["train", CLASSIFIER, "--out", str(out), "--verbose", "0", "--set", "examples=8"]) == 0, \
        capsys.readouterr().err
    assert (out / "model.keras").is_file()
