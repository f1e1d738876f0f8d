import keras
import numpy as np
import pytest

import kerasmm
from kerasmm import testing
from kerasmm.encoders.image import (
    CNNImageEncoder,
    EfficientNetImageEncoder,
    ResNetImageEncoder,
    ViTImageEncoder,
)


def _images(height=32, width=32, batch=2, seed=0):
    return np.random.default_rng(seed).random((batch, height, width, 3)).astype("float32")


def _shapes(tokens, dim):
    return {"sequence": (None, tokens, dim), "pooled": (None, dim), "sequence_mask": (None, tokens)}


def _perturb(model, seed=0):
    """Move every weight (BN statistics included) away from its initial value, staying tame."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = np.asarray(w.numpy())
        if not np.issubdtype(value.dtype, np.floating):
            continue
        value = value * rng.uniform(0.8, 1.2, value.shape)
        if value.ndim == 1:  # biases, BN gamma/beta/mean/variance, normalization stats
            value = value + rng.uniform(0.0, 0.1, value.shape)
        w.assign(value.astype(w.dtype))


def _assert_close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert np.all(np.isfinite(want))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


# ---------------------------------------------------------------- cnn


def test_cnn_layer():
    out = testing.run_layer_test(
        CNNImageEncoder,
        init_kwargs={"output_dim": 16, "filters": [8, 16], "dropout": 0.1},
        input_data=_images(32, 32),
        expected_output_shape=_shapes(8 * 8, 16),
        # 2 stages x 2 convs x (kernel, gamma, beta) + projection (kernel, bias).
        expected_num_trainable_weights=14,
    )
    assert out["sequence_mask"].dtype == bool and out["sequence_mask"].all()
    np.testing.assert_allclose(out["pooled"], out["sequence"].max(axis=1), rtol=1e-5, atol=1e-6)


def test_cnn_average_pooling_and_bad_pooling():
    encoder = CNNImageEncoder(output_dim=8, filters=[8], pooling="avg")
    out = encoder(_images(16, 16))
    np.testing.assert_allclose(out["pooled"], np.mean(out["sequence"], axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"pooling must be one of \('avg', 'max'\)"):
        CNNImageEncoder(output_dim=8, pooling="sum")


def test_cnn_outputs_do_not_depend_on_the_rest_of_the_batch():
    # Group norm, not batch norm: an example's features are its own.
    encoder = CNNImageEncoder(output_dim=8, filters=[8])
    images = _images(16, 16)
    together = keras.ops.convert_to_numpy(encoder(images, training=True)["pooled"])
    alone = keras.ops.convert_to_numpy(encoder(images[:1], training=True)["pooled"])
    np.testing.assert_allclose(alone, together[:1], rtol=1e-5, atol=1e-5)


def test_cnn_defaults_and_dynamic_image_size():
    encoder = CNNImageEncoder(output_dim=8)
    assert encoder.filters == [32, 64, 128] and encoder.dropout == 0.0
    inputs = keras.Input((None, None, 3))
    outputs = encoder(inputs)
    assert tuple(outputs["sequence"].shape) == (None, None, 8)
    model = keras.Model(inputs, outputs)
    for (height, width), tokens in (((16, 16), 2 * 2), ((24, 40), 3 * 5)):
        out = model.predict(_images(height, width), verbose=0)  # graph mode
        assert out["sequence"].shape == (2, tokens, 8)
        assert out["pooled"].shape == (2, 8)
        assert out["sequence_mask"].shape == (2, tokens) and out["sequence_mask"].all()


def test_cnn_detail_grid_is_the_stage_before_the_last():
    encoder = CNNImageEncoder(output_dim=8, filters=[4, 6, 8], detail_grid=True)
    out = encoder(_images(32, 32))
    assert tuple(out["sequence"].shape) == (2, 4 * 4, 8)
    assert tuple(out["detail_sequence"].shape) == (2, 8 * 8, 6)  # twice as fine, the middle stage's channels
    again = CNNImageEncoder.from_config(encoder.get_config())
    assert again.detail_grid is True and "detail_sequence" not in CNNImageEncoder(output_dim=8, filters=[8])(
        _images(16, 16))
    with pytest.raises(ValueError, match=r"detail_grid needs at least two stages \(filters\), got filters=\[8\]"):
        CNNImageEncoder(output_dim=8, filters=[8], detail_grid=True)


def test_cnn_mixed_precision():
    encoder = CNNImageEncoder(output_dim=8, filters=[8], dtype="mixed_float16")
    out = encoder(_images(16, 16))
    assert keras.backend.standardize_dtype(out["sequence"].dtype) == "float16"
    assert keras.backend.standardize_dtype(out["sequence_mask"].dtype) == "bool"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"output_dim": 0}, "output_dim"),
        ({"output_dim": 8, "filters": []}, "filters"),
        ({"output_dim": 8, "filters": [8, 0]}, "filters"),
        ({"output_dim": 8, "dropout": 1.5}, "dropout"),
    ],
)
def test_cnn_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNNImageEncoder(**kwargs)


# ---------------------------------------------------------------- vit


def test_vit_layer():
    testing.run_layer_test(
        ViTImageEncoder,
        init_kwargs={"output_dim": 16, "image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 2},
        input_data=_images(32, 32),
        expected_output_shape=_shapes(4 * 4, 16),
        # patch conv 2 + position embedding 1 + 2 blocks x 16 + final norm 2.
        expected_num_trainable_weights=37,
    )


def test_vit_rectangular_images():
    testing.run_layer_test(
        ViTImageEncoder,
        init_kwargs={
            "output_dim": 8, "image_size": (16, 32), "patch_size": 8, "num_layers": 1,
            "num_heads": 2, "intermediate_dim": 16, "dropout": 0.1,
        },
        input_data=_images(16, 32),
        expected_output_shape=_shapes(2 * 4, 8),
        expected_num_trainable_weights=2 + 1 + 16 + 2,
        run_training_check=False,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 30, "patch_size": 8}, "not divisible by patch_size"),
        ({"image_size": (32, 20), "patch_size": 8}, "not divisible by patch_size"),
        ({"image_size": (32, 32, 3)}, "image_size"),
        ({"image_size": 32, "num_heads": 3}, "divisible by num_heads"),
    ],
)
def test_vit_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViTImageEncoder(output_dim=16, **kwargs)


@pytest.mark.parametrize("shape", [(16, 16, 3), (32, 16, 3), (None, None, 3)])
def test_vit_refuses_other_image_sizes_at_build(shape):
    encoder = ViTImageEncoder(output_dim=8, image_size=32, num_heads=2)
    with pytest.raises(ValueError, match="configured for image_size=32"):
        encoder(keras.Input(shape))


# ---------------------------------------------------------------- shared contract


_CHEAP = {
    "cnn": lambda: CNNImageEncoder(output_dim=8, filters=[8]),
    "vit": lambda: ViTImageEncoder(output_dim=8, image_size=16, num_heads=2, num_layers=1),
    "efficientnet": lambda: EfficientNetImageEncoder(output_dim=8),
}


@pytest.mark.parametrize("name", sorted(_CHEAP))
@pytest.mark.parametrize(
    "bad_input, match",
    [
        (np.zeros((2, 16, 16), "float32"), "rank 4"),
        (np.zeros((2, 16, 16, 3), "int32"), "got dtype int32"),
    ],
)
def test_wrong_rank_or_dtype(name, bad_input, match):
    encoder = _CHEAP[name]()
    with pytest.raises(ValueError, match=match):
        encoder(bad_input)
    with pytest.raises(ValueError, match=match):
        encoder(keras.Input(bad_input.shape[1:], dtype=str(bad_input.dtype)))


def test_registry():
    assert kerasmm.encoders.lookup("cnn") is CNNImageEncoder
    assert kerasmm.encoders.lookup("vit") is ViTImageEncoder
    assert kerasmm.encoders.lookup("resnet") is ResNetImageEncoder
    assert kerasmm.encoders.lookup("efficientnet") is EfficientNetImageEncoder
    for name in ("cnn", "vit", "resnet", "efficientnet"):
        assert kerasmm.encoders.modality_of(name) == "image"
    encoder = kerasmm.encoders.get("vit", output_dim=8, image_size=16, num_heads=2)
    assert isinstance(encoder, ViTImageEncoder)


# ---------------------------------------------------------------- keras.applications


@pytest.mark.parametrize("cls", [ResNetImageEncoder, EfficientNetImageEncoder])
def test_unknown_variant(cls):
    with pytest.raises(ValueError, match="Valid variants: .*V2"):
        cls(variant="ResNet18")


@pytest.mark.parametrize("cls", [ResNetImageEncoder, EfficientNetImageEncoder])
def test_weights_path_must_be_a_local_file(cls, tmp_path):
    with pytest.raises(ValueError, match="never downloads"):
        cls(weights_path="imagenet")
    with pytest.raises(ValueError, match="not an existing file"):
        cls(weights_path=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="not an existing file"):
        cls(weights_path=tmp_path)  # a directory


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_weights_file_of_another_architecture(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="could not load .* into keras.applications.EfficientNetB0"):
        EfficientNetImageEncoder(weights_path=path)


@pytest.mark.parametrize(
    "cls, variant",
    [(ResNetImageEncoder, "ResNet50"), (EfficientNetImageEncoder, "EfficientNetB0")],
)
def test_freezing(cls, variant):
    encoder = cls(output_dim=8, variant=variant, trainable_backbone=False)
    encoder.build((None, 32, 32, 3))
    assert not encoder.backbone.trainable
    assert encoder.backbone.trainable_weights == []
    assert len(encoder.trainable_weights) == 2  # the projection's kernel and bias
    assert len(encoder.non_trainable_weights) == len(encoder.backbone.weights)
    config = encoder.get_config()
    assert config["trainable_backbone"] is False
    assert cls.from_config(config).backbone.trainable is False

    trainable = cls(output_dim=8, variant=variant)
    trainable.build((None, 32, 32, 3))
    assert trainable.trainable_backbone is True
    assert len(trainable.backbone.trainable_weights) > 100

    encoder.trainable_backbone = True  # unfreeze for fine-tuning
    assert len(encoder.trainable_weights) == len(trainable.trainable_weights)
    assert encoder.get_config()["trainable_backbone"] is True


@pytest.mark.parametrize(
    "cls, variant, reference_preprocess",
    [
        (ResNetImageEncoder, "ResNet50", keras.applications.resnet.preprocess_input),
        (ResNetImageEncoder, "ResNet50V2", keras.applications.resnet_v2.preprocess_input),
        (EfficientNetImageEncoder, "EfficientNetB0", keras.applications.efficientnet.preprocess_input),
    ],
)
def test_preprocessing_matches_keras_applications(cls, variant, reference_preprocess):
    images = _images(32, 32)
    encoder = cls(output_dim=None, variant=variant)
    assert encoder.output_dim == encoder.backbone.output.shape[-1] and encoder.projection is None
    got = keras.ops.convert_to_numpy(encoder(images, training=False)["pooled"])
    want = encoder.backbone(reference_preprocess(images * 255.0), training=False)
    _assert_close(got, keras.ops.convert_to_numpy(keras.ops.mean(want, axis=(1, 2))))


@pytest.mark.slow
def test_resnet_layer():
    testing.run_layer_test(
        ResNetImageEncoder,
        init_kwargs={"output_dim": 16},
        input_data=_images(32, 32),
        expected_output_shape=_shapes(1, 16),
    )


@pytest.mark.slow
def test_efficientnet_layer():
    testing.run_layer_test(
        EfficientNetImageEncoder,
        init_kwargs={"output_dim": 16, "variant": "EfficientNetB0"},
        input_data=_images(32, 32),
        expected_output_shape=_shapes(1, 16),
        # The training check fits the whole network: test_resnet_layer trains the same wrapper
        # (_ApplicationImageEncoder), and EfficientNet's half of the time went there.
        run_training_check=False,
    )


@pytest.mark.slow
def test_resnet_loads_local_weights(tmp_path):
    images = _images(64, 64)
    reference = keras.applications.ResNet50(include_top=False, weights=None)
    _perturb(reference)
    path = tmp_path / "w.weights.h5"
    reference.save_weights(path)
    want = reference(keras.applications.resnet.preprocess_input(images * 255.0), training=False)
    want = keras.ops.convert_to_numpy(want).reshape(2, 2 * 2, 2048)

    encoder = ResNetImageEncoder(output_dim=None, weights_path=str(path))
    assert encoder.output_dim == 2048 and encoder.weights_path == str(path)
    assert encoder.get_config()["weights_path"] is None
    _assert_close(keras.ops.convert_to_numpy(encoder(images, training=False)["sequence"]), want)

    # The .keras file carries the weights: reloading needs no weights file.
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, encoder(inputs)["sequence"])
    path.unlink()
    loaded = testing.run_model_saving_test(model, images)
    _assert_close(loaded.predict(images, verbose=0), want)


@pytest.mark.slow
def test_efficientnet_loads_legacy_h5_weights(tmp_path):
    # The files keras.applications publishes are legacy (Keras 2) .h5 files.
    h5py = pytest.importorskip("h5py")
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    images = _images(64, 64)
    reference = keras.applications.EfficientNetB0(include_top=False, weights=None)
    _perturb(reference)
    path = tmp_path / "efficientnetb0_notop.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, reference)
    want = keras.ops.convert_to_numpy(reference(images * 255.0, training=False)).reshape(2, 2 * 2, 1280)

    encoder = EfficientNetImageEncoder(output_dim=None, weights_path=path)
    _assert_close(keras.ops.convert_to_numpy(encoder(images, training=False)["sequence"]), want)
