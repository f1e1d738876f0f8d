"""Caption text from WordPiece output: punctuation put back where written text has it (graph-mode TF ops).

A WordPiece tokenizer splits punctuation into tokens of its own, so joining
the tokens with spaces (keras_hub's `WordPieceTokenizer.detokenize`) writes
"flag : sweden", "it ' s", "( a )". `attach_punctuation` re-attaches it
with `tf.strings.regex_replace` only, so the same function runs in
`Captioner.detokenize` and inside an exported SavedModel (no kerasmm, no
tensorflow-text needed to serve it).

Example:
```python
from kerasmm.generation import attach_punctuation
attach_punctuation(["flag : sweden", "it ' s a black - and - white photo ( 1950 ) ."])
# → [b"flag: sweden", b"it's a black-and-white photo (1950)."]
```
"""

import tensorflow as tf

# (RE2 pattern, replacement), applied in order to the space-joined tokens.
PUNCTUATION_RULES = (
    # No space before closing punctuation: "flag : sweden" → "flag: sweden", "a )" → "a)".
    (r" +([.,;:!?%)\]}])", r"\1"),
    # No space after opening brackets and currency: "( a" → "(a", "$ 5" → "$5".
    (r"([(\[{$]) +", r"\1"),
    # English contractions: "it ' s" → "it's", "don ' t" → "don't".
    (r"(\S) ' (s|t|re|ve|ll|d|m)\b", r"\1'\2"),
    # Hyphenated and slashed words: "black - and - white" → "black-and-white", "and / or" → "and/or".
    (r"(\S) ([-/]) (\S)", r"\1\2\3"),
    # Numbers: "3 . 5" → "3.5", "3, 000" → "3,000", "10: 30" → "10:30" (after the first rule).
    (r"(\d)([.,:]) (\d)", r"\1\2\3"),
    # Paired double quotes hug their text: 'says " stop "' → 'says "stop"'.
    (r'" ([^"]*?) "', r'"\1"'),
)


def attach_punctuation(text):
    """String tensor of captions (any shape) with WordPiece's spaces around punctuation removed as written.

    Graph-safe (`tf.strings.regex_replace` only); see `PUNCTUATION_RULES`.
    """
    text = tf.convert_to_tensor(text, tf.string)
    for pattern, rewrite in PUNCTUATION_RULES:
        text = tf.strings.regex_replace(text, pattern, rewrite)
    return text
