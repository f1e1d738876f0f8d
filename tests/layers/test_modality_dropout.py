"""The one modality-dropout implementation (`kerasmm.layers.modality_dropout`), used by the fusions and
the captioner backbone."""

import keras
import numpy as np
import pytest
from keras import ops

from kerasmm.fusions.concat import ConcatFusion
from kerasmm.layers import ModalityDropout, drop_modalities, presence_matrix


def as_numpy(x):
    return ops.convert_to_numpy(x)


def test_presence_matrix_thresholds_reshapes_and_fills_missing_masks():
    masks = [np.array([1.0, 0.0, 0.3], "float32"), None, np.array([[0.0], [1.0], [0.7]], "float32")]
    np.testing.assert_array_equal(
        as_numpy(presence_matrix(masks, batch=3)), [[1, 1, 0], [0, 1, 1], [1, 1, 1]]
    )
    np.testing.assert_array_equal(
        as_numpy(presence_matrix(masks, batch=3, threshold=0.5)), [[1, 1, 0], [0, 1, 1], [0, 1, 1]]
    )
    assert as_numpy(presence_matrix(masks, batch=3, dtype="float16")).dtype == np.float16


def test_drop_modalities_never_drops_every_present_modality():
    rng = np.random.default_rng(0)
    present = (rng.random((256, 3)) > 0.3).astype("float32")
    present[:4] = 0.0  # rows with nothing present stay empty
    dropped = as_numpy(drop_modalities(present, 0.7, keras.random.SeedGenerator(5)))
    assert np.all(dropped <= present), "dropout revived an absent modality"
    has_any = present.sum(axis=1) > 0
    assert np.all(dropped[has_any].sum(axis=1) >= 1), "a row lost every modality it had"
    assert np.all(dropped[~has_any] == 0.0)
    assert dropped.sum() < present.sum(), "nothing was dropped"
    # A row whose every modality was drawn for dropping keeps all it had.
    changed = dropped.sum(axis=1) < present.sum(axis=1)
    assert changed.any() and not changed.all()


@pytest.mark.parametrize("training, rate", [(False, 0.5), (None, 0.5), (True, 0.0)])
def test_drop_modalities_is_a_no_op_outside_training_or_at_rate_zero(training, rate):
    generator = keras.random.SeedGenerator(3)
    state = as_numpy(generator.state)
    present = np.ones((5, 2), "float32")
    np.testing.assert_array_equal(as_numpy(drop_modalities(present, rate, generator, training=training)), present)
    np.testing.assert_array_equal(as_numpy(generator.state), state)  # no random numbers drawn


def test_modality_dropout_layer_keeps_one_per_example_and_matches_drop_modalities():
    masks = [np.ones(64, "float32"), np.array([1.0, 0.0] * 32, "float32"), np.full(64, 0.4, "float32")]
    layer = ModalityDropout(rate=0.5, seed=1)
    out = np.stack([as_numpy(m) for m in layer(masks, training=True)], axis=1)
    assert out.shape == (64, 3)
    assert np.all(out.sum(axis=1) >= 1) and out.sum() < 96
    assert np.all(out[:, 2] == 0.0), "a flag of 0.4 is below the layer's 0.5 threshold"
    expected = drop_modalities(presence_matrix(masks, threshold=0.5), 0.5, keras.random.SeedGenerator(1))
    np.testing.assert_array_equal(out, as_numpy(expected))
    inference = np.stack([as_numpy(m) for m in layer(masks, training=False)], axis=1)
    np.testing.assert_array_equal(inference, np.stack([[1.0] * 64, [1.0, 0.0] * 32, [0.0] * 64], axis=1))


def test_drop_all_rate_empties_whole_examples_only_while_training():
    masks = [np.ones(400, "float32"), np.ones(400, "float32")]
    layer = ModalityDropout(rate=0.0, drop_all_rate=0.5, seed=2)
    out = np.stack([as_numpy(m) for m in layer(masks, training=True)], axis=1)
    assert set(out.sum(axis=1)) == {0.0, 2.0}, "an example keeps all its modalities or loses all of them"
    assert 0.4 < np.mean(out.sum(axis=1) == 0) < 0.6
    np.testing.assert_array_equal(np.stack([as_numpy(m) for m in layer(masks, training=False)], axis=1), 1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 1.0}, "rate must be a float in \\[0, 1\\), got 1.0"),
    ({"drop_all_rate": -0.1}, "drop_all_rate must be a float in \\[0, 1\\), got -0.1"),
])
def test_bad_rates_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalityDropout(**kwargs)


def test_modality_dropout_config_round_trip():
    layer = ModalityDropout(rate=0.25, seed=9, drop_all_rate=0.1, name="md")
    config = layer.get_config()
    assert config["rate"] == 0.25 and config["seed"] == 9 and config["drop_all_rate"] == 0.1
    clone = ModalityDropout.from_config(config)
    assert (clone.rate, clone.seed, clone.drop_all_rate) == (0.25, 9, 0.1)


def test_fusion_presence_uses_the_same_dropout():
    batch = 32
    rng = np.random.default_rng(4)
    features = {m: rng.normal(size=(batch, 4)).astype("float32") for m in ("audio", "image", "text")}
    masks = {"audio": (rng.random(batch) > 0.5).astype("float32"), "image": None, "text": np.ones((batch, 1), "float32")}
    fusion = ConcatFusion(modality_dropout=0.6, seed=11)
    got = as_numpy(fusion.presence(features, masks, training=True))
    base = presence_matrix([masks[m] for m in features], batch=batch)
    expected = as_numpy(drop_modalities(base, 0.6, keras.random.SeedGenerator(11)))
    np.testing.assert_array_equal(got, expected)
    assert np.all(got.sum(axis=1) >= 1)
    np.testing.assert_array_equal(as_numpy(fusion.presence(features, masks, training=False)), as_numpy(base))


@pytest.mark.parametrize("obj", [ModalityDropout, drop_modalities, presence_matrix])
def test_docstring_example_runs(obj):
    import re
    import textwrap

    match = re.search(r"```python\n(.*?)```", obj.__doc__, re.S)
    assert match, f"{obj.__name__}: the docstring needs a ```python example"
    exec(textwrap.dedent(match.group(1)), {})
