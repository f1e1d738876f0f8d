"""WordPiece vocabularies for kerasmm's text models: train from your captions, save, load, tokenise.

`train_vocabulary` learns a WordPiece vocabulary with keras_hub's
`compute_word_piece_vocabulary` (which needs tensorflow-text) from a kerasmm
dataset, a dataset of strings or a list of strings. The reserved tokens come
first, so "[PAD]" is id 0 (what the models pad with) and "[UNK]" stands for
anything unknown. Pass the vocabulary to a zoo model
(`kerasmm.zoo.get(name, vocabulary=vocab)`); its preprocessor tokenises with
a keras_hub `WordPieceTokenizer` and packs the ids to the model's sequence
length with a keras_hub `StartEndPacker`. The tokenizer saves its vocabulary
as an asset inside the model's `.keras` file, so a saved model needs no
vocabulary file beside it.

Example:
```python
from kerasmm.data import shapes
from kerasmm.data.text import save_vocabulary, tokenizer, train_vocabulary
vocab = train_vocabulary(shapes(num_examples=200, task="captioning"), size=500)
save_vocabulary(vocab, "/tmp/vocab.txt")
ids = tokenizer(vocab)(["a small red circle"])
```
"""

import os

import keras_hub
import tensorflow as tf

from kerasmm import validation

RESERVED_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]")
_BATCH = 1024


def train_vocabulary(source, size=8000, lowercase=True, reserved_tokens=RESERVED_TOKENS, min_count=None):
    """Train a WordPiece vocabulary (a list of str, reserved tokens first) on the texts of `source`.

    `source` is a batched `(features, targets)` dataset from a kerasmm reader
    (its `features["text"]` and, for captioning, its string targets), a
    dataset of strings, or a list of strings. `size` is the largest number of
    tokens (fewer when the texts need fewer). Keep `lowercase=True` for zoo
    models: their tokenizers lowercase. `min_count`: how often a word must
    occur to become a token of its own (rarer words are spelt in pieces);
    None keeps keras_hub's learner, whose floor is 10, too high for a few
    thousand captions, where most words occur less often.

    Example:
    ```python
    from kerasmm.data.text import train_vocabulary
    vocab = train_vocabulary(["a red circle", "a blue square"], size=100)
    vocab[:4]   # ['[PAD]', '[UNK]', '[START]', '[END]']
    ```
    """
    size = validation.positive_int("size", size)
    reserved = [str(t) for t in reserved_tokens]
    if not reserved or reserved[0] != "[PAD]" or "[UNK]" not in reserved:
        raise ValueError(
            f"reserved_tokens must start with '[PAD]' (id 0, the padding id) and contain '[UNK]'; got {reserved}."
        )
    if len(set(reserved)) != len(reserved):
        raise ValueError(f"reserved_tokens has duplicates: {reserved}.")
    if size <= len(reserved):
        raise ValueError(f"size must exceed the {len(reserved)} reserved tokens, got {size}.")
    texts = _texts(source)
    if min_count is None:
        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            texts, vocabulary_size=size, lowercase=lowercase, reserved_tokens=reserved
        )
    else:
        # keras_hub's trainer fixes the learner's count floor at 10; tensorflow-text's own entry point takes it.
        from tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset import bert_vocab_from_dataset

        min_count = validation.positive_int("min_count", min_count)
        if lowercase:
            texts = texts.map(lambda batch: tf.strings.lower(batch, encoding="utf-8"))
        vocabulary = bert_vocab_from_dataset(texts.unbatch(), size, reserved, bert_tokenizer_params={"lower_case": False},
                                             learn_params={"lower_thresh": min_count})
    if vocabulary[: len(reserved)] != reserved:  # keras_hub puts them first; the models rely on it
        vocabulary = reserved + [t for t in vocabulary if t not in reserved][: size - len(reserved)]
    return list(vocabulary)


def _texts(source):
    """`source` as a dataset of string batches `[B]`."""
    if isinstance(source, (str, bytes)):
        raise ValueError("train_vocabulary needs many texts: pass a list of strings or a dataset, not one string.")
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("train_vocabulary: the list of texts is empty.")
        bad = [t for t in source if not isinstance(t, (str, bytes))]
        if bad:
            raise ValueError(f"train_vocabulary: a list source must hold strings, got {type(bad[0]).__name__}.")
        return tf.data.Dataset.from_tensor_slices(list(source)).batch(_BATCH)
    if not isinstance(source, tf.data.Dataset):
        raise ValueError(
            "train_vocabulary: source must be a kerasmm dataset of (features, targets), a dataset of "
            f"strings or a list of strings, got {type(source).__name__}."
        )
    spec = source.element_spec
    if _is_strings(spec):
        return _as_batches(source, spec)
    pair = isinstance(spec, tuple) and len(spec) == 2
    features, targets = spec if pair else (spec, None)
    parts = []
    if isinstance(features, dict) and _is_strings(features.get("text")):
        text = source.map(lambda f, t: f["text"]) if pair else source.map(lambda f: f["text"])
        parts.append(_as_batches(text, features["text"]))
    if _is_strings(targets):
        parts.append(_as_batches(source.map(lambda f, t: t), targets))
    if not parts:
        raise ValueError(
            "train_vocabulary: the dataset has no text: expected strings, features['text'] or string "
            f"(caption) targets; got element spec {spec}."
        )
    return parts[0] if len(parts) == 1 else parts[0].concatenate(parts[1])


def _is_strings(spec):
    return isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string and spec.shape.rank in (0, 1)


def _as_batches(dataset, spec):
    return dataset.batch(_BATCH) if spec.shape.rank == 0 else dataset


def save_vocabulary(vocabulary, path):
    """Write `vocabulary` to `path`, one token per line (UTF-8); returns `path`.

    Example:
    ```python
    from kerasmm.data.text import load_vocabulary, save_vocabulary
    save_vocabulary(["[PAD]", "[UNK]", "red"], "/tmp/vocab.txt")
    load_vocabulary("/tmp/vocab.txt")   # ['[PAD]', '[UNK]', 'red']
    ```
    """
    tokens = [str(t) for t in vocabulary]
    bad = [t for t in tokens if not t or "\n" in t or "\r" in t]
    if bad:
        raise ValueError(f"save_vocabulary: a token must be non-empty and on one line, got {bad[0]!r}.")
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(token + "\n" for token in tokens))
    return path


def load_vocabulary(path):
    """The vocabulary in `path`: one token per line (blank lines ignored).

    Example:
    ```python
    from kerasmm.data.text import load_vocabulary
    vocab = load_vocabulary("/tmp/vocab.txt")
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"load_vocabulary: no vocabulary file {path!r}.")
    with open(path, encoding="utf-8", newline="") as f:
        tokens = [line.rstrip("\r\n") for line in f]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise ValueError(f"load_vocabulary: {path} holds no tokens.")
    return tokens


def tokenizer(vocabulary, sequence_length=None, lowercase=True):
    """A keras_hub `WordPieceTokenizer` over `vocabulary` (a token list or a vocabulary file).

    The zoo models build the same tokenizer in their preprocessor, which then
    pads/cuts the ids with a keras_hub `StartEndPacker`; `sequence_length`
    here pads or cuts the tokenizer's own output instead. Saved in a `.keras`
    file (inside a model's preprocessor or on its own), the tokenizer keeps
    its vocabulary as an asset of that file.

    Example:
    ```python
    from kerasmm.data.text import tokenizer
    tok = tokenizer(["[PAD]", "[UNK]", "a", "red", "circle"], sequence_length=6)
    tok(["a red circle"])   # [[2, 3, 4, 0, 0, 0]]
    ```
    """
    if isinstance(vocabulary, (str, os.PathLike)):
        vocabulary = load_vocabulary(vocabulary)
    vocabulary = [str(t) for t in vocabulary]
    if "[UNK]" not in vocabulary:
        raise ValueError("tokenizer: the vocabulary needs '[UNK]' (the token for unknown words).")
    sequence_length = validation.positive_int("sequence_length", sequence_length, allow_none=True)
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, sequence_length=sequence_length, lowercase=lowercase, oov_token="[UNK]"
    )
