"""`kerasmm.export.saved_model` on a tiny captioner: layout, assets, warm-up, outputs, bad requests."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.data import image_ops
from kerasmm.export import signatures, warmup
from kerasmm.generation import attach_punctuation
from kerasmm.models.captioner import captioner_serving


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved_model")
    model = kerasmm.zoo.get("tiny_captioner")
    path = kerasmm.export.saved_model(model, root / "captioner", version=3, prompted=True)
    return {"model": model, "path": path, "root": root / "captioner", "loaded": tf.saved_model.load(path)}


def test_the_layout_is_tensorflow_servings(exported):
    path = exported["path"]
    assert path == str(exported["root"] / "3")
    assert os.listdir(exported["root"]) == ["3"]  # the temporary directory is gone
    for name in ("saved_model.pb", "variables/variables.index", "assets/vocabulary.txt",
                 "assets/kerasmm_export.json", "assets.extra/tf_serving_warmup_requests"):
        assert os.path.isfile(os.path.join(path, name)), name


def test_the_vocabulary_and_settings_are_assets(exported):
    path, model = exported["path"], exported["model"]
    with open(os.path.join(path, "assets", "vocabulary.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == model.preprocessor.tokenizer.get_vocabulary()
    with open(os.path.join(path, "assets", "kerasmm_export.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["family"] == "captioner" and metadata["model_class"] == "Captioner"
    assert metadata["generation"] == {"sampler": "greedy", "max_length": 16, "num_beams": 4, "start_id": 2,
                                      "end_id": 3, "jit_compile": False}
    assert metadata["preprocessing"]["image_size"] == [32, 32]
    assert metadata["signatures"]["serving_default"] == {
        "inputs": {"image_bytes": {"dtype": "string", "shape": [None]}},
        "outputs": {"captions": {"dtype": "string", "shape": [None]}, "scores": {"dtype": "float32", "shape": [None]}},
    }
    # The loaded graph reads the vocabulary from the copy in assets/ (a tracked asset).
    assert os.path.basename(exported["loaded"].vocabulary_asset.asset_path.numpy().decode()) == "vocabulary.txt"


def test_warmup_requests_are_real_images(exported):
    records = warmup.read_requests(exported["path"])
    assert [(name, signature, sorted(inputs), len(inputs["prompt" if "prompt" in inputs else "image_bytes"]))
            for name, signature, inputs in records] == [
        ("captioner", "serving_default", ["image_bytes"], 1), ("captioner", "serving_default", ["image_bytes"], 2),
        ("captioner", "caption_prompted", ["image_bytes", "prompt"], 1),
        ("captioner", "caption_prompted", ["image_bytes", "prompt"], 2),
        ("captioner", "write_from_prompt", ["prompt"], 1), ("captioner", "write_from_prompt", ["prompt"], 2)]
    first, second = records[1][2]["image_bytes"]
    assert tf.io.is_jpeg(first).numpy() and second.startswith(b"\x89PNG")


def test_captions_and_scores_equal_the_in_process_model(exported):
    model, serve = exported["model"], exported["loaded"].signatures["serving_default"]
    image_bytes = warmup.read_requests(exported["path"])[1][2]["image_bytes"]
    outputs = serve(image_bytes=tf.constant(image_bytes))
    pixels = np.stack([image_ops.decode_image(b).numpy() for b in image_bytes])
    tokens = model.generate(pixels, return_tokens=True)
    assert [c.decode() for c in outputs["captions"].numpy()] == model.detokenize(tokens)

    # scores: the mean log-probability of the caption's tokens and its end token, recomputed in numpy.
    context = {k: v for k, v in model.preprocessor({"image": pixels}).items() if k != "tokens"}
    length = model.backbone.sequence_length
    prompt = np.zeros((len(tokens), length), "int32")
    prompt[:, 0] = model.start_id
    prompt[:, 1:] = tokens
    logits = np.asarray(model({**context, "tokens": tf.constant(prompt)}, training=False), "float64")
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    for row, score in zip(range(len(tokens)), outputs["scores"].numpy()):
        words = [t for t in tokens[row] if t != 0]
        targets = words + ([model.end_id] if len(words) < tokens.shape[1] else [])
        expected = np.mean([log_probs[row, i, t] for i, t in enumerate(targets)])
        assert score == pytest.approx(expected, abs=1e-5)


def test_the_prompted_signature_continues_each_prompt_as_generate_does(exported):
    model, serve = exported["model"], exported["loaded"].signatures["caption_prompted"]
    image_bytes = warmup.read_requests(exported["path"])[1][2]["image_bytes"]
    prompts = ["a large", "small red"]
    outputs = serve(image_bytes=tf.constant(image_bytes), prompt=tf.constant(prompts))
    pixels = np.stack([image_ops.decode_image(b).numpy() for b in image_bytes])
    assert [c.decode() for c in outputs["captions"].numpy()] == model.generate(pixels, prompt=prompts)
    # Scored on what the model wrote after the prompt: the same as the unprompted score of a caption whose
    # prompt positions are left out, recomputed from the full caption's log-probabilities.
    tokens = model.generate(pixels, prompt=prompts, return_tokens=True)
    context = {k: v for k, v in model.preprocessor({"image": pixels}).items() if k != "tokens"}
    given = np.zeros(tokens.shape, bool)
    given[0, :2] = given[1, :2] = True
    expected = captioner_serving.caption_scores(model, context, tf.constant(tokens), model.start_id, model.end_id,
                                                tf.constant(given))
    np.testing.assert_allclose(outputs["scores"].numpy(), expected.numpy(), atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="prompt: element leaves no room to generate"):
        serve(image_bytes=tf.constant(image_bytes), prompt=tf.constant(["a", "a large red circle " * 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="prompt: element is empty or only white space"):
        serve(image_bytes=tf.constant(image_bytes), prompt=tf.constant(["a", " "]))


def test_the_prompt_only_signature_writes_as_generate_does_with_no_inputs(exported):
    model, serve = exported["model"], exported["loaded"].signatures["write_from_prompt"]
    prompts = ["a large", "a small blue", "a"]
    outputs = serve(prompt=tf.constant(prompts))
    assert [c.decode() for c in outputs["captions"].numpy()] == model.generate(prompt=prompts)
    assert np.isfinite(outputs["scores"].numpy()).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="prompt: element is empty or only white space"):
        serve(prompt=tf.constant(["a", ""]))


@pytest.mark.parametrize("image_bytes, message", [
    ([b"GIF87 is not quite a gif", b"%PDF-1.7"], "image_bytes: element is not a JPEG, PNG, GIF, BMP or WebP image"),
    ([b""], "image_bytes: element is an empty string"),
    ([], "image_bytes is an empty batch"),
    # A 12000 x 12000 PNG header: refused before decoding (it would take seconds and gigabytes).
    ([b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00.\xe0\x00\x00.\xe0\x08\x02\x00\x00\x00\x00\x00\x00\x00"],
     "image_bytes: element declares more than 67108864 pixels in its header"),
])
def test_bad_requests_to_the_loaded_model_fail_with_a_clear_error(exported, image_bytes, message):
    serve = exported["loaded"].signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        serve(image_bytes=tf.constant(image_bytes, tf.string))
    assert message in caught.value.message
    good = warmup.read_requests(exported["path"])[0][2]["image_bytes"]
    assert serve(image_bytes=tf.constant(good))["captions"].shape == (1,)  # the model still serves


def test_an_existing_version_is_not_overwritten_unless_asked(exported):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kerasmm.export.saved_model(exported["model"], exported["root"], version=3)
    with pytest.raises(ValueError, match="version must be a positive int"):
        kerasmm.export.saved_model(exported["model"], exported["root"], version=0)


def test_models_that_cannot_be_exported_are_named():
    inputs = keras.Input((3,))
    with pytest.raises(ValueError, match="Cannot export a Functional"):
        kerasmm.export.family(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_only_kerasmm_tasks_are_exported(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Cannot export a Sequential: it is not a kerasmm task.*"
                                         r"MultimodalClassifier, DualEncoder, Captioner and TextToImage"):
        kerasmm.export.saved_model(model, tmp_path / "plain")
    assert not os.path.exists(tmp_path / "plain" / "1")
    # The base task declares no signatures: a new task class must override them.
    with pytest.raises(NotImplementedError, match="Sequential declares no serving signatures"):
        kerasmm.models.ZooTask.serving_signatures(model, tf.Module(), str(tmp_path))


def test_in_graph_detokenize_matches_keras_hub_on_suffix_pieces(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[START]", "[END]", "##", "###", "##a", "a", "b", "##b", "ab", "##é", "é", ".",
                  "##.", "#"]
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=True)
    path = str(tmp_path / "vocabulary.txt")
    table = signatures._id_table(signatures._write_lines(path, vocabulary, "token"))
    ids = np.random.default_rng(0).integers(0, len(vocabulary), size=(2000, 6)).astype("int32")
    ours = captioner_serving.join_wordpieces(table, ids, (0, 2, 3)).numpy()
    kept = tf.ragged.boolean_mask(tf.constant(ids), tf.constant(~np.isin(ids, [0, 2, 3])))
    tf_text = tokenizer._fast_word_piece.detokenize(kept).numpy()  # the tensorflow-text op
    python = [t.encode() for t in tokenizer._detokenize_python(kept.to_list())]
    assert ours.tolist() == tf_text.tolist() == python
    # Then punctuation is re-attached by the function `Captioner.detokenize` applies to keras_hub's output.
    captions = captioner_serving.detokenize(table, ids, (0, 2, 3)).numpy()
    assert captions.tolist() == attach_punctuation(tf_text).numpy().tolist()
    assert any(b" ." in t for t in tf_text.tolist()) and not any(b" ." in c for c in captions.tolist())


def test_verify_loads_the_export_without_kerasmm(exported):
    report = kerasmm.export.verify(exported["path"])
    assert report["errors"] == [] and report["blocked_modules_imported"] == []
    # The prompted signature tokenises its prompts in the graph: tensorflow-text's ops (the unprompted
    # captioners of tests/integration/test_export.py need none).
    assert report["custom_ops"] == ["CaseFoldUTF8", "FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets"]
    assert report["xla_ops"] == [] and report["warmup_requests"] == 6
    assert report["signatures"]["serving_default"]["inputs"] == {"image_bytes": {"dtype": "string", "shape": [None]}}


def test_a_random_sampler_exports_with_its_seed_state(exported, tmp_path):
    path = kerasmm.export.saved_model(exported["model"], tmp_path / "top_k", sampler="top_k", max_length=6,
                                      scores=False, warmup_requests=False)
    loaded = tf.saved_model.load(path)
    assert any("seed_generator_state" in v.name for v in loaded.other_variables)
    image_bytes = warmup.read_requests(exported["path"])[1][2]["image_bytes"]
    outputs = loaded.signatures["serving_default"](image_bytes=tf.constant(image_bytes))
    assert sorted(outputs) == ["captions"] and outputs["captions"].shape == (2,)
    with open(os.path.join(path, "assets", "kerasmm_export.json"), encoding="utf-8") as f:
        assert json.load(f)["deterministic"] is False
