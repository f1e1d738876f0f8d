"""Token-buffer helpers shared by in-graph decoding loops (all graph-safe, XLA-friendly)."""

from keras import ops


def initial_prompt(batch_size, max_length, start_id):
    """`(prompt, mask)`: `[B, max_length]` int32 ids holding `start_id` then padding, and where it is fixed."""
    start = ops.full((batch_size, 1), start_id, dtype="int32")
    prompt = ops.concatenate([start, ops.zeros((batch_size, max_length - 1), dtype="int32")], axis=1)
    mask = ops.concatenate(
        [ops.ones((batch_size, 1), dtype="bool"), ops.zeros((batch_size, max_length - 1), dtype="bool")], axis=1
    )
    return prompt, mask


def forbid_padding(logits, pad_id=0):
    """Logits under which `pad_id` is never chosen.

    Generated ids use 0 for "after the end token"; a padding id written
    mid-caption (an untrained model's argmax can be anything) would read as
    the caption's end in scores and token outputs while the text went on.
    """
    vocabulary = ops.shape(logits)[-1]
    return ops.where((ops.arange(vocabulary) == pad_id)[None, :], ops.cast(-1e9, logits.dtype), logits)


def freeze_finished(logits, previous, end_id, pad_id=0):
    """Logits that force `pad_id` in rows whose `previous` token `[B]` is `end_id` or `pad_id`.

    keras_hub's samplers keep extending finished rows; a beam that ended would
    go on adding log-probabilities of tokens nobody reads. Forcing padding
    with probability one (log-probability 0) freezes its score and its text.
    Samplers that keep one row per example need not call this: whatever
    follows the end token is cut off afterwards (`strip_after_end`).
    """
    finished = ops.logical_or(previous == end_id, previous == pad_id)
    vocabulary = ops.shape(logits)[-1]
    pad_only = ops.cast(ops.where(ops.arange(vocabulary) == pad_id, 0.0, -1e9), logits.dtype)[None, :]
    return ops.where(finished[:, None], pad_only, logits)


def strip_after_end(tokens, end_id, pad_id=0):
    """Token ids with everything after the first `end_id` (and it) set to `pad_id`."""
    is_end = ops.cast(tokens == end_id, "int32")
    ended = ops.cumsum(is_end, axis=1) > 0
    return ops.where(ended, ops.cast(pad_id, tokens.dtype), tokens)
