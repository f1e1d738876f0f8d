"""`kerasmm --help`, `--version` and `kerasmm <command> --help` answer without importing TensorFlow."""

import os
import subprocess
import sys

import pytest

import kerasmm
from kerasmm.cli import COMMAND_MODULES, COMMANDS, _command_summary


def tensorflow_imported(*argv):
    """Run `python -m kerasmm.cli ARGV` (the command, as its console script runs it) and report whether it
    imported TensorFlow, from Python's own import log (`-X importtime`)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "kerasmm.cli", *argv], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    return "tensorflow" in imported, result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_top_level_help_and_version_import_no_tensorflow(argv):
    imported, out = tensorflow_imported(*argv)
    assert not imported
    assert ("COMMAND" in out) if argv == ["--help"] else (out.startswith(f"kerasmm {kerasmm.__version__}"))


@pytest.mark.parametrize("name", [command.NAME for command in COMMANDS])
def test_command_help_imports_no_tensorflow(name):
    imported, out = tensorflow_imported(name, "--help")
    assert not imported
    assert name == "demo" or out.startswith(f"usage: kerasmm {name}")


def test_the_summaries_read_from_the_source_are_the_commands_own():
    for module, command in zip(COMMAND_MODULES, COMMANDS):
        assert _command_summary(module) == (command.NAME, command.__doc__.splitlines()[0].split(": ", 1)[1])


def test_python_dash_m_runs_the_command_line():
    result = subprocess.run([sys.executable, "-m", "kerasmm.cli", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"kerasmm {kerasmm.__version__}"


def test_import_kerasmm_in_a_script_registers_every_class_at_once(tmp_path):
    # Only the command starts light: a script's `import kerasmm` may go straight to keras.saving.load_model.
    path = str(tmp_path / "model.keras")
    kerasmm.zoo.get("tiny_weighted_sum_classifier").save(path)
    code = f"import kerasmm, keras\nprint(type(keras.saving.load_model({path!r})).__name__)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "MultimodalClassifier"
