"""Mixed precision and XLA switches of `kerasmm.zoo.get`: one tiny entry of each family."""

import collections

import keras
import numpy as np
import pytest

import kerasmm
from kerasmm.models import precision

FAMILIES = ["tiny_weighted_sum_classifier", "tiny_dual_encoder", "tiny_clip", "tiny_captioner", "tiny_text_to_image"]
# The reader task each zoo task trains on.
DATA_TASK = {"retrieval": "classification", "text_to_image": "captioning"}
# Layers that compute in float32 whatever the policy: the tasks' output layers.
# The output layers (and the per-encoder class layers the classifier trains beside its logits) stay float32.
FLOAT32_OUTPUT_LAYERS = {"logits", "pixels", "image_logits", "text_logits", "audio_logits"}
# A text-only bag-of-words classifier: XLA compiles it in seconds on a CPU.
SMALL_CLASSIFIER = {"encoders": {"image": None, "text": {"name": "bow", "output_dim": 8}}, "dropout": 0.0}


def raw_batch(name, model):
    task = kerasmm.zoo.entry(name).task
    data = kerasmm.data.shapes(num_examples=2, batch_size=2, task=DATA_TASK.get(task, task))
    return next(iter(data))


def weighted_leaf_policies(model):
    """(name, policy) of every layer that holds weights and has no sublayers, counted."""
    return collections.Counter(
        (layer.name, layer.dtype_policy.name)
        for layer in model._flatten_layers()
        if layer.weights and not list(layer._flatten_layers(include_self=False))
    )


def policy_counts(policies):
    return collections.Counter(policy for (_, policy), count in policies.items() for _ in range(count))


def float_variable_dtypes(model):
    return {v.dtype for v in model.variables if "int" not in v.dtype and v.dtype != "bool"}


@pytest.mark.parametrize("name", FAMILIES)
def test_mixed_bfloat16_trains_in_bfloat16_with_float32_outputs_and_round_trips(name, tmp_path):
    model = kerasmm.zoo.get(name, precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the scope did not leak
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert float_variable_dtypes(model) == {"float32"}
    policies = weighted_leaf_policies(model)
    inner = {policy for (layer, policy) in policies if layer not in FLOAT32_OUTPUT_LAYERS}
    assert inner == {"mixed_bfloat16"}, policies
    assert {policy for (layer, policy) in policies if layer in FLOAT32_OUTPUT_LAYERS} <= {"float32"}
    assert {layer.dtype_policy.name for layer in model.preprocessor._flatten_layers()} <= {"float32", "int32"}
    if name == "tiny_dual_encoder":
        assert model.logit_scale_variable.dtype == "float32"
        assert model.logit_bias_variable.dtype == "float32"

    raw_x, raw_y = raw_batch(name, model)
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(model.preprocess_samples(raw_x, raw_y))
    if "image" in x:
        assert x["image"].dtype == "float32"  # the preprocessor keeps the backbone contract
    outputs = model(x, training=False)
    for output in keras.tree.flatten(outputs):
        assert output.dtype == "float32"
    for output in keras.tree.flatten(model.output):
        assert output.dtype == "float32"
    assert model.compute_loss(x, y, outputs, sample_weight).dtype == "float32"

    logs = model.train_on_batch(raw_x, raw_y, return_dict=True)
    assert np.isfinite(logs["loss"])

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.dtype_policy.name == "mixed_bfloat16"
    # (by policy: keras-hub's CLIP encoders name some sublayers differently once deserialized)
    assert policy_counts(weighted_leaf_policies(loaded)) == policy_counts(policies)
    assert float_variable_dtypes(loaded) == {"float32"}
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6),
        loaded(x, training=False),
        model(x, training=False),
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_mixed_float16_wraps_the_optimizer_in_a_loss_scale_optimizer(name):
    model = kerasmm.zoo.get(name, precision="mixed_float16", learning_rate=0.01)
    assert model.dtype_policy.name == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.inner_optimizer.learning_rate) == pytest.approx(0.01)
    assert precision.loss_scale(model) == 2.0**15
    assert float_variable_dtypes(model) == {"float32"}


def test_non_finite_gradient_skips_the_step_and_halves_the_loss_scale(tmp_path):
    name = "tiny_weighted_sum_classifier"
    model = kerasmm.zoo.get(name, precision="mixed_float16", **SMALL_CLASSIFIER)
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    optimizer.build(model.trainable_variables)
    raw_x, raw_y = raw_batch(name, model)

    # A loss scale of 2**30 overflows float16 in the backward pass: the gradients are Inf/NaN.
    optimizer.dynamic_scale.assign(2.0**30)
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_on_batch(raw_x, raw_y, return_dict=True)
    assert np.isfinite(logs["loss"])  # the loss itself is finite; only the scaled gradients overflow
    for old, variable in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.path)
    assert precision.loss_scale(model) == 2.0**29

    # With a scale float16 can hold, the same batch updates the weights and keeps the scale.
    optimizer.dynamic_scale.assign(2.0**8)
    model.train_on_batch(raw_x, raw_y)
    assert any(not np.array_equal(v.numpy(), old) for old, v in zip(before, model.trainable_variables))
    assert precision.loss_scale(model) == 2.0**8

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.dtype_policy.name == "mixed_float16"
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)


def test_jit_compile_on_and_off_both_fit_to_the_same_step(tmp_path):
    name = "tiny_weighted_sum_classifier"
    results = {}
    for jit_compile in (True, False):
        keras.utils.set_random_seed(0)
        model = kerasmm.zoo.get(name, jit_compile=jit_compile, learning_rate=0.01, **SMALL_CLASSIFIER)
        assert model.jit_compile is jit_compile
        # Recompiling kept the builder's settings: its learning rate, the task's default loss and metrics.
        assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
        assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
        raw_x, raw_y = raw_batch(name, model)
        logs = model.train_on_batch(raw_x, raw_y, return_dict=True)
        assert np.isfinite(logs["loss"]) and "accuracy" in logs
        results[jit_compile] = (logs["loss"], [v.numpy() for v in model.trainable_variables])
        if jit_compile:
            path = str(tmp_path / "model.keras")
            model.save(path)
            assert keras.saving.load_model(path).jit_compile is True
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    for a, b in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_default_follows_the_global_policy_and_scopes_restore_it():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = kerasmm.zoo.get("tiny_text_to_image")  # precision=None: the global policy
        assert model.dtype_policy.name == "mixed_bfloat16"
        model = kerasmm.zoo.get("tiny_text_to_image", precision="float32")
        assert model.dtype_policy.name == "float32"
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        with pytest.raises(ValueError, match="exactly one encoder"):  # fails inside the builder
            kerasmm.zoo.get("tiny_text_to_image", precision="mixed_float16", encoders={"image": {"name": "cnn"}})
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_bad_precision_or_jit_compile_is_refused():
    with pytest.raises(ValueError, match="float32, mixed_bfloat16, mixed_float16"):
        kerasmm.zoo.get("tiny_dual_encoder", precision="float16")
    with pytest.raises(ValueError, match="jit_compile must be True, False or 'auto'"):
        kerasmm.zoo.get("tiny_dual_encoder", jit_compile="xla")
    assert keras.config.dtype_policy().name == "float32"
