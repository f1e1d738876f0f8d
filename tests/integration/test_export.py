"""Every zoo family exported, then served by a process that cannot import kerasmm or keras.

One module fixture exports a tiny model of each family (and a beam-search
captioner), computes the in-process model's outputs for the same raw
requests, and runs `serve_exported.py` once over all of them; the tests
compare. Requests mix JPEG, PNG (RGBA, greyscale, another size and aspect)
and WAV at two sample rates, so decoding, alpha compositing, cropping,
resizing and resampling are all on the compared path.
"""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.data import audio_ops, image_ops
from kerasmm.losses.contrastive import MAX_LOGIT_SCALE
from kerasmm.models.captioner.captioner_serving import caption_scores

SCRIPT = os.path.join(os.path.dirname(__file__), "serve_exported.py")
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
TOLERANCE = 1e-5
THREADS, CALLS = 8, 100
# name → (zoo entry, export options, in-process generate options)
MODELS = {
    "classifier": ("tiny_audio_visual_classifier", {}, {}),
    "dual_encoder": ("tiny_dual_encoder", {}, {}),
    "captioner": ("tiny_captioner", {}, {}),
    "captioner_beam": ("tiny_captioner", {"sampler": "beam", "num_beams": 3, "max_length": 10},
                       {"sampler": "beam", "num_beams": 3, "max_length": 10}),
    "crossmodal_lm": ("tiny_crossmodal_lm", {}, {}),
    "text_to_image": ("tiny_text_to_image", {}, {}),
}

pytestmark = pytest.mark.integration


def raw_inputs():
    """Three of each raw input: image bytes, texts, WAV bytes (16 kHz and 8 kHz)."""
    features, _ = kerasmm.data.shapes_arrays(num_examples=3, image_size=48, task="classification", seed=3,
                                             with_audio=True, audio_seconds=0.125, caption_dropout=0.0)
    images = features["image"]
    rgba = np.concatenate([images[1], np.full(images[1].shape[:2] + (1,), 200, np.uint8)], axis=-1)
    image_bytes = [
        tf.io.encode_jpeg(images[0][:, :40], quality=90).numpy(),  # 48x40 JPEG: cropped to square, resized
        tf.io.encode_png(rgba).numpy(),  # RGBA PNG: alpha over white
        tf.io.encode_png(tf.image.rgb_to_grayscale(images[2][8:40, 8:40])).numpy(),  # 32x32 grey: no resize
    ]
    waves = features["audio"]
    wav_bytes = [
        tf.audio.encode_wav(waves[0][:, None], 16000).numpy(),
        tf.audio.encode_wav(waves[1][::2, None], 8000).numpy(),  # resampled to 16 kHz in the graph
        tf.audio.encode_wav(waves[2][:1000, None], 16000).numpy(),  # shorter than the model's clip: padded
    ]
    texts = [t.encode() for t in features["text"]]
    texts[2] = b"What IS a Large, red circle?"  # upper case and punctuation through the tokenizer
    return {"image_bytes": image_bytes, "text": texts, "audio_bytes": wav_bytes}


def decoded(raw):
    """The in-process path's inputs: pixels and waveforms decoded with kerasmm.data's ops."""
    return {
        "image": [image_ops.decode_image(b).numpy() for b in raw["image_bytes"]],
        "audio": [audio_ops.decode_wav(b, sample_rate=16000).numpy() for b in raw["audio_bytes"]],
        "text": np.array([t.decode() for t in raw["text"]], dtype=object),
    }


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classifier_reference(model, raw, local):
    probabilities = []
    for i in range(len(local["text"])):
        x = model.preprocessor({"image": local["image"][i][None], "text": local["text"][i:i + 1],
                                "audio": local["audio"][i][None]})
        probabilities.append(softmax(np.asarray(model(x, training=False), "float64"))[0])
    probabilities = np.stack(probabilities)
    names = np.array([n.encode() for n in model.class_names], dtype=object)
    return {"serving_default": [
        {"probabilities": probabilities, "label": names[probabilities.argmax(1)],
         "label_id": probabilities.argmax(1), "class_names": np.tile(names, (len(probabilities), 1))}
    ]}, {"serving_default": [raw]}


def dual_encoder_reference(model, raw, local):
    images = np.concatenate([model.encode_image(image[None]) for image in local["image"]])
    texts = model.encode_text(local["text"])
    similarity = images @ texts.T
    logits = np.exp(min(float(model.logit_scale_variable.numpy()), MAX_LOGIT_SCALE)) * similarity
    score = {"similarity": similarity, "logits": logits, "probabilities": softmax(logits)}
    expected = {"encode_image": [{"embedding": images}], "encode_text": [{"embedding": texts}],
                "score": [score], "serving_default": [score]}
    requests = {"encode_image": [{"image_bytes": raw["image_bytes"]}], "encode_text": [{"text": raw["text"]}],
                "score": [{"image_bytes": raw["image_bytes"], "text": raw["text"]}],
                "serving_default": [{"image_bytes": raw["image_bytes"], "text": raw["text"]}]}
    return expected, requests


def captioner_reference(model, raw, local, options):
    modalities = model.preprocessor.modalities
    subsets = {"serving_default": modalities}
    if len(modalities) > 1:
        subsets.update({f"caption_{m}": [m] for m in modalities})
    expected, requests = {}, {}
    for signature, subset in subsets.items():
        captions, scores = [], []
        for i in range(len(local["text"])):
            features = {m: local[m][i][None] for m in subset}
            tokens = model.generate(features, return_tokens=True, **options)
            captions.append(model.detokenize(tokens)[0].encode())
            context = {k: v for k, v in model.preprocessor(features).items() if k != "tokens"}
            scores.append(float(caption_scores(model, context, tf.constant(tokens), model.start_id, model.end_id)[0]))
        expected[signature] = [{"captions": np.array(captions, dtype=object), "scores": np.array(scores)}]
        requests[signature] = [{f"{m}_bytes": raw[f"{m}_bytes"] for m in subset}]
    return expected, requests


def text_to_image_reference(model, raw, local):
    images = model.generate(list(local["text"]))
    return {"serving_default": [{"images": images}]}, {"serving_default": [{"text": raw["text"]}]}


def encode(requests):
    return {sig: [{k: [base64.b64encode(v).decode() for v in values] for k, values in r.items()} for r in rs]
            for sig, rs in requests.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    raw = raw_inputs()
    local = decoded(raw)
    spec, expected, paths = {"models": []}, {}, {}
    for name, (entry, export_options, generate_options) in MODELS.items():
        model = kerasmm.zoo.get(entry)
        paths[name] = kerasmm.export.saved_model(model, root / name, **export_options)
        family = kerasmm.export.family(model)
        if family == "captioner":
            expected[name], requests = captioner_reference(model, raw, local, generate_options)
        else:
            reference = {"classifier": classifier_reference, "dual_encoder": dual_encoder_reference,
                         "text_to_image": text_to_image_reference}[family]
            expected[name], requests = reference(model, raw, local)
        requests = {sig: rs + [{k: v[:1] for k, v in rs[0].items()}] for sig, rs in requests.items()}  # + batch 1
        spec["models"].append({"name": name, "dir": paths[name], "requests": encode(requests)})
    spec["load"] = {"model": "captioner", "signature": "serving_default", "threads": THREADS, "calls": CALLS}
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, SCRIPT, str(spec_path), str(root / "out.npz")], capture_output=True,
                          text=True, timeout=300, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(root / "out.npz", allow_pickle=True) as arrays:  # our own file: string outputs are object arrays
        outputs = {k: arrays[k] for k in arrays.files}
    return {"report": report, "outputs": outputs, "expected": expected, "paths": paths}


def test_the_serving_process_imported_neither_kerasmm_nor_keras(served):
    assert served["report"]["imported_blocked_modules"] == []


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_outputs_equal_the_in_process_model(served, name):
    for signature, per_request in served["expected"][name].items():
        for index, expected in enumerate(per_request):
            for key, want in expected.items():
                got = served["outputs"][f"{name}/{signature}/{index}/{key}"]
                want = np.asarray(want)
                assert got.shape == want.shape, (signature, key)
                if want.dtype.kind in "OSU":
                    assert [bytes(g) for g in got.reshape(-1)] == [bytes(w) for w in want.reshape(-1)], (signature, key)
                else:
                    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=f"{signature} {key}")
            # The batch-1 request gives the first row of the batch-3 one (a score matrix's softmax
            # over the texts depends on the texts sent, so it is left out).
            for key in expected:
                if key == "probabilities" and name == "dual_encoder":
                    continue
                first = served["outputs"][f"{name}/{signature}/1/{key}"]
                full = served["outputs"][f"{name}/{signature}/0/{key}"]
                head = full[tuple(slice(0, n) for n in first.shape)]
                if first.dtype.kind in "OSU":
                    assert (first == head).all()
                else:
                    np.testing.assert_allclose(first, head, rtol=0, atol=TOLERANCE)
    assert served["report"]["models"][name]["doubled_batch_difference"] <= TOLERANCE


def test_text_to_image_png_bytes_hold_the_images(served):
    png = served["outputs"]["text_to_image/serving_default/0/png_bytes"]
    images = served["outputs"]["text_to_image/serving_default/0/images"]
    for data, image in zip(png, images):
        np.testing.assert_array_equal(tf.io.decode_png(bytes(data)).numpy(), np.round(image * 255).astype("uint8"))


@pytest.mark.parametrize("name", list(MODELS))
def test_every_signature_has_a_none_batch_dimension(served, name):
    for signature, specs in served["report"]["models"][name]["signatures"].items():
        for side in ("inputs", "outputs"):
            for key, spec in specs[side].items():
                assert spec["shape"] and spec["shape"][0] is None, (signature, side, key, spec)
        assert all(spec["dtype"] == "string" for spec in specs["inputs"].values())


def test_signature_names(served):
    names = {name: sorted(model["signatures"]) for name, model in served["report"]["models"].items()}
    assert names == {
        "classifier": ["serving_default"],
        "dual_encoder": ["encode_image", "encode_text", "score", "serving_default"],
        "captioner": ["serving_default"],
        "captioner_beam": ["serving_default"],
        "crossmodal_lm": ["caption_audio", "caption_image", "serving_default"],
        "text_to_image": ["serving_default"],
    }


def test_captioners_need_no_tensorflow_text_and_text_models_only_its_tokenizer_ops(served):
    models = served["report"]["models"]
    for name in ("captioner", "captioner_beam", "crossmodal_lm"):
        assert models[name]["custom_ops"] == []
    for name in ("classifier", "dual_encoder", "text_to_image"):
        assert models[name]["custom_ops"] == ["CaseFoldUTF8", "FastWordpieceTokenizeWithOffsets",
                                              "RegexSplitWithOffsets"]


def test_under_load_many_threads_get_identical_outputs(served):
    load = dict(served["report"]["load"])
    load.pop("seconds")
    assert load == {"calls": THREADS * CALLS, "errors": [], "error_count": 0, "mismatches": 0}


@pytest.mark.parametrize("name", ["classifier", "dual_encoder", "captioner", "crossmodal_lm"])
def test_bad_requests_fail_with_a_clear_error_and_the_process_goes_on(served, name):
    for signature, cases in served["report"]["models"][name]["bad_requests"].items():
        for case, error in cases.items():
            if case == "batch_sizes_differ" and name == "dual_encoder":
                assert error is None  # N images scored against M texts: an [N, M] matrix
                continue
            assert error is not None, (signature, case)
            kind, message = error
            assert kind == "InvalidArgumentError", (signature, case, error)
            if case == "empty_batch":
                assert "is an empty batch" in message
            elif case.endswith(":empty_string"):
                assert f"{case.split(':')[0]}: element is an empty string" in message
            elif case.endswith(":not_encoded"):
                assert "element is not a" in message and "(index:)] [1]" in message
            else:
                assert "must have the same batch size" in message


@pytest.mark.parametrize("name", ["dual_encoder"])
def test_saved_model_cli_lists_the_signatures(served, name):
    done = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", served["paths"][name]], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    for signature in served["report"]["models"][name]["signatures"]:
        assert f"signature_def['{signature}']" in done.stdout
    assert "shape: (-1)" in done.stdout and "dtype: DT_STRING" in done.stdout
