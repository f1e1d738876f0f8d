"""`kerasmm` commands: help, `list`, `demo` forwarding, and one-line errors for user mistakes."""

import os
import subprocess
import sys

import pytest

import kerasmm
import kerasmm.demo
from kerasmm.cli import COMMANDS, build_parser, main

NAMES = [command.NAME for command in COMMANDS]


def help_text(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    out = help_text(capsys)
    assert set(NAMES) >= {"list", "train", "eval", "export", "caption", "search", "demo"}
    for name in NAMES:
        assert f"    {name}" in out


@pytest.mark.parametrize("name", [n for n in NAMES if n != "demo"])
def test_each_command_has_help(name, capsys):
    out = help_text(capsys, name)
    assert out.startswith(f"usage: kerasmm {name}")


def test_train_help_documents_data_and_settings(capsys):
    out = " ".join(help_text(capsys, "train").split())
    for text in ("--out DIR", "coco:ANNOTATIONS.json:IMAGE_DIR", "folder:DIR", "manifest:", "tfrecord:GLOB",
                 "model.hidden_dim=64", "epochs", "tiny_<name>"):
        assert text in out


def test_demo_forwards_its_arguments(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(kerasmm.demo, "main", lambda argv=None: calls.append(argv) or 0)
    assert main(["demo", "--epochs", "2", "--out=x"]) == 0
    assert calls == [["--epochs", "2", "--out=x"]]
    assert main(["demo", "--help"]) == 0 and calls[-1] == ["--help"]
    assert "python -m kerasmm.demo" in capsys.readouterr().out


def test_unknown_arguments_of_other_commands_are_still_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--bogus"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_list_tiny_table(capsys):
    assert main(["list", "--tiny", "--no-params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "task", "modalities", "parameters"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert sorted(rows) == ["tiny_" + n for n in kerasmm.zoo.list()]
    assert rows["tiny_captioner"] == ["captioning", "image", "-"]
    assert rows["tiny_audio_visual_classifier"] == ["classification", "audio+image+text", "-"]


def test_list_counts_parameters_by_building(capsys):
    assert main(["list", "*classifier", "--tiny"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert sorted(rows) == ["tiny_" + n for n in kerasmm.zoo.list("*classifier")]
    expected = kerasmm.zoo.get("tiny_weighted_sum_classifier").count_params()
    assert rows["tiny_weighted_sum_classifier"] == ["classification", "image+text", f"{expected:,}"]


def test_list_without_params_and_with_a_pattern(capsys):
    assert main(["list", "*dual_encoder", "--no-params"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [[n, "retrieval", m, "-"] for n, m in (("audio_text_dual_encoder", "audio+text"),
                                                           ("dual_encoder", "image+text"),
                                                           ("siglip_dual_encoder", "image+text"))]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "no_such_recipe", "--out", "{tmp}/run"], "Unknown recipe 'no_such_recipe'. Recipes: "),
        (["train", "{tmp}/missing.py", "--out", "{tmp}/run"], "No recipe file"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--set", "epochs"], "Bad setting 'epochs'"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--set", "colour=red"], "Unknown setting 'colour'"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--set", "model.colour=1"], "Valid settings: "),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--set", "data.colour=1"], "valid: "),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--set", "epochs=0"], "epochs must be an integer"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--data", "coco:{tmp}/a.json:{tmp}"], "no file"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--data", "manifest:{tmp}/m.jsonl"], "no file"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--data", "folder:{tmp}/none"], "no folder"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--data", "tfrecord:{tmp}/*.tfrecord"], "no files"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--data", "csv:x"], "Bad --data 'csv:x'"),
        (["train", "tiny_captioner", "--out", "{tmp}/run", "--data", "coco:only.json"], "coco takes"),
        (["eval", "tiny_captioner"], "Give the model to score with --model"),
        (["eval", "{tmp}"], "holds no recipe.json"),
        (["caption", "{tmp}/none.jpg", "--model", "{tmp}"], "No image file"),
    ],
)
def test_user_mistakes_give_one_line_and_status_2(argv, expected, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith(f"kerasmm {argv[0]}: error:") and expected in err, err
    assert not os.path.exists(tmp_path / "run")


def test_user_mistake_in_a_real_process(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-m", "kerasmm.cli", "train", "nope", "--out", str(tmp_path / "run"),
                           "--set", "epochs=1"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("kerasmm train: error:")]
    assert len(errors) == 1 and "captioner" in errors[0] and "Traceback" not in done.stderr


def test_train_arguments_parse():
    args = build_parser().parse_args(["train", "captioner", "--out", "runs/c", "--set", "epochs=2",
                                      "--set", "model.hidden_dim=64", "--data", "folder:photos"])
    assert args.settings == ["epochs=2", "model.hidden_dim=64"] and args.data == "folder:photos"
