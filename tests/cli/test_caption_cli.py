"""`kerasmm caption` on a real tiny captioner export, and on test-double SavedModels for the folder rules."""

import pytest
import tensorflow as tf
from PIL import Image

import kerasmm
from kerasmm.cli import main


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    features, _ = kerasmm.data.shapes_arrays(num_examples=2, image_size=32)
    paths = [root / "a.jpg", root / "b.png"]
    for image, path in zip(features["image"], paths):
        Image.fromarray(image).save(path)
    (root / "broken.jpg").write_bytes(b"not an image")
    return paths


class FakeCaptioner(tf.Module):
    """A test double with the captioner export's signature: the caption tells the version and the byte count.

    `png_only=True` refuses other formats in the graph, as a real export's decoding does a file it cannot read.
    """

    def __init__(self, version, inputs=("image_bytes",), png_only=False, output="captions"):
        super().__init__()
        self.version = version
        signature = {name: tf.TensorSpec([None], tf.string, name=name) for name in inputs}

        @tf.function(input_signature=[signature])
        def serve(request):
            data = request["image_bytes"]
            if png_only:
                png = tf.strings.substr(data, 1, 3) == "PNG"
                with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(png), ["not a PNG"])]):
                    data = tf.identity(data)
            size = tf.strings.as_string(tf.strings.length(data))
            text = [request[name] for name in ("prompt", "question") if name in request]  # echoed
            return {output: tf.strings.join([*text, f"v{version} bytes", size], separator=" "),
                    "scores": tf.cast(tf.strings.length(data), tf.float32)}

        self.serve = serve

    def save(self, path, signature_name="serving_default"):
        tf.saved_model.save(self, str(path), signatures={signature_name: self.serve.get_concrete_function()})


@pytest.mark.slow
def test_caption_with_a_real_tiny_captioner_export(images, tmp_path, capsys):
    model = kerasmm.zoo.get("tiny_captioner")
    kerasmm.export.saved_model(model, tmp_path / "captioner", version=1, warmup_requests=False)
    assert main(["caption", *map(str, images), "--model", str(tmp_path / "captioner"), "--scores"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in rows] == list(map(str, images))
    expected = model.generate(kerasmm.data.shapes_arrays(num_examples=2, image_size=32)[0]["image"][1:])
    assert rows[1][1] == expected[0]  # the PNG decodes losslessly: the same caption as in Keras
    assert all(float(row[2]) <= 0 for row in rows)

    broken = images[0].parent / "broken.jpg"
    assert main(["caption", str(images[0]), str(broken), "--model", str(tmp_path / "captioner")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"Cannot caption {broken}" in err


def test_caption_uses_the_highest_version(images, tmp_path, capsys):
    for version in (1, 3, 2):
        FakeCaptioner(version).save(tmp_path / "export" / str(version))
    (tmp_path / "export" / "10-notes").mkdir()
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "export")]) == 0
    size = images[0].stat().st_size
    assert capsys.readouterr().out == f"{images[0]}\tv3 bytes {size}\n"
    # A version folder itself works too, and batches keep the order.
    assert main(["caption", str(images[1]), str(images[0]), "--model", str(tmp_path / "export" / "1"),
                 "--batch-size", "1"]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()] == [
        f"v1 bytes {images[1].stat().st_size}", f"v1 bytes {size}"]


def test_caption_falls_back_to_the_image_only_signature(images, tmp_path, capsys):
    FakeCaptioner(1, inputs=("image_bytes", "audio_bytes")).save(tmp_path / "av" / "1")
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "av")]) == 2
    assert "no signature that captions images alone" in capsys.readouterr().err
    FakeCaptioner(2).save(tmp_path / "image_only" / "1", signature_name="caption_image")
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "image_only")]) == 0
    assert "\tv2 bytes " in capsys.readouterr().out


def test_prompts_and_questions_go_to_the_signatures_that_take_them(images, tmp_path, capsys):
    FakeCaptioner(1, inputs=("image_bytes", "prompt")).save(tmp_path / "prompted" / "1", "caption_prompted")
    FakeCaptioner(1, inputs=("image_bytes", "question"), output="answers").save(tmp_path / "vqa" / "1")
    FakeCaptioner(1).save(tmp_path / "plain" / "1")
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "prompted"), "--prompt", "a large"]) == 0
    assert capsys.readouterr().out.startswith(f"{images[0]}\ta large v1 bytes")
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "vqa"), "--question", "how many ?"]) == 0
    assert capsys.readouterr().out.startswith(f"{images[0]}\thow many ? v1 bytes")
    for model, option, message in [
        ("plain", "--prompt", "takes no prompt (export it with kerasmm export --prompted)"),
        ("prompted", "--question", "answers no questions"),
    ]:
        assert main(["caption", str(images[0]), "--model", str(tmp_path / model), option, "x"]) == 2
        assert message in capsys.readouterr().err
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "vqa"), "--question", " "]) == 2
    assert "--question is empty" in capsys.readouterr().err
    assert main(["caption", str(images[0]), "--model", str(tmp_path / "vqa"), "--question", "a", "--prompt", "b"]) == 2
    assert "not both" in capsys.readouterr().err


def test_caption_needs_a_saved_model(images, tmp_path, capsys):
    assert main(["caption", str(images[0]), "--model", str(tmp_path)]) == 2
    assert "holds no SavedModel" in capsys.readouterr().err


def test_a_bad_file_stops_the_command_before_any_caption(images, tmp_path, capsys):
    FakeCaptioner(1).save(tmp_path / "export" / "1")
    broken = images[0].parent / "broken.jpg"
    assert main(["caption", str(images[0]), str(broken), "--model", str(tmp_path / "export")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and "\n" not in err and f"Cannot caption {broken}: " in err and "--on-error skip" in err


def test_skip_lists_the_bad_files_and_captions_the_others(images, tmp_path, capsys):
    FakeCaptioner(1, png_only=True).save(tmp_path / "export" / "1")
    broken, missing = images[0].parent / "broken.jpg", tmp_path / "missing.png"
    argv = ["caption", str(images[0]), str(broken), str(missing), str(images[1]), "--model", str(tmp_path / "export"),
            "--on-error", "skip", "--batch-size", "4"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(images[1])]
    skipped = captured.err.strip().splitlines()
    assert [line.split(": ")[0] for line in skipped] == ["kerasmm caption"] * 3
    assert skipped[0].startswith(f"kerasmm caption: skipped {broken}: ")  # refused before the model loads
    assert skipped[1] == f"kerasmm caption: skipped {missing}: no such file"
    # a.jpg passes the file check but the model decodes PNG only: found in its batch, reported, left out.
    assert skipped[2].startswith(f"kerasmm caption: skipped {images[0]}: the model could not decode it (")
    assert "Traceback" not in captured.err and all(len(line) < 300 for line in skipped)


def test_skip_with_nothing_to_caption_is_an_error(images, tmp_path, capsys):
    FakeCaptioner(1).save(tmp_path / "export" / "1")
    broken = images[0].parent / "broken.jpg"
    assert main(["caption", str(broken), "--model", str(tmp_path / "export"), "--on-error", "skip"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"kerasmm caption: skipped {broken}: ")
    assert lines[1] == "kerasmm caption: error: None of the 1 file(s) can be captioned (each is listed above)."
