"""The README's code examples run as written: every ```python block of README.md and of zoo/*/README.md.

The blocks of one README run in order in one namespace, as a notebook does,
in a scratch folder where the paths they name exist (`annotations/` and
`train2017/` in COCO layout, `photos/` in class folders, `train.jsonl`,
`my_coco/`, `ckpt/clip-vit-base-patch32`: small files written from the shapes
data, or the test fixtures). Sizes are the only change: `kerasmm.zoo.get`
builds an entry's `tiny_` twin (generating without XLA) and
`kerasmm.data.shapes` yields at most `EXAMPLES` examples.

A block that cannot run here says why on the line after its closing fence:
`<!-- no-run: REASON -->` (a download, or a multi-machine set-up). `EXEMPT`
lists them, so a new exception is a deliberate change to this file.
"""

import json
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

import kerasmm

ROOT = pathlib.Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("zoo/*/README.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```\n(?:<!-- no-run: (.*?) -->)?", re.S | re.M)
EXAMPLES = 16
# (README, first line of the block) → why it does not run here.
EXEMPT = {
    ("README.md", 'model = kerasmm.zoo.get("clip")'):
        "downloads (the first two routes) and reads checkpoints of your own",
    ("README.md", "# train.py"): "multi-machine (TF_CONFIG workers and storage every worker reads)",
    **{(f"zoo/{entry}/README.md", "import kerasmm"): "downloads (a keras-hub preset named by its handle)"
       for entry in ("clip", "clip_captioner", "clip_classifier", "siglip")},
}


def blocks(readme):
    """`(first line without its comment, code, no-run reason or None)` of each python block, in order."""
    text = readme.read_text(encoding="utf-8")
    return [(re.sub(r"\s+#.*", "", code.splitlines()[0]), code, reason or None) for code, reason in BLOCK.findall(text)]


def name(readme):
    return readme.relative_to(ROOT).as_posix()


def write_user_files(root):
    """The files and folders the README's examples read, small, from the shapes data."""
    features, captions = kerasmm.data.shapes_arrays(num_examples=12, task="captioning")
    _, labels = kerasmm.data.shapes_arrays(num_examples=12)
    images = [Image.fromarray(image) for image in features["image"]]
    # COCO layout, twice: annotations/captions_train2017.json + train2017/ and my_coco/ for from_tfds.
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(len(images))],
            "annotations": [{"id": i, "image_id": i, "caption": str(c)} for i, c in enumerate(captions)]}
    for annotations, image_dir in (("annotations/captions_train2017.json", "train2017"),
                                   ("my_coco/annotations/captions_train.json", "my_coco/train")):
        (root / annotations).parent.mkdir(parents=True, exist_ok=True)
        (root / annotations).write_text(json.dumps(coco))
        (root / image_dir).mkdir(parents=True)
        for i, image in enumerate(images):
            image.save(root / image_dir / f"{i}.jpg")
    # photos/<class>/NAME.png with NAME.txt captions; train.jsonl naming them.
    names = kerasmm.data.label_names("classification")
    rows = []
    for i, (image, label, caption) in enumerate(zip(images, labels, captions)):
        path = root / "photos" / names[label] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        path.with_suffix(".txt").write_text(str(caption))
        rows.append({"image": str(path.relative_to(root)), "text": str(caption), "label": int(label)})
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    # presets/vit_tiny and presets/bert_tiny: keras-hub preset directories, as `save_to_preset` writes them.
    import keras_hub

    vit = root / "presets" / "vit_tiny"
    keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8, num_layers=1, num_heads=2, hidden_dim=8,
                                 mlp_dim=16).save_to_preset(str(vit))
    keras_hub.layers.ImageConverter(image_size=(16, 16), scale=1 / 127.5, offset=-1.0).save_to_preset(str(vit))
    vocabulary = ["[CLS]", "[SEP]", "[MASK]", *kerasmm.data.shapes_vocabulary()]
    bert = root / "presets" / "bert_tiny"
    keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=8,
                                  intermediate_dim=16, max_sequence_length=16).save_to_preset(str(bert))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(bert))
    (root / "ckpt").mkdir()
    (root / "ckpt" / "clip-vit-base-patch32").symlink_to(ROOT / "tests/fixtures/clip_references/hf_clip")


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A scratch working folder with the README's files, tiny zoo entries and small shapes data."""
    write_user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    get, entries, shapes = kerasmm.zoo.get, kerasmm.zoo.list(include_tiny=True), kerasmm.data.shapes

    def tiny_get(entry, **overrides):
        name = f"tiny_{entry}" if f"tiny_{entry}" in entries else entry
        if "generate_jit_compile" in kerasmm.zoo.entry(name).config:
            # XLA's compile of each decoding loop (2-3 s) is most of a tiny captioner's generate: the examples
            # run without it (tests/models/test_generate_options.py holds the XLA loop to the same captions).
            overrides = {"generate_jit_compile": False, **overrides}
        try:
            model = get(name, **overrides)
        except ValueError:  # an override sized for the full entry (an encoder's output_dim): build that
            model = get(entry, **overrides)
        fit = model.fit
        model.fit = lambda *args, epochs=1, **kwargs: fit(*args, **{**kwargs, "epochs": 1, "verbose": 0})
        return model

    def small_shapes(num_examples=EXAMPLES, **kwargs):
        return shapes(num_examples=min(num_examples, EXAMPLES), **{"batch_size": 8, **kwargs})

    monkeypatch.setattr(kerasmm.zoo, "get", tiny_get)
    monkeypatch.setattr(kerasmm.data, "shapes", small_shapes)
    return tmp_path


def test_every_block_runs_or_says_why_not():
    found = {(name(readme), first): reason for readme in READMES for first, _, reason in blocks(readme)
             if reason is not None}
    assert found == EXEMPT


@pytest.mark.parametrize("readme", READMES, ids=name)
def test_readme_blocks_run(readme, scratch):
    namespace = {"__name__": "__readme__"}
    for number, (first, code, reason) in enumerate(blocks(readme), 1):
        if reason is None:
            try:
                exec(compile(code, f"{name(readme)} block {number}", "exec"), namespace)
            except Exception as error:
                raise AssertionError(f"{name(readme)} block {number} ({first!r}) fails: {error!r}") from error
    if readme.name == "README.md" and readme.parent == ROOT:
        assert "mean_pixels" in kerasmm.encoders.list()


def test_own_encoder_example_registers_and_trains():
    code = next(code for first, code, _ in blocks(ROOT / "README.md") if "MeanPixelEncoder" in code)
    # test_readme_blocks_run registers "mean_pixels" (and the Keras name kerasmm>MeanPixelEncoder) in this
    # process already; each is registered once, so this run of the example registers its own names.
    code = code.replace('"mean_pixels"', '"mean_pixels_again"').replace("MeanPixelEncoder", "MeanPixelEncoderAgain")
    namespace = {}
    exec(code, namespace)
    model = namespace["model"]
    assert type(model.backbone.encoder_layers["image"]).__name__ == "MeanPixelEncoderAgain"
    history = model.fit(kerasmm.data.shapes(num_examples=4, batch_size=2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
