"""Tests for `kerasmm.data.text`: training, saving and loading WordPiece vocabularies."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.data import shapes, shapes_arrays
from kerasmm.data.text import RESERVED_TOKENS, load_vocabulary, save_vocabulary, tokenizer, train_vocabulary

CAPTIONS = [str(c) for c in shapes_arrays(num_examples=200, task="captioning")[1]]


@pytest.fixture(scope="module")
def caption_vocab():
    return train_vocabulary(shapes(num_examples=200, batch_size=32, task="captioning"), size=500)


def unknown_count(vocab, texts):
    ids = tokenizer(vocab)(tf.constant(texts))  # eagerly, keras_hub gives ragged ids as lists
    return sum(row.count(vocab.index("[UNK]")) for row in ids)


def test_vocabulary_from_caption_targets_covers_the_captions(caption_vocab):
    vocab = caption_vocab
    assert vocab[: len(RESERVED_TOKENS)] == list(RESERVED_TOKENS) and vocab.index("[PAD]") == 0
    assert len(vocab) <= 500 and len(set(vocab)) == len(vocab)
    assert unknown_count(vocab, CAPTIONS) == 0
    ids = np.asarray(tokenizer(vocab, sequence_length=24)(tf.constant(CAPTIONS[:3])))
    assert ids.shape == (3, 24) and ids[:, 0].min() >= len(RESERVED_TOKENS) and ids[:, -1].max() == 0
    assert unknown_count(vocab, ["a zebra"]) > 0  # "z" never occurs in a caption


def test_vocabulary_from_text_features_lists_and_string_datasets():
    classification = shapes(num_examples=200, batch_size=32)
    texts = [str(t) for t in shapes_arrays(num_examples=200)[0]["text"]]
    for source in (classification, texts, tf.data.Dataset.from_tensor_slices(texts)):
        vocab = train_vocabulary(source, size=300)
        assert vocab[:4] == list(RESERVED_TOKENS)
        assert unknown_count(vocab, texts) == 0
    custom = train_vocabulary(texts, size=300, reserved_tokens=("[PAD]", "[UNK]"))
    assert custom[:2] == ["[PAD]", "[UNK]"] and "[START]" not in custom


def test_save_and_load_round_trip(tmp_path, caption_vocab):
    vocab = caption_vocab + ["café", "##ü"]
    path = save_vocabulary(vocab, str(tmp_path / "sub" / "vocab.txt"))
    assert load_vocabulary(path) == vocab
    assert (tmp_path / "sub" / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
    assert tokenizer(path).get_vocabulary() == vocab


def test_min_count_keeps_words_seen_that_often_whole():
    texts = ["Glacier walk", "glacier VIEW", "a walrus", "a Walrus"] + [f"token{i}" for i in range(20)]
    default = train_vocabulary(texts, size=200)  # keras_hub's learner: a word needs 10 occurrences
    assert "glacier" not in default and "walrus" not in default
    vocab = train_vocabulary(texts, size=200, min_count=2)
    assert vocab[:4] == ["[PAD]", "[UNK]", "[START]", "[END]"]
    assert {"glacier", "walrus"} <= set(vocab) and "view" not in vocab  # lowercased; "view" occurs once
    ids = np.asarray(tokenizer(vocab).tokenize("a glacier walk")).tolist()
    assert vocab.index("[UNK]") not in ids and vocab[ids[1]] == "glacier"
    with pytest.raises(ValueError, match="min_count"):
        train_vocabulary(texts, min_count=0)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="size must exceed"):
        train_vocabulary(CAPTIONS, size=4)
    with pytest.raises(ValueError, match=r"start with '\[PAD\]'"):
        train_vocabulary(CAPTIONS, reserved_tokens=("[UNK]", "[PAD]"))
    with pytest.raises(ValueError, match="empty"):
        train_vocabulary([])
    with pytest.raises(ValueError, match="not one string"):
        train_vocabulary("a red circle")
    with pytest.raises(ValueError, match="no text"):
        train_vocabulary(shapes(num_examples=4, batch_size=2).map(lambda f, y: ({"image": f["image"]}, y)))
    with pytest.raises(ValueError, match="one line"):
        save_vocabulary(["[PAD]", "two\nlines"], str(tmp_path / "v.txt"))
    with pytest.raises(ValueError, match="no vocabulary file"):
        load_vocabulary(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        tokenizer(["[PAD]", "a"])


def test_model_trains_with_the_vocabulary_and_keeps_it_in_its_keras_file(tmp_path):
    vocab = train_vocabulary(shapes(num_examples=200, batch_size=50), size=400)
    vocab_file = save_vocabulary(vocab, str(tmp_path / "vocab.txt"))
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier", vocabulary=vocab_file)
    assert model.preprocessor.tokenizer.get_vocabulary() == vocab
    train = shapes(num_examples=8, batch_size=4)
    history = model.fit(train.take(1), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    expected = model.predict(train, verbose=0)
    saved = str(tmp_path / "model.keras")
    model.save(saved)
    os.remove(vocab_file)  # the vocabulary must travel inside the .keras file
    loaded = keras.saving.load_model(saved, safe_mode=True)
    assert loaded.preprocessor.tokenizer.get_vocabulary() == vocab
    np.testing.assert_allclose(loaded.predict(train, verbose=0), expected, atol=1e-5)
