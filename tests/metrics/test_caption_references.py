"""Caption scores against every reference of an image (the COCO protocol), checked against pycocoevalcap.

pycocoevalcap's scorers get already lower-cased, space-tokenised strings (no
Java PTB tokenizer); its `Cider` is CIDEr-D (sigma 6, clipped tf-idf, length
penalty, x10) with document frequencies over the evaluated set's references,
its `Bleu` corpus BLEU with the "closest" reference length.
"""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerasmm
from kerasmm.cli import evaluate as cli_evaluate
from kerasmm.metrics import Bleu, CiderD, RougeL

pytest.importorskip("pycocoevalcap")

# (references, hypothesis): several references each, some repeated words, one empty hypothesis.
SET = [
    (["a man is riding a horse on the beach", "a person rides a horse by the ocean",
      "a man on a brown horse near the water", "someone riding a horse on sand", "a horse and rider on a beach"],
     "a man riding a horse on the beach"),
    (["two dogs play with a ball in the park", "two dogs playing in the grass", "dogs chase a red ball"],
     "two dogs playing with a ball"),
    (["a bowl of soup and bread on a table", "soup in a white bowl next to bread"], "a bowl of soup"),
    (["a city street at night with cars", "cars driving down a street at night", "traffic on a city street",
      "a busy road in the evening", "a street full of cars at night", "lights of cars on a road at night",
      "a night scene of a city street"],
     "a street with cars at night at night"),
    (["a cat sitting on a laptop keyboard", "a cat on a computer"], "a cat on a laptop"),
    (["children playing soccer on a field", "kids play football"], ""),
    (["a red bus parked at a stop", "a double decker bus on the street", "a red bus"], "a red bus on the street"),
]
PAD, START, END = 0, 1, 2
TOKENS = dict(pad_id=PAD, end_id=END, ignore_ids=(START,))


def coco(fixture):
    from pycocoevalcap.bleu.bleu import Bleu as CocoBleu
    from pycocoevalcap.cider.cider import Cider as CocoCider
    from pycocoevalcap.rouge.rouge import Rouge as CocoRouge

    gts = {i: list(refs) for i, (refs, _) in enumerate(fixture)}
    res = {i: [hyp] for i, (_, hyp) in enumerate(fixture)}
    bleu, _ = CocoBleu(4).compute_score(gts, res, verbose=0)
    return {**{f"bleu_{n + 1}": b for n, b in enumerate(bleu)}, "cider_d": CocoCider().compute_score(gts, res)[0],
            "rouge_l": CocoRouge().compute_score(gts, res)[0]}


def encode(fixture):
    words = {w: i + 3 for i, w in enumerate(sorted({w for refs, h in fixture for t in refs + [h] for w in t.split()}))}
    y_true = np.zeros((len(fixture), max(len(r) for r, _ in fixture), 12), np.int64)
    y_pred = np.zeros((len(fixture), 12), np.int64)
    for i, (refs, hyp) in enumerate(fixture):
        for j, ref in enumerate(refs):
            ids = [START] + [words[w] for w in ref.split()] + [END]
            y_true[i, j, : len(ids)] = ids
        ids = [START] + [words[w] for w in hyp.split()] + [END]
        y_pred[i, : len(ids)] = ids
    return y_true, y_pred


def kerasmm_scores(y_true, y_pred, batch=3):
    metrics = [*[Bleu(max_order=n, **TOKENS) for n in (1, 2, 3, 4)],
               CiderD(capacity=len(y_pred), max_length=12, max_references=y_true.shape[1], **TOKENS),
               RougeL(**TOKENS)]
    update = tf.function(lambda t, p: [m.update_state(t, p) for m in metrics])  # graph mode, batch by batch
    for start in range(0, len(y_pred), batch):
        update(y_true[start:start + batch], y_pred[start:start + batch])
    return {m.name: float(m.result()) for m in metrics}


def assert_agree(scores, expected):
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-4 if key == "cider_d" else 1e-6), key


def test_every_reference_scores_as_pycocoevalcap():
    expected = coco(SET)
    assert 0.2 < expected["bleu_4"] < expected["bleu_1"] and expected["cider_d"] > 0.5
    scores = kerasmm_scores(*encode(SET))
    assert_agree(scores, expected)
    # One reference each is another corpus: its scores (pycocoevalcap's too) differ.
    first_only = [(refs[:1], hyp) for refs, hyp in SET]
    assert coco(first_only)["bleu_4"] != pytest.approx(expected["bleu_4"], abs=1e-3)
    assert_agree(kerasmm_scores(*encode(first_only)), coco(first_only))


# --- readers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    """Three shapes images with 3, 1 and 2 captions."""
    root = tmp_path_factory.mktemp("coco")
    (root / "images").mkdir()
    features, captions = kerasmm.data.shapes_arrays(num_examples=3, task="captioning", image_size=32, split="test")
    counts = (3, 1, 2)
    extra = ["a shape", "a small shape", "something"]
    images, annotations = [], []
    for i, image in enumerate(features["image"]):
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png"})
        for caption in [str(captions[i])] + extra[: counts[i] - 1]:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "caption": caption})
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return root, [[str(captions[i])] + extra[: counts[i] - 1] for i in range(3)]


def test_from_coco_references_gives_every_caption(coco_folder):
    root, expected = coco_folder
    ds = kerasmm.data.from_coco(str(root / "captions.json"), str(root / "images"), captions="references",
                                image_size=32, batch_size=2)
    assert ds.element_spec[1].shape.as_list() == [None, 3]
    rows = [[t.decode() for t in row] for _, targets in ds for row in targets.numpy()]
    assert rows == [refs + [""] * (3 - len(refs)) for refs in expected]
    with pytest.raises(ValueError, match="target='text'"):
        kerasmm.data.from_coco(str(root / "captions.json"), str(root / "images"), captions="references",
                               target="label")


# --- the captioner's evaluate and kerasmm eval -------------------------------------


@pytest.fixture(scope="module")
def captioner():
    keras.utils.set_random_seed(1)  # untrained: its greedy captions are long runs of shapes words
    return kerasmm.zoo.get("tiny_captioner", sequence_length=12)


def references_data(num_examples=6):
    features, captions = kerasmm.data.shapes_arrays(num_examples=num_examples, task="captioning", split="test")
    others = ["green green green circle", "a green circle", "circle green green green green"]
    rows = [[str(c), others[i % 3], "" if i % 2 else "green circle circle green"] for i, c in enumerate(captions)]
    return features, np.array(rows, dtype=object)


def test_evaluate_scores_every_reference_as_pycocoevalcap(captioner):
    features, references = references_data()
    data = tf.data.Dataset.from_tensor_slices((features, references)).batch(4)
    logs = captioner.evaluate(data, verbose=0, return_dict=True)
    assert {"loss", "token_accuracy", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "rouge_l"} <= set(logs)
    hypotheses, refs = cli_evaluate.caption_pairs(captioner, data)
    expected = cli_evaluate.coco_scores(captioner, hypotheses, refs)["kerasmm"]
    assert expected["bleu_4"] > 0.05 and expected["cider_d"] > 0.05  # a non-trivial check
    assert_agree({k: logs[k] for k in expected}, expected)
    # The first reference alone (the caption the loss uses) scores otherwise.
    first_only = cli_evaluate.coco_scores(captioner, hypotheses, [r[:1] for r in refs])["kerasmm"]
    assert first_only["bleu_4"] != pytest.approx(logs["bleu_4"], abs=1e-3)


def test_kerasmm_eval_prints_pycocoevalcap_scores(coco_folder, tmp_path, capsys):
    from kerasmm import recipes
    from kerasmm.cli import main

    root, _ = coco_folder
    keras.utils.set_random_seed(1)
    model = recipes.load("tiny_captioner").build_model()
    model.save(tmp_path / "model.keras")
    status = main(["eval", "tiny_captioner", "--model", str(tmp_path / "model.keras"),
                   "--data", f"coco:{root / 'captions.json'}:{root / 'images'}"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    metrics = json.loads(out[-1])
    lines = {line.split(":", 1)[0]: line.split(": ", 1)[1] for line in out if line.startswith("pycocoevalcap")}
    coco_scores = json.loads(lines["pycocoevalcap, kerasmm tokenisation"])
    assert_agree({k: metrics[k] for k in coco_scores}, coco_scores)
    if shutil.which("java"):
        assert set(json.loads(lines["pycocoevalcap, PTB tokenisation"])) == set(coco_scores)


def test_from_tfds_references_pads_each_batch(coco_folder, tmp_path):
    root, expected = coco_folder
    manual = tmp_path / "manual"
    (manual / "annotations").mkdir(parents=True)
    shutil.copy(root / "captions.json", manual / "annotations" / "captions_val.json")
    shutil.copytree(root / "images", manual / "val")
    from kerasmm.data.tfds import from_tfds

    ds = from_tfds("kerasmm_local_coco", split="validation", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual),
                   captions="references", image_size=32, batch_size=3)
    (_, targets), = list(ds)
    rows = sorted([t.decode() for t in row if t] for row in targets.numpy())
    assert targets.shape == (3, 3) and rows == sorted(expected)
