"""`kerasmm train` logs: TensorBoard scalars (keras.callbacks.TensorBoard), held-out samples, CSV; precision."""

import csv
import glob
import json

import keras
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kerasmm.cli import main


def summaries(folder):
    """`{tag: (plugin name, [values by step])}` of the event files in `folder` (values as numpy)."""
    found = {}
    for path in sorted(glob.glob(str(folder / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin, values = found.setdefault(value.tag, (value.metadata.plugin_data.plugin_name, []))
                values.append(tf.make_ndarray(value.tensor))
    return found


def test_a_captioner_run_logs_scalars_images_captions_and_csv(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["train", "tiny_captioner", "--out", str(out), "--verbose", "0", "--set", "examples=8",
                   "--set", "held_out_examples=4", "--set", "validate=True"])
    assert status == 0, capsys.readouterr().err
    assert {"training.csv", "logs", "history.json", "model.keras"} <= {p.name for p in out.iterdir()}

    train = EventAccumulator(str(out / "logs" / "train"))
    train.Reload()
    assert {"epoch_loss", "epoch_token_accuracy"} <= set(train.Tags()["tensors"])
    validation = summaries(out / "logs" / "validation")
    assert validation["epoch_loss"][0] == "scalars" and "epoch_bleu_4" in validation

    samples = summaries(out / "logs" / "samples")
    plugin, images = samples["held_out/images"]
    assert plugin == "images" and len(images) == 1 and len(images[0]) == 2 + 4  # width, height, 4 PNGs
    assert tf.io.decode_png(images[0][2]).shape[-1] == 3
    plugin, texts = samples["held_out/captions"]
    table = texts[0].item().decode()
    assert plugin == "text" and table.startswith("| # | generated | reference |")
    assert len(table.splitlines()) == 2 + 4

    with open(out / "training.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"epoch", "loss", "val_loss", "val_bleu_4"} <= set(rows[0])


def test_a_dual_encoder_run_logs_a_contact_sheet_and_keeps_its_precision(tmp_path, capsys):
    out = tmp_path / "run"
    command = ["train", "tiny_dual_encoder", "--out", str(out), "--verbose", "0", "--set", "examples=8"]
    assert main([*command, "--precision", "mixed_float16", "--no-jit"]) == 0, capsys.readouterr().err
    assert "precision mixed_float16" in capsys.readouterr().out
    settings = json.loads((out / "recipe.json").read_text())["train"]
    assert settings["precision"] == "mixed_float16" and settings["jit_compile"] is False
    assert settings["strategy"] == "auto"
    plugin, sheets = summaries(out / "logs" / "samples")["held_out/retrieval"]
    assert plugin == "images" and tf.io.decode_png(sheets[0][2]).shape[-1] == 3
    assert "| query | rank | score |" in summaries(out / "logs" / "samples")["held_out/retrieval_matches"][1][0] \
        .item().decode()
    model = keras.saving.load_model(out / "model.keras")
    assert model.dtype_policy.name == "mixed_float16"

    # Another precision is refused; none given resumes with the run's own.
    assert main([*command, "--precision", "float32"]) == 2
    assert "train.precision differ" in capsys.readouterr().err
    assert main([*command, "--set", "epochs=2"]) == 0, capsys.readouterr().err
    assert "precision mixed_float16" in capsys.readouterr().out
    assert json.loads((out / "recipe.json").read_text())["train"]["precision"] == "mixed_float16"
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2]
