"""`MultimodalClassifier(modality_loss_weight=w)`: every modality also learns to classify on its own."""

import keras
import numpy as np
import pytest

import kerasmm


def shapes():
    return kerasmm.data.shapes(num_examples=4, batch_size=4, task="classification")


def test_the_loss_adds_each_modality_cross_entropy_and_prediction_stays_fused(tmp_path):
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", modality_loss_weight=0.5, dropout=0.0)
    assert sorted(model.modality_heads) == ["image", "text"]
    x, y = next(iter(shapes().map(model.preprocess_samples)))
    outputs = model(x, training=True)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = sum(float(cross_entropy(y, outputs[m])) * w for m, w in (("fused", 1), ("image", 0.5), ("text", 0.5)))
    assert float(model.compute_loss(x, y, outputs)) == pytest.approx(expected, rel=1e-5)
    # Outside training the model gives the fused logits alone, as the same weights without the heads do.
    plain = kerasmm.zoo.get("tiny_weighted_sum_classifier", dropout=0.0, modality_loss_weight=0.0)
    plain.backbone.set_weights(model.backbone.get_weights())
    plain.output_dense.set_weights(model.output_dense.get_weights())
    np.testing.assert_allclose(model(x), plain(x), atol=1e-6)

    history = model.fit(shapes(), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.modality_loss_weight == 0.5
    np.testing.assert_allclose(loaded.predict(shapes(), verbose=0), model.predict(shapes(), verbose=0), atol=1e-6)


def test_one_modality_has_no_extra_head_and_a_negative_weight_is_refused():
    assert kerasmm.zoo.get("tiny_weighted_sum_classifier", modality_loss_weight=1.0,
                           encoders={"text": None}).modality_heads == {}
    with pytest.raises(ValueError, match="modality_loss_weight must be a non-negative number, got -1"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", modality_loss_weight=-1)
