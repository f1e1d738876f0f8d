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


def freeze_finished(logits, prompt, index, end_id, pad_id=0):
    """Logits that force `pad_id` in rows that already produced `end_id` before `index`.

    keras_hub's samplers keep extending finished rows; a beam that ended would
    go on adding log-probabilities of tokens nobody reads. Forcing padding
    with probability one (log-probability 0) freezes its score and its text.
    """
    positions = ops.arange(ops.shape(prompt)[1])[None, :]
    finished = ops.any(ops.logical_and(prompt == end_id, positions < index), axis=1)
    vocabulary = ops.shape(logits)[-1]
    pad_only = ops.where(ops.arange(vocabulary) == pad_id, 0.0, -1e9)
    pad_only = ops.cast(pad_only, logits.dtype)[None, :]
    return ops.where(finished[:, None], pad_only, logits)


def strip_after_end(tokens, end_id, pad_id=0):
    """Token ids with everything after the first `end_id` (and it) set to `pad_id`."""
    is_end = ops.cast(tokens == end_id, "int32")
    ended = ops.cumsum(is_end, axis=1) > 0
    return ops.where(ended, ops.cast(pad_id, tokens.dtype), tokens)
