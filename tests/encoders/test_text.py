"""Tests for the text encoders: "text_transformer", "bert", "bow"."""

import os

import keras
import keras_hub
import numpy as np
import pytest

import kerasmm
from kerasmm import testing
from kerasmm.encoders.text import BagOfWordsEncoder, BertTextEncoder, TextTransformerEncoder

IDS = np.array([[5, 6, 7, 8, 0, 0], [9, 3, 0, 0, 0, 0]], "int32")

TRANSFORMER_KWARGS = dict(vocabulary_size=50, sequence_length=10, output_dim=16, num_layers=1, num_heads=2)
BERT_KWARGS = dict(vocabulary_size=50, output_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
                   max_sequence_length=10)
BOW_KWARGS = dict(vocabulary_size=50, output_dim=16)

ENCODERS = [
    (TextTransformerEncoder, TRANSFORMER_KWARGS),
    (BertTextEncoder, BERT_KWARGS),
    (BagOfWordsEncoder, BOW_KWARGS),
]
ENCODER_IDS = ["text_transformer", "bert", "bow"]


def _shapes(length, dim=16):
    return {"sequence": (None, length, dim), "pooled": (None, dim), "sequence_mask": (None, length)}


# --- run_layer_test ---------------------------------------------------------


def test_text_transformer_layer():
    # 2 embeddings + 16 per block (q,k,v,o kernels+biases, 2 LayerNorms, 2 Dense) + final LayerNorm 2.
    out = testing.run_layer_test(
        TextTransformerEncoder, TRANSFORMER_KWARGS, IDS,
        expected_output_shape=_shapes(6), expected_num_trainable_weights=20,
    )
    np.testing.assert_array_equal(out["sequence_mask"], IDS != 0)


def test_text_transformer_two_layers_weight_count():
    encoder = TextTransformerEncoder(**{**TRANSFORMER_KWARGS, "num_layers": 2, "intermediate_dim": 24})
    encoder(IDS)
    assert len(encoder.trainable_weights) == 36
    assert encoder.blocks[0].intermediate_dim == 24
    # Default intermediate_dim is 4 * output_dim.
    assert TextTransformerEncoder(**TRANSFORMER_KWARGS).blocks[0].intermediate_dim == 64


def test_bert_layer():
    # token, position, segment embeddings + embedding LayerNorm 2 + one block 16 + pooler 2.
    out = testing.run_layer_test(
        BertTextEncoder, BERT_KWARGS, IDS, expected_output_shape=_shapes(6), expected_num_trainable_weights=23,
    )
    np.testing.assert_array_equal(out["sequence_mask"], IDS != 0)


def test_bow_layer():
    testing.run_layer_test(
        BagOfWordsEncoder, BOW_KWARGS, IDS, expected_output_shape=_shapes(6), expected_num_trainable_weights=1,
    )


def test_bow_projected_layer():
    testing.run_layer_test(
        BagOfWordsEncoder, {**BOW_KWARGS, "embedding_dim": 8, "combiner": "sum"}, IDS,
        expected_output_shape=_shapes(6), expected_num_trainable_weights=3,
    )


# --- masks --------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", ENCODERS, ids=ENCODER_IDS)
def test_padding_does_not_change_pooled(cls, kwargs):
    encoder = cls(**kwargs)
    padded = np.concatenate([IDS, np.zeros((2, 3), "int32")], axis=1)
    short = encoder(IDS)
    long = encoder(padded)
    np.testing.assert_allclose(long["pooled"], short["pooled"], atol=1e-5)
    np.testing.assert_allclose(long["sequence"][:, :6][IDS != 0], short["sequence"][IDS != 0], atol=1e-5)
    np.testing.assert_array_equal(long["sequence_mask"], padded != 0)


@pytest.mark.parametrize("cls, kwargs", [ENCODERS[0], ENCODERS[2]], ids=["text_transformer", "bow"])
def test_all_padding_row_pools_to_zeros(cls, kwargs):
    ids = np.array([[4, 5, 0], [0, 0, 0]], "int32")
    pooled = keras.ops.convert_to_numpy(cls(**kwargs)(ids)["pooled"])
    assert np.all(np.isfinite(pooled))
    np.testing.assert_array_equal(pooled[1], 0.0)


def test_bow_sequence_is_zero_at_padding_and_carries_no_keras_mask():
    out = BagOfWordsEncoder(**BOW_KWARGS)(IDS)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out["sequence"])[IDS == 0], 0.0)
    assert getattr(out["sequence"], "_keras_mask", None) is None


def test_bow_combiners_match_manual_pooling():
    ids = np.array([[3, 4, 0]], "int32")
    mean_encoder = BagOfWordsEncoder(**BOW_KWARGS)
    out = mean_encoder(ids)
    table = keras.ops.convert_to_numpy(mean_encoder.embedding.embeddings)
    np.testing.assert_allclose(out["pooled"][0], (table[3] + table[4]) / 2, rtol=1e-6)
    sum_encoder = BagOfWordsEncoder(**BOW_KWARGS, combiner="sum")
    out = sum_encoder(ids)
    table = keras.ops.convert_to_numpy(sum_encoder.embedding.embeddings)
    np.testing.assert_allclose(out["pooled"][0], table[3] + table[4], rtol=1e-6)


# --- input validation ---------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", ENCODERS, ids=ENCODER_IDS)
def test_wrong_dtype_and_rank_are_refused(cls, kwargs):
    encoder = cls(**kwargs)
    with pytest.raises(ValueError, match=rf"{cls.__name__} \(text encoder\) expects .*got dtype float32"):
        encoder(IDS.astype("float32"))
    with pytest.raises(ValueError, match=r"expects .*rank 2.*got an input of shape"):
        encoder(IDS[..., None])
    with pytest.raises(ValueError, match="rank 2"):
        encoder(keras.Input((6, 3), dtype="int32"))


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (TextTransformerEncoder, {**TRANSFORMER_KWARGS, "vocabulary_size": 0}, "vocabulary_size"),
        (TextTransformerEncoder, {**TRANSFORMER_KWARGS, "num_heads": 3}, "divisible by num_heads"),
        (TextTransformerEncoder, {**TRANSFORMER_KWARGS, "dropout": 1.0}, "dropout"),
        (TextTransformerEncoder, {**TRANSFORMER_KWARGS, "output_dim": 0}, "output_dim"),
        (BertTextEncoder, {"output_dim": 16}, "missing vocabulary_size"),
        (BertTextEncoder, {"vocabulary_size": 50}, "missing output_dim"),
        (BertTextEncoder, {**BERT_KWARGS, "hidden_dim": 8}, "alias of output_dim"),
        (BertTextEncoder, {**BERT_KWARGS, "num_heads": 5}, "divisible by num_heads"),
        (BertTextEncoder, {**BERT_KWARGS, "trainable_backbone": "no"}, "trainable_backbone"),
        (BagOfWordsEncoder, {**BOW_KWARGS, "combiner": "max"}, "'mean', 'sum'"),
        (BagOfWordsEncoder, {**BOW_KWARGS, "embedding_dim": -1}, "embedding_dim"),
    ],
)
def test_bad_args(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls, kwargs, arg", [
    (TextTransformerEncoder, TRANSFORMER_KWARGS, "sequence_length"),
    (BertTextEncoder, BERT_KWARGS, "max_sequence_length"),
])
def test_too_long_input_is_refused_at_build(cls, kwargs, arg):
    with pytest.raises(ValueError, match=f"has 12 tokens but {arg} is 10"):
        cls(**kwargs)(keras.Input((12,), dtype="int32"))


def test_registered_names():
    assert {"text_transformer", "bert", "bow"} <= set(kerasmm.encoders.list())
    assert isinstance(kerasmm.encoders.get("bow", **BOW_KWARGS), BagOfWordsEncoder)
    for name in ("text_transformer", "bert", "bow"):
        assert kerasmm.encoders.modality_of(name) == "text"


# --- BERT presets ---------------------------------------------------------------


def _tiny_backbone():
    return keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=12, num_segments=3,
    )


def test_bert_local_preset_matches_backbone(tmp_path):
    backbone = _tiny_backbone()
    preset = tmp_path / "tiny_bert"
    backbone.save_to_preset(str(preset))
    expected = backbone({
        "token_ids": IDS, "segment_ids": np.zeros_like(IDS), "padding_mask": (IDS != 0).astype("int32"),
    })

    encoder = BertTextEncoder(preset=str(preset))
    out = encoder(IDS)
    np.testing.assert_allclose(out["sequence"], expected["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(out["pooled"], expected["pooled_output"], atol=1e-5)
    assert encoder.output_dim == 8

    config = encoder.get_config()
    assert config["preset"] is None
    assert {k: config[k] for k in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "output_dim",
                                   "intermediate_dim", "max_sequence_length", "num_segments")} == dict(
        vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=8, output_dim=8, intermediate_dim=16,
        max_sequence_length=12, num_segments=3)
    # Agreeing architecture arguments are accepted next to the preset; clashing ones are not.
    BertTextEncoder(preset=str(preset), output_dim=8, num_layers=1)
    with pytest.raises(ValueError, match=r"output_dim|hidden_dim=16 \(preset has 8\)"):
        BertTextEncoder(preset=str(preset), output_dim=16)

    # A .keras file restores the weights from itself, not from the preset.
    inputs = keras.Input((6,), dtype="int32")
    model = keras.Model(inputs, encoder(inputs)["pooled"])
    model_path = os.path.join(tmp_path, "model.keras")
    model.save(model_path)
    for name in os.listdir(preset):
        os.remove(preset / name)
    os.rmdir(preset)
    loaded = keras.saving.load_model(model_path, safe_mode=True)
    np.testing.assert_allclose(loaded(IDS), expected["pooled_output"], atol=1e-5)


def test_bert_frozen_backbone():
    encoder = BertTextEncoder(**BERT_KWARGS, trainable_backbone=False)
    encoder(IDS)
    assert encoder.trainable_weights == []
    assert len(encoder.non_trainable_weights) == 23
    assert encoder.get_config()["trainable_backbone"] is False


@pytest.mark.parametrize(
    "preset, message",
    [
        ("/no/such/kerasmm/preset/dir", "neither a local preset directory nor a keras-hub preset name"),
        ("gs://bucket/bert", "fetches presets from kaggle:// and hf:// handles only"),
        (123, "preset must be a keras-hub preset name, handle or local directory"),
    ],
)
def test_bert_refuses_what_is_not_a_preset(preset, message):
    with pytest.raises(ValueError, match=message):
        BertTextEncoder(preset=preset)


def test_bert_refuses_directory_without_config(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        BertTextEncoder(preset=str(tmp_path))


def test_bert_refuses_builtin_name_even_if_a_local_dir_has_that_name(tmp_path, monkeypatch):
    # keras-hub resolves builtin names before local paths; kerasmm loads the local directory.
    backbone = _tiny_backbone()
    backbone.save_to_preset(str(tmp_path / "bert_base_en"))
    monkeypatch.chdir(tmp_path)
    encoder = BertTextEncoder(preset="bert_base_en")
    assert encoder.vocabulary_size == 40
