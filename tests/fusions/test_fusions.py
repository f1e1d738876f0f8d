"""Tests for the registered fusions (kerasmm.fusions)."""

import re
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm import testing
from kerasmm.fusions.concat import ConcatFusion
from kerasmm.fusions.cross_attention import CrossAttentionFusion
from kerasmm.fusions.gated import GatedFusion
from kerasmm.fusions.bilinear import LowRankBilinearFusion
from kerasmm.fusions.product import ProductFusion
from kerasmm.fusions.weighted_sum import WeightedSumFusion

MODALITIES = ["audio", "image", "text"]  # the order fusions use (sorted names)
WIDTH = 8

# Per-fusion constructor arguments; a fusion not listed here is tested with its defaults.
CONFIGS = {
    "gated": {"output_dim": 6},
    "low_rank_bilinear": {"output_dim": 6, "factor": 3},
    "cross_attention": {"query": "text", "context": ["image", "audio"], "num_heads": 2},
}
# (output width, trainable weight count, parameter count) where known.
EXPECTED = {
    "concat": (3 * WIDTH, 0, 0),
    "weighted_sum": (WIDTH, 1, 3),
    "product": (WIDTH, 0, 0),
    "gated": (6, 3 * 2 + 2, 3 * (WIDTH * 6 + 6) + (3 * WIDTH * 18 + 18)),
    "low_rank_bilinear": (6, 3 * 2, 3 * (WIDTH * 18 + 18)),
    # attention q/k/v/o kernels+biases, 2 LayerNorms, 2 Dense; 2 heads of size 4, FFN width 32
    "cross_attention": (
        WIDTH,
        8 + 4 + 4,
        4 * (WIDTH * 8 + 8) + 2 * 2 * WIDTH + (WIDTH * 32 + 32) + (32 * WIDTH + WIDTH),
    ),
}


def make_fusion(name, **overrides):
    return kerasmm.fusions.get(name, **{**CONFIGS.get(name, {}), **overrides})


def is_sequence(name):
    return kerasmm.fusions.lookup(name).input_kind == "sequence"


def make_inputs(name, batch=2, seed=0, masks=None):
    """Features for the three modalities (sequences for sequence fusions), plus `masks`."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for i, m in enumerate(MODALITIES):
        shape = (batch, 3 + i, WIDTH) if is_sequence(name) else (batch, WIDTH)
        inputs[m] = rng.normal(size=shape).astype("float32")
    if is_sequence(name):
        padding = np.ones((batch, 5), bool)
        padding[0, 3:] = False
        inputs["text_padding_mask"] = padding
    for m, values in (masks or {}).items():
        inputs[f"{m}_mask"] = np.asarray(values, "float32")
    return inputs


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


ALL = kerasmm.fusions.list()


def test_all_six_registered():
    assert {"concat", "weighted_sum", "product", "gated", "cross_attention", "low_rank_bilinear"} <= set(ALL)
    assert kerasmm.fusions.lookup("concat") is ConcatFusion
    assert kerasmm.fusions.lookup("weighted_sum") is WeightedSumFusion
    assert kerasmm.fusions.lookup("product") is ProductFusion
    assert kerasmm.fusions.lookup("gated") is GatedFusion
    assert kerasmm.fusions.lookup("cross_attention") is CrossAttentionFusion
    assert kerasmm.fusions.lookup("low_rank_bilinear") is LowRankBilinearFusion


# --- the standard layer test -------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_layer(name):
    width, num_weights, num_params = EXPECTED.get(name, (None, None, None))
    testing.run_layer_test(
        kerasmm.fusions.lookup(name),
        init_kwargs=CONFIGS.get(name, {}),
        input_data=make_inputs(name, masks={"text": [1.0, 0.0]} if not is_sequence(name) else {"image": [1.0, 0.0]}),
        expected_output_shape=(None, width) if width else None,
        expected_num_trainable_weights=num_weights,
        expected_num_params=num_params,
    )


@pytest.mark.parametrize(
    "cls, kwargs, width, num_weights",
    [
        (ConcatFusion, {"projection_dim": 4}, 3 * 4, 6),
        (WeightedSumFusion, {"projection_dim": 4}, 4, 7),
        (ProductFusion, {"projection_dim": 4}, 4, 6),
    ],
)
def test_layer_with_projection_and_unequal_widths(cls, kwargs, width, num_weights):
    rng = np.random.default_rng(0)
    data = {
        "image": rng.normal(size=(2, 8)).astype("float32"),
        "text": rng.normal(size=(2, 12)).astype("float32"),
        "audio": rng.normal(size=(2, 16)).astype("float32"),
        "audio_mask": np.array([0.0, 1.0], "float32"),
    }
    testing.run_layer_test(
        cls, kwargs, data, expected_output_shape=(None, width), expected_num_trainable_weights=num_weights
    )


def test_cross_attention_layer_with_two_blocks_and_pooled_context():
    rng = np.random.default_rng(0)
    data = {
        "text": rng.normal(size=(2, 5, 12)).astype("float32"),
        "text_padding_mask": np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], bool),
        "image": rng.normal(size=(2, 8)).astype("float32"),  # pooled: a length-1 sequence
    }
    testing.run_layer_test(
        CrossAttentionFusion,
        {"query": "text", "context": "image", "num_heads": 2, "key_dim": 4, "intermediate_dim": 16,
         "dropout": 0.1, "num_layers": 2},
        data,
        expected_output_shape=(None, 12),
        expected_num_trainable_weights=2 * 16,
    )


# --- functional API, graph mode ---------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_functional_model_on_keras_inputs(name):
    if is_sequence(name):
        data = make_inputs(name, masks={"audio": [1.0, 0.0]})
    else:
        rng = np.random.default_rng(1)
        data = {
            "image": rng.normal(size=(2, 8)).astype("float32"),
            "text": rng.normal(size=(2, 8)).astype("float32"),
            "text_mask": np.array([1.0, 0.0], "float32"),
        }
    inputs = {k: keras.Input(v.shape[1:], dtype=str(v.dtype), name=k) for k, v in data.items()}
    fusion = make_fusion(name)
    model = keras.Model(inputs, fusion(inputs))
    got = model.predict(data, verbose=0)
    np.testing.assert_allclose(got, as_numpy(fusion(data)), atol=1e-5)
    assert np.all(np.isfinite(got))


def test_functional_model_on_the_documented_inputs():
    inputs = {"image": keras.Input((8,), name="image"), "text": keras.Input((8,), name="text"),
              "text_mask": keras.Input((), name="text_mask")}
    for name in ALL:
        if is_sequence(name):
            continue
        model = keras.Model(inputs, make_fusion(name)(inputs))
        assert model.output_shape[0] is None


@pytest.mark.parametrize("name", ALL)
def test_graph_mode_tf_data_and_tf_function(name):
    data = make_inputs(name, batch=4, masks={"image": [1.0, 0.0, 1.0, 1.0]})
    fusion = make_fusion(name)
    eager = as_numpy(fusion(data))
    graph = tf.function(lambda d: fusion(d, training=False))
    np.testing.assert_allclose(as_numpy(graph(data)), eager, atol=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(4).map(lambda d: fusion(d))
    np.testing.assert_allclose(next(iter(dataset)).numpy(), eager, atol=1e-5)


# --- presence masks ------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("absent", MODALITIES)
def test_absent_modality_does_not_change_output(name, absent):
    masks = {absent: [0.0, 0.0, 1.0]}
    data = make_inputs(name, batch=3, masks=masks)
    fusion = make_fusion(name)
    before = as_numpy(fusion(data))
    changed = dict(data)
    changed[absent] = data[absent] * 7.0 + 3.0
    after = as_numpy(fusion(changed))
    np.testing.assert_allclose(after[:2], before[:2], atol=1e-5)
    assert not np.allclose(after[2], before[2]), "a present modality's features should matter"
    assert np.all(np.isfinite(before))


@pytest.mark.parametrize("name", ALL)
def test_only_one_modality_present(name):
    # Example i keeps only modality i.
    masks = {m: [1.0 if i == j else 0.0 for j in range(3)] for i, m in enumerate(MODALITIES)}
    data = make_inputs(name, batch=3, masks=masks)
    fusion = make_fusion(name)
    fused, weights = fusion(data, return_weights=True)
    fused = as_numpy(fused)
    assert np.all(np.isfinite(fused))
    weights = {m: as_numpy(w) for m, w in weights.items()}
    for i, m in enumerate(MODALITIES):
        np.testing.assert_allclose(weights[m][i], 1.0, atol=1e-5)
        np.testing.assert_allclose([weights[o][i] for o in MODALITIES if o != m], 0.0, atol=1e-6)


def test_one_present_modality_passes_through_weighted_sum_product_and_concat():
    masks = {"audio": [1.0, 0.0], "image": [0.0, 0.0], "text": [0.0, 1.0]}
    data = make_inputs("concat", masks=masks)
    expected = np.stack([data["audio"][0], data["text"][1]])
    np.testing.assert_allclose(as_numpy(WeightedSumFusion()(data)), expected, atol=1e-6)
    np.testing.assert_allclose(as_numpy(ProductFusion()(data)), expected, atol=1e-6)
    concat = as_numpy(ConcatFusion()(data))
    np.testing.assert_allclose(concat[0, :WIDTH], data["audio"][0])
    np.testing.assert_allclose(concat[0, WIDTH:], 0.0)
    np.testing.assert_allclose(concat[1, 2 * WIDTH:], data["text"][1])


def test_weighted_sum_renormalises_over_present_modalities():
    fusion = WeightedSumFusion()
    data = make_inputs("weighted_sum", batch=3, masks={"audio": [1.0, 0.0, 1.0], "text": [1.0, 1.0, 0.0]})
    fusion(data)  # build
    fusion.modality_logits.assign(np.log(np.array([1.0, 2.0, 3.0], "float32")))  # audio, image, text
    fused, weights = fusion(data, return_weights=True)
    alpha = np.stack([as_numpy(weights[m]) for m in MODALITIES], axis=1)
    expected = np.array([[1 / 6, 2 / 6, 3 / 6], [0.0, 2 / 5, 3 / 5], [1 / 3, 2 / 3, 0.0]])
    np.testing.assert_allclose(alpha, expected, atol=1e-6)
    manual = sum(expected[:, i : i + 1] * data[m] for i, m in enumerate(MODALITIES))
    np.testing.assert_allclose(as_numpy(fused), manual, atol=1e-5)


def test_weighted_sum_starts_with_equal_weights():
    data = make_inputs("weighted_sum")
    _, weights = WeightedSumFusion()(data, return_weights=True)
    for m in MODALITIES:
        np.testing.assert_allclose(as_numpy(weights[m]), 1 / 3, atol=1e-6)


def test_product_multiplies_present_modalities():
    data = {"image": np.full((2, 4), 2.0, "float32"), "text": np.full((2, 4), 3.0, "float32"),
            "text_mask": np.array([1.0, 0.0], "float32")}
    np.testing.assert_allclose(as_numpy(ProductFusion()(data)), [[6.0] * 4, [2.0] * 4])


def test_bilinear_output_is_l2_normalised():
    fused = as_numpy(LowRankBilinearFusion(output_dim=6, factor=3)(make_inputs("concat", batch=4)))
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)


def test_cross_attention_ignores_padding_and_masks_missing_context():
    fusion = make_fusion("cross_attention")
    data = make_inputs("cross_attention", batch=2)
    before = as_numpy(fusion(data))
    changed = dict(data)
    text = data["text"].copy()
    text[0, 3:] = 100.0  # padded query positions of example 0
    changed["text"] = text
    changed["image_padding_mask"] = np.array([[1, 1, 1, 1], [1, 0, 0, 0]], bool)
    image = data["image"].copy()
    image[1, 1:] = -50.0  # padded keys of example 1
    changed["image"] = image
    after_pad = as_numpy(fusion({**data, "image_padding_mask": changed["image_padding_mask"]}))
    np.testing.assert_allclose(as_numpy(fusion(changed)), after_pad, atol=1e-5)
    np.testing.assert_allclose(after_pad[0], before[0], atol=1e-5)
    # No context at all for example 0: finite, attention share goes to the query.
    no_context = {**data, "image_mask": np.array([0.0, 1.0], "float32"),
                  "audio_mask": np.array([0.0, 1.0], "float32")}
    fused, weights = fusion(no_context, return_weights=True)
    assert np.all(np.isfinite(as_numpy(fused)))
    assert as_numpy(weights["text"])[0] == 1.0 and as_numpy(weights["text"])[1] == 0.0
    np.testing.assert_allclose(as_numpy(weights["image"] + weights["audio"]), [0.0, 1.0], atol=1e-5)


def test_cross_attention_accepts_float_padding_masks():
    fusion = make_fusion("cross_attention")
    data = make_inputs("cross_attention")
    as_float = {**data, "text_padding_mask": data["text_padding_mask"].astype("float32")}
    np.testing.assert_allclose(as_numpy(fusion(as_float)), as_numpy(fusion(data)), atol=1e-6)
    with pytest.raises(ValueError, match="image_padding_mask must be"):
        fusion({**data, "image_padding_mask": np.ones((2, 9), bool)})


@pytest.mark.parametrize("name", ALL)
def test_all_absent_example_is_finite_with_finite_gradients(name):
    data = make_inputs(name, masks={m: [0.0, 1.0] for m in MODALITIES})
    data = {k: tf.constant(v) for k, v in data.items()}
    fusion = make_fusion(name)
    with tf.GradientTape() as tape:
        tape.watch(data["image"])
        fused, weights = fusion(data, return_weights=True, training=True)
        loss = tf.reduce_sum(fused) + tf.add_n([tf.reduce_sum(w) for w in weights.values()])
    grads = tape.gradient(loss, [data["image"], *fusion.trainable_weights])
    assert np.all(np.isfinite(as_numpy(fused)))
    for g in grads:
        assert g is None or np.all(np.isfinite(as_numpy(tf.convert_to_tensor(g))))


@pytest.mark.parametrize("name", ALL)
def test_docstring_example_runs(name):
    doc = kerasmm.fusions.lookup(name).__doc__
    match = re.search(r"```python\n(.*?)```", doc, re.S)
    assert match, f"{name}: the class docstring needs a ```python example"
    assert "Args:" in doc
    exec(textwrap.dedent(match.group(1)), {})


# --- modality dropout ----------------------------------------------------------


def test_modality_dropout_drops_some_never_all():
    fusion = ConcatFusion(modality_dropout=0.5, seed=3)
    data = make_inputs("concat", batch=64, masks={"audio": [0.0] * 8 + [1.0] * 56})
    _, weights = fusion(data, training=True, return_weights=True)
    present = np.stack([as_numpy(weights[m]) > 0 for m in MODALITIES], axis=1)
    counts = present.sum(axis=1)
    assert counts.min() >= 1, "an example lost every modality"
    assert counts.max() <= 3 and (counts < 3).any(), "no modality was dropped"
    assert not present[:8, 0].any(), "dropout revived an absent modality"
    _, weights = fusion(data, training=False, return_weights=True)
    present = np.stack([as_numpy(weights[m]) > 0 for m in MODALITIES], axis=1)
    np.testing.assert_array_equal(present[:, 0], [False] * 8 + [True] * 56)
    assert present[:, 1:].all()


@pytest.mark.parametrize("name", ALL)
def test_modality_dropout_only_in_training(name):
    data = make_inputs(name, batch=16)
    fusion = make_fusion(name, modality_dropout=0.5, seed=1)
    inference = as_numpy(fusion(data, training=False))
    np.testing.assert_allclose(as_numpy(fusion(data)), inference, atol=1e-6)
    reference = make_fusion(name)  # no modality dropout, same weights
    reference(data)
    for r, w in zip(reference.trainable_weights, fusion.trainable_weights):
        r.assign(w)
    np.testing.assert_allclose(as_numpy(reference(data, training=True)), inference, atol=1e-5)
    training = as_numpy(fusion(data, training=True))
    assert np.all(np.isfinite(training))
    assert not np.allclose(training, inference, atol=1e-5)


# --- return_weights ----------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_return_weights_sum_to_one_over_present(name):
    masks = {"audio": [1.0, 0.0, 1.0, 0.0], "image": [1.0, 1.0, 0.0, 0.0]}
    data = make_inputs(name, batch=4, masks=masks)
    fused, weights = make_fusion(name)(data, return_weights=True)
    assert sorted(weights) == MODALITIES
    stacked = np.stack([as_numpy(weights[m]) for m in MODALITIES], axis=1)
    assert stacked.shape == (4, 3)
    assert np.all(stacked >= -1e-7)
    np.testing.assert_allclose(stacked.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(stacked[:, 0] * (1 - np.array(masks["audio"])), 0.0, atol=1e-7)
    np.testing.assert_allclose(stacked[:, 1] * (1 - np.array(masks["image"])), 0.0, atol=1e-7)
    assert as_numpy(fused).shape[0] == 4


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [WeightedSumFusion, ProductFusion])
def test_unequal_widths_need_projection_dim(cls):
    data = {"image": np.ones((2, 8), "float32"), "text": np.ones((2, 6), "float32")}
    with pytest.raises(ValueError, match="same width.*projection_dim"):
        cls()(data)
    inputs = {"image": keras.Input((8,)), "text": keras.Input((6,))}
    with pytest.raises(ValueError, match="same width"):
        cls()(inputs)
    assert cls(projection_dim=4)(data).shape == (2, 4)


@pytest.mark.parametrize(
    "kwargs, missing",
    [
        ({"query": "video", "context": "image"}, "video"),
        ({"query": "text", "context": ["image", "video"]}, "video"),
    ],
)
def test_cross_attention_unknown_modality(kwargs, missing):
    data = make_inputs("cross_attention")
    with pytest.raises(ValueError, match=f"no input for.*{missing}.*Available modalities"):
        CrossAttentionFusion(num_heads=2, **kwargs)(data)


def test_cross_attention_contexts_need_same_width():
    data = {"text": np.ones((2, 3, 8), "float32"), "image": np.ones((2, 4, 8), "float32"),
            "audio": np.ones((2, 4, 6), "float32")}
    with pytest.raises(ValueError, match="same width"):
        CrossAttentionFusion(query="text", context=["image", "audio"], num_heads=2)(data)


@pytest.mark.parametrize("name", ALL)
def test_modalities_naming_a_missing_modality(name):
    if name == "cross_attention":
        pytest.skip("cross_attention derives modalities from query/context (tested above)")
    with pytest.raises(ValueError, match=r"no input for \['video'\]"):
        make_fusion(name, modalities=["image", "video"])(make_inputs(name))


def test_modalities_selects_a_subset():
    data = make_inputs("concat")
    fused = ConcatFusion(modalities=["text", "image"])(data)
    np.testing.assert_allclose(as_numpy(fused), np.concatenate([data["text"], data["image"]], axis=1))


def test_calling_with_other_modalities_than_built_for():
    fusion = GatedFusion(output_dim=4)
    fusion({"image": np.ones((2, 8), "float32"), "text": np.ones((2, 8), "float32")})
    with pytest.raises(ValueError, match="built for modalities"):
        fusion({"image": np.ones((2, 8), "float32"), "audio": np.ones((2, 8), "float32")})


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (GatedFusion, {"output_dim": 0}, "output_dim must be a positive int"),
        (GatedFusion, {"output_dim": "8"}, "output_dim must be a positive int"),
        (LowRankBilinearFusion, {"output_dim": -1}, "output_dim must be a positive int"),
        (LowRankBilinearFusion, {"output_dim": 4, "factor": 0}, "factor must be a positive int"),
        (LowRankBilinearFusion, {"output_dim": 4, "dropout": 1.0}, r"dropout must be a float in \[0, 1\)"),
        (ConcatFusion, {"projection_dim": 0}, "projection_dim must be None or a positive int"),
        (WeightedSumFusion, {"projection_dim": 2.5}, "projection_dim must be None or a positive int"),
        (ProductFusion, {"projection_dim": True}, "projection_dim must be None or a positive int"),
        (ConcatFusion, {"modality_dropout": 1.0}, r"modality_dropout must be in \[0, 1\)"),
        (CrossAttentionFusion, {"query": "text", "context": "image", "num_heads": 0}, "num_heads"),
        (CrossAttentionFusion, {"query": "text", "context": "image", "key_dim": -2}, "key_dim"),
        (CrossAttentionFusion, {"query": "text", "context": "image", "intermediate_dim": 0}, "intermediate_dim"),
        (CrossAttentionFusion, {"query": "text", "context": "image", "num_layers": 0}, "num_layers"),
        (CrossAttentionFusion, {"query": "text", "context": "image", "dropout": -0.1}, "dropout"),
        (CrossAttentionFusion, {"query": "", "context": "image"}, "query must be a modality name"),
        (CrossAttentionFusion, {"query": "text", "context": []}, "context must be a modality name"),
        (CrossAttentionFusion, {"query": "text", "context": ["image", "text"]}, "cannot also be a context"),
        (CrossAttentionFusion, {"query": "text", "context": ["image", "image"]}, "distinct"),
        (CrossAttentionFusion, {"query": "text", "context": "image", "modalities": ["image"]},
         "derived from query and context"),
    ],
)
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_get_config_round_trip():
    fusion = CrossAttentionFusion(query="text", context=["image", "audio"], num_heads=2, num_layers=2,
                                  modality_dropout=0.2, seed=4)
    config = fusion.get_config()
    assert "modalities" not in config
    assert config["context"] == ["image", "audio"] and config["num_layers"] == 2
    assert config["modality_dropout"] == 0.2 and config["seed"] == 4
    clone = CrossAttentionFusion.from_config(config)
    assert clone.modalities == ["text", "image", "audio"]
    config = LowRankBilinearFusion(output_dim=4, factor=2, dropout=0.1).get_config()
    assert {"output_dim": 4, "factor": 2, "dropout": 0.1}.items() <= config.items()


def test_weighted_sum_reports_its_learned_weights():
    fusion = WeightedSumFusion()
    fusion({"image": np.ones((2, 4), "float32"), "text": np.ones((2, 4), "float32")})
    fusion.modality_logits.assign(np.log(np.array([1.0, 3.0], "float32")))
    weights = fusion.modality_weights()
    assert list(weights) == ["image", "text"]
    np.testing.assert_allclose([weights["image"], weights["text"]], [0.25, 0.75], rtol=1e-6)
