"""Pretrained keras-hub encoders from local presets: "keras_hub_image" and "keras_hub_text"."""

import os
import shutil

import keras
import keras_hub
import numpy as np
import pytest

import kerasmm
from kerasmm import testing
from kerasmm.models import MultimodalBackbone
from kerasmm.encoders.pretrained import KerasHubImageEncoder, KerasHubTextEncoder, preset_tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "circle", "square"]
IDS = np.array([[5, 6, 8, 0, 0], [7, 9, 0, 0, 0]], "int32")  # "a red circle", "blue square"


def _images(size=20, seed=0):
    return np.random.default_rng(seed).random((2, size, size, 3)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _close(got, want, atol=1e-5):
    np.testing.assert_allclose(_np(got), _np(want), atol=atol, rtol=1e-5)


def _vit():
    return keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    )


def _resnet():
    # keras-hub's ResNet needs 64 filters in its first stage; still ~76k weights.
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        image_shape=(None, None, 3),
    )


def _bert():
    return keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16,
    )


def _tower_kwargs(image):
    common = {"hidden_dim": 8, "num_layers": 1, "num_heads": 2, "intermediate_dim": 16}
    if image:
        return {**common, "patch_size": 8, "image_shape": (16, 16, 3)}
    return {**common, "vocabulary_size": 12, "embedding_dim": 8, "max_sequence_length": 10}


def _clip():
    return keras_hub.models.CLIPBackbone(
        vision_encoder=keras_hub.models.CLIPVisionEncoder(**_tower_kwargs(True)),
        text_encoder=keras_hub.models.CLIPTextEncoder(**_tower_kwargs(False)),
        projection_dim=4,
    )


def _siglip():
    return keras_hub.models.SigLIPBackbone(
        vision_encoder=keras_hub.models.SigLIPVisionEncoder(**_tower_kwargs(True)),
        text_encoder=keras_hub.models.SigLIPTextEncoder(**_tower_kwargs(False)),
    )


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Tiny presets on disk, with the backbone objects that wrote them."""
    root = tmp_path_factory.mktemp("presets")
    made = {}
    for name, build, converter in [
        ("vit", _vit, keras_hub.layers.ImageConverter(image_size=(16, 16), scale=1 / 127.5, offset=-1.0)),
        ("resnet", _resnet, keras_hub.layers.ImageConverter(scale=[1 / 255 / s for s in (0.2, 0.3, 0.4)],
                                                            offset=[-0.5, -0.4, -0.3])),
        ("bert", _bert, None),
        ("clip", _clip, None),
        ("siglip", _siglip, None),
    ]:
        backbone = build()
        path = str(root / name)
        backbone.save_to_preset(path)
        if converter is not None:
            converter.save_to_preset(path)
        made[name] = (path, backbone, converter)
    keras_hub.models.BertTokenizer(vocabulary=VOCAB).save_to_preset(made["bert"][0])
    return made


def _copy(presets, name, tmp_path):
    """A private copy of a preset, for tests that delete it."""
    path = str(tmp_path / name)
    shutil.copytree(presets[name][0], path)
    return path


def test_registered():
    assert {"keras_hub_image", "keras_hub_text"} <= set(kerasmm.encoders.list())
    assert kerasmm.encoders.modality_of("keras_hub_image") == "image"
    assert kerasmm.encoders.modality_of("keras_hub_text") == "text"


# ---------------------------------------------------------------- image


@pytest.mark.parametrize("name", ["vit", "resnet"])
def test_image_preset_matches_backbone_with_its_converter(presets, name):
    path, backbone, converter = presets[name]
    images = _images(20)
    encoder = kerasmm.encoders.get("keras_hub_image", preset=path)
    assert encoder.preset == os.path.abspath(path)
    out = encoder(images)

    # The reference: keras-hub's own converter on 0-255 pixels, then the backbone.
    pixels = images * 255.0
    if converter.image_size is not None:
        pixels = keras.layers.Resizing(*converter.image_size)(pixels)
    want = _np(backbone(converter(pixels)))
    if name == "vit":  # a token sequence with a class token: pooled is that token
        _close(out["sequence"], want)
        _close(out["pooled"], want[:, 0])
    else:  # a 5x5 feature map, flattened; pooled is the mean
        _close(out["sequence"], want.reshape(2, 25, 64))
        _close(out["pooled"], want.mean(axis=(1, 2)))
    assert _np(out["sequence_mask"]).all()
    assert encoder.output_dim == want.shape[-1]


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_two_tower_preset_gives_its_vision_tower(presets, name):
    path, backbone, _ = presets[name]
    tower = backbone.vision_encoder
    images = _images(16)
    encoder = KerasHubImageEncoder(path, pooling="auto")
    assert type(encoder.backbone) is type(tower)
    out = encoder(images)  # no converter in the preset: the [0, 1] images go in unchanged
    if name == "clip":
        want = _np(tower({"images": images}))
        _close(out["sequence"], want)
        _close(out["pooled"], want[:, 0])  # CLIP's vision pooler: the class token
    else:
        sequence = keras.Model(tower.input, tower.post_layer_norm.output)({"images": images})
        _close(out["sequence"], sequence)  # before the attention-pooling head
        _close(out["pooled"], tower({"images": images}))  # the head's output
    mean = KerasHubImageEncoder(path, pooling="mean")(images)
    _close(mean["pooled"], _np(mean["sequence"]).mean(axis=1))


def test_fixed_size_backbone_without_converter_refuses_other_sizes(presets):
    encoder = KerasHubImageEncoder(presets["clip"][0])
    with pytest.raises(ValueError, match="takes 16x16 images, got 20x20.*no image converter"):
        encoder(_images(20))


def test_image_layer_contract(presets):
    testing.run_layer_test(
        KerasHubImageEncoder,
        init_kwargs={"preset": presets["vit"][0], "output_dim": 4, "trainable_backbone": False},
        input_data=_images(24),
        expected_output_shape={"sequence": (None, 5, 4), "pooled": (None, 4), "sequence_mask": (None, 5)},
        expected_num_trainable_weights=2,  # the projection only
    )


# ---------------------------------------------------------------- text


def _packed_bert_inputs():
    ids = np.array([[2, 5, 6, 8, 3, 0, 0], [2, 7, 9, 3, 0, 0, 0]], "int32")  # [CLS] ... [SEP] [PAD]
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": (ids != 0).astype("int32")}


def test_bert_preset_with_tokenizer(presets):
    path, backbone, _ = presets["bert"]
    encoder = kerasmm.encoders.get("keras_hub_text", preset=path)
    assert isinstance(encoder.tokenizer, keras_hub.models.BertTokenizer)
    assert (encoder.start_token_id, encoder.end_token_id, encoder.pad_token_id) == (2, 3, 0)
    assert encoder.tokenizer(["a red circle", "blue square"]) == [[5, 6, 8], [7, 9]]

    out = encoder(IDS)
    want = backbone(_packed_bert_inputs())
    _close(out["sequence"], want["sequence_output"])
    _close(out["pooled"], want["pooled_output"])
    np.testing.assert_array_equal(_np(out["sequence_mask"]), _packed_bert_inputs()["padding_mask"] == 1)

    plain = KerasHubTextEncoder(path, add_special_tokens=False, pooling="mean")(IDS)
    assert tuple(plain["sequence"].shape) == (2, 5, 8)
    assert isinstance(preset_tokenizer(path), keras_hub.models.BertTokenizer)


def test_text_vocabulary_must_be_the_presets(presets):
    path = presets["bert"][0]
    KerasHubTextEncoder(path, vocabulary_size=len(VOCAB))  # the preset's own tokenizer: fine
    with pytest.raises(ValueError, match=r"vocabulary of 30 tokens but the preset's tokenizer has 10.*preset_tok"):
        KerasHubTextEncoder(path, vocabulary_size=30)
    # Through the zoo: its default (shapes) vocabulary is not the preset's.
    with pytest.raises(ValueError, match="needs ids from its own tokenizer"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier",
                        encoders={"text": {"name": "keras_hub_text", "preset": path, "output_dim": 16}})
    with pytest.raises(ValueError, match=r"17 positions, but BertBackbone takes at most 16; .* at most 14"):
        KerasHubTextEncoder(path)(np.ones((1, 15), "int32"))


def test_clip_text_tower(presets):
    path, backbone, _ = presets["clip"]
    tower = backbone.text_encoder
    # No tokenizer in this preset: give CLIP's start and end ids (end = the highest id, as in CLIP).
    encoder = KerasHubTextEncoder(path, start_token_id=10, end_token_id=11)
    assert type(encoder.backbone) is keras_hub.models.CLIPTextEncoder
    out = encoder(IDS)
    packed = np.array([[10, 5, 6, 8, 11, 0, 0], [10, 7, 9, 11, 0, 0, 0]], "int32")
    want = _np(tower({"token_ids": packed}))
    _close(out["sequence"], want)
    # CLIP pools the end token (keras-hub's CLIPTextPooler: the argmax of the ids).
    _close(out["pooled"], want[np.arange(2), packed.argmax(axis=1)])


def test_siglip_text_tower_pads_to_its_fixed_length(presets):
    path, backbone, _ = presets["siglip"]
    tower = backbone.text_encoder
    encoder = KerasHubTextEncoder(path, end_token_id=1)
    out = encoder(IDS)
    packed = np.zeros((2, 10), "int32")
    packed[0, :4], packed[1, :3] = [5, 6, 8, 1], [7, 9, 1]
    _close(out["pooled"], tower({"token_ids": packed}))
    assert tuple(out["sequence"].shape) == (2, 10, 8)
    assert _np(out["sequence_mask"]).sum(axis=1).tolist() == [4, 3]


def test_text_layer_contract(presets):
    testing.run_layer_test(
        KerasHubTextEncoder,
        init_kwargs={"preset": presets["bert"][0], "output_dim": 4},
        input_data=IDS,
        expected_output_shape={"sequence": (None, 7, 4), "pooled": (None, 4), "sequence_mask": (None, 7)},
        expected_num_trainable_weights=len(presets["bert"][1].trainable_weights) + 2,
        run_saving_check=False,  # test_keras_file_restores_without_the_preset saves one
    )


# ---------------------------------------------------------------- freezing


def test_freeze_and_unfreeze(presets):
    path, backbone, _ = presets["bert"]
    encoder = KerasHubTextEncoder(path, trainable_backbone=False)
    encoder(IDS)
    assert encoder.trainable_weights == []
    assert len(encoder.non_trainable_weights) == len(backbone.weights)

    encoder.unfreeze_last = 2
    assert len(encoder.trainable_weights) == 2 * 16 + 2
    encoder.unfreeze_last = 1  # the last Transformer layer and the pooler
    trained = {w.path for w in encoder.trainable_weights}
    assert len(trained) == 16 + 2
    assert all(p.startswith(("transformer_layer_1/", "pooled_dense/")) for p in trained)
    config = encoder.get_config()
    assert (config["trainable_backbone"], config["unfreeze_last"]) == (False, 1)
    assert len(KerasHubTextEncoder.from_config(config).trainable_weights) == 18

    encoder.trainable_backbone = True
    assert len(encoder.trainable_weights) == len(backbone.trainable_weights)
    with pytest.raises(ValueError, match="unfreeze_last=3 but BertBackbone has 2 blocks"):
        KerasHubTextEncoder(path, trainable_backbone=False, unfreeze_last=3)

    # A CNN's blocks are its `...blockN` layer groups; its batch norms freeze too.
    resnet = KerasHubImageEncoder(presets["resnet"][0], output_dim=4, trainable_backbone=False, unfreeze_last=1)
    resnet(_images(16))
    names = {w.path.split("/")[-2] for w in resnet.trainable_weights}
    assert names == {"stack0_block0_1_conv", "stack0_block0_1_bn", "stack0_block0_2_conv", "stack0_block0_2_bn",
                     "projection"}


# ---------------------------------------------------------------- saving


def test_keras_file_restores_without_the_preset(presets, tmp_path):
    vit = _copy(presets, "vit", tmp_path)
    bert = _copy(presets, "bert", tmp_path)
    backbone = MultimodalBackbone(
        encoders={
            "image": {"name": "keras_hub_image", "preset": vit, "output_dim": 8, "unfreeze_last": 1,
                      "trainable_backbone": False},
            "text": {"name": "keras_hub_text", "preset": bert},
        },
        fusion="weighted_sum", image_size=(20, 20), sequence_length=5,
    )
    x = {"image": _images(20), "image_mask": np.ones((2,), "float32"),
         "text": IDS, "text_mask": np.ones((2,), "float32")}
    want = _np(backbone(x))
    path = str(tmp_path / "model.keras")
    backbone.save(path)
    shutil.rmtree(vit)
    shutil.rmtree(bert)
    loaded = keras.saving.load_model(path, safe_mode=True)
    _close(loaded(x), want)
    text = loaded.encoder_layers["text"]
    # The tokenizer travels in the .keras file too.
    assert text.tokenizer(["a red circle"]) == [[5, 6, 8]]
    image = loaded.encoder_layers["image"]
    # The last ViT block and the final norm still train (output_dim 8 is the ViT width: no projection).
    assert len(image.trainable_weights) == len(backbone.encoder_layers["image"].trainable_weights) == 16 + 2


def test_zoo_model_with_a_pretrained_image_encoder(presets):
    path, backbone, converter = presets["vit"]
    model = kerasmm.zoo.get(
        "tiny_weighted_sum_classifier",
        encoders={"image": {"name": "keras_hub_image", "preset": path, "output_dim": 16}},
    )
    encoder = model.backbone.encoder_layers["image"]
    assert isinstance(encoder, KerasHubImageEncoder) and encoder.output_dim == 16
    raw, _ = next(iter(kerasmm.data.shapes(num_examples=2, batch_size=2)))
    x = model.preprocessor(raw)
    assert tuple(model(x).shape) == (2, model.num_classes)
    # The encoder inside the zoo model holds the preset's weights.
    for got, want in zip(encoder.backbone.weights, backbone.weights):
        np.testing.assert_array_equal(_np(got), _np(want))


# ---------------------------------------------------------------- bad input


REMOTE = [
    "bert_base_en",  # a built-in keras-hub name: its Kaggle handle is fetched
    "kaggle://keras/bert/keras/bert_tiny_en_uncased/2",
    "hf://google/siglip-base-patch16-224",
]


@pytest.fixture
def offline(monkeypatch):
    """The hub clients keras-hub uses, failing as they do without network (tests never download)."""
    import huggingface_hub
    import kagglehub

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com' ([Errno -2] Name or service not known)")

    monkeypatch.setattr(kagglehub, "model_download", unreachable)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)


def test_a_named_preset_offline_is_a_one_line_error_saying_how_to_pass_a_directory(offline):
    # One test rather than a parametrised one: each test pays a Keras session teardown.
    for make in (KerasHubImageEncoder, KerasHubTextEncoder, preset_tokenizer):
        for preset in REMOTE:
            with pytest.raises(ValueError, match=r"cannot download the keras-hub preset .*ConnectionError.*"
                                                 r"save_to_preset\(DIR\).*pass DIR as the preset") as caught:
                make(preset)
            assert preset in str(caught.value) and "\n" not in str(caught.value)


def test_refuses_what_is_not_a_preset(tmp_path):
    for cls in (KerasHubImageEncoder, KerasHubTextEncoder):
        with pytest.raises(ValueError, match="neither a local preset directory nor a keras-hub preset name"):
            cls("/no/such/kerasmm/preset")
        with pytest.raises(ValueError, match="give `preset`, a keras-hub preset directory, name or handle"):
            cls()
        with pytest.raises(ValueError, match="has no config.json"):
            cls(str(tmp_path))
        with pytest.raises(ValueError, match="fetches presets from kaggle:// and hf:// handles only"):
            cls("gs://bucket/bert")


def test_refuses_the_wrong_modality_and_bad_settings(presets):
    with pytest.raises(ValueError, match="BertBackbone is not an image backbone.*use the 'keras_hub_text' encoder"):
        KerasHubImageEncoder(presets["bert"][0])
    with pytest.raises(ValueError, match="ViTBackbone is not a text backbone.*use the 'keras_hub_image' encoder"):
        KerasHubTextEncoder(presets["vit"][0])
    with pytest.raises(ValueError, match=r"pooling must be one of \('auto', 'mean', 'first'\)"):
        KerasHubImageEncoder(presets["vit"][0], pooling="max")
    with pytest.raises(ValueError, match="pooling='first' needs a token sequence"):
        KerasHubImageEncoder(presets["resnet"][0], pooling="first")
    with pytest.raises(ValueError, match="unfreeze_last must be None or a positive int"):
        KerasHubTextEncoder(presets["bert"][0], trainable_backbone=False, unfreeze_last=0)
    with pytest.raises(ValueError, match="trainable_backbone must be True or False"):
        KerasHubTextEncoder(presets["bert"][0], trainable_backbone="no")


def test_checkpoint_directories_give_their_towers_converters_and_tokenizers():
    references = os.path.join(os.path.dirname(__file__), "..", "fixtures", "clip_references")
    image = KerasHubImageEncoder(os.path.join(references, "open_clip"), trainable_backbone=False)
    assert isinstance(image.backbone, keras_hub.models.CLIPVisionEncoder)
    assert image.image_converter.interpolation == "bicubic" and image.image_converter.crop_to_aspect_ratio
    assert image(np.random.rand(2, 40, 48, 3).astype("float32"))["pooled"].shape == (2, 32)
    text = KerasHubTextEncoder(os.path.join(references, "hf_siglip"))
    assert isinstance(text.backbone, keras_hub.models.SigLIPTextEncoder)
    assert isinstance(preset_tokenizer(os.path.join(references, "hf_siglip")), keras_hub.tokenizers.SigLIPTokenizer)
