"""Cross-attention fusion over modality sequences."""

import keras
from keras import ops

from kerasmm import validation
from kerasmm.fusions import register
from kerasmm.fusions.base import Fusion
from kerasmm.layers.masked_ops import masked_mean


@register("cross_attention")
class CrossAttentionFusion(Fusion):
    """One modality's sequence attends to the others', then is mean-pooled.

    The `query` modality's sequence `[B, Tq, Dq]` attends, with
    `keras.layers.MultiHeadAttention`, to the `context` modality's sequence
    (several context modalities are concatenated along time; they need the
    same width). Each of the `num_layers` blocks is attention + residual +
    LayerNorm, then a feed-forward block (`Dense(intermediate_dim, gelu)`,
    `Dense(Dq)`) + residual + LayerNorm. The result is mean-pooled over the
    query's real positions, giving `[B, Dq]`. Pooled `[B, D]` inputs are
    accepted too and treated as length-1 sequences.

    Masks: `"<m>_padding_mask"` (`[B, T]`, True/1 at real positions) hides
    padded positions (keys of context modalities, and query positions from
    the pooling); an absent context modality is hidden entirely. When no
    context position of an example is visible, its attention update is
    zeroed (the output then is the query through the feed-forward path). An
    absent query modality has its features zeroed.

    Returned weights: each context modality gets the share of attention mass
    it received (averaged over heads, real query positions and layers), so
    the context modalities sum to 1; the query modality gets 0, or 1 for an
    example without any visible context (when the query is present).

    Args:
        query: str, the modality whose sequence forms the queries.
        context: str or list of str, the modality (modalities) attended to.
        num_heads: positive int, attention heads (default 4).
        key_dim: positive int, size of each head; default `Dq // num_heads`.
        intermediate_dim: positive int, hidden width of the feed-forward
            block; default `4 * Dq`.
        dropout: float in [0, 1), on attention probabilities and on each
            residual branch.
        num_layers: positive int, number of attention + feed-forward blocks.
        modality_dropout, seed: see `kerasmm.fusions.Fusion`; the fused
            modalities are always `[query, *context]`.

    Example:
    ```python
    import numpy as np
    from kerasmm.fusions.cross_attention import CrossAttentionFusion
    fusion = CrossAttentionFusion(query="text", context="image", num_heads=2)
    fused, weights = fusion(
        {
            "text": np.random.rand(2, 5, 8).astype("float32"),
            "text_padding_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool),
            "image": np.random.rand(2, 4, 8).astype("float32"),
        },
        return_weights=True,
    )
    fused.shape  # (2, 8); weights == {"text": [0, 0], "image": [1, 1]}
    ```
    """

    input_kind = "sequence"

    def __init__(
        self,
        query,
        context,
        num_heads=4,
        key_dim=None,
        intermediate_dim=None,
        dropout=0.0,
        num_layers=1,
        **kwargs,
    ):
        name = "CrossAttentionFusion"
        if not isinstance(query, str) or not query:
            raise ValueError(f"{name}: query must be a modality name (non-empty str), got {query!r}.")
        contexts = [context] if isinstance(context, str) else context
        if (
            not isinstance(contexts, (list, tuple))
            or not contexts
            or not all(isinstance(c, str) and c for c in contexts)
        ):
            raise ValueError(
                f"{name}: context must be a modality name or a non-empty list of names, got {context!r}."
            )
        if query in contexts:
            raise ValueError(
                f"{name}: the query modality {query!r} cannot also be a context modality "
                f"(context={list(contexts)})."
            )
        if len(set(contexts)) != len(contexts):
            raise ValueError(f"{name}: context modalities must be distinct, got {list(contexts)}.")
        expected = [query, *contexts]
        modalities = kwargs.pop("modalities", None)
        if modalities is not None and [str(m) for m in modalities] != expected:
            raise ValueError(
                f"{name}: modalities is derived from query and context ({expected}); got "
                f"modalities={modalities!r}. Leave modalities unset."
            )
        validation.positive_int(f"{name}: num_heads", num_heads)
        validation.positive_int(f"{name}: key_dim", key_dim, allow_none=True)
        validation.positive_int(f"{name}: intermediate_dim", intermediate_dim, allow_none=True)
        dropout = validation.rate(f"{name}: dropout", dropout)
        validation.positive_int(f"{name}: num_layers", num_layers)
        super().__init__(modalities=expected, **kwargs)
        self.query = query
        self.context = context if isinstance(context, str) else list(context)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.num_layers = num_layers

    @property
    def _context_list(self):
        return [self.context] if isinstance(self.context, str) else list(self.context)

    def build(self, input_shape):
        features, _, _ = self.split_inputs(input_shape)
        self._fused_modalities = list(features)
        shapes = {}
        for m, shape in features.items():
            shape = tuple(shape)
            if len(shape) == 2:
                shape = (shape[0], 1, shape[1])
            if len(shape) != 3:
                raise ValueError(
                    f"CrossAttentionFusion expects [B, T, D] sequences (or [B, D] vectors) per "
                    f"modality; {m!r} has shape {shape}."
                )
            shapes[m] = shape
        query_shape = shapes[self.query]
        context_widths = {m: shapes[m][-1] for m in self._context_list}
        if len(set(context_widths.values())) > 1:
            raise ValueError(
                "CrossAttentionFusion concatenates its context modalities along time, so they need "
                f"the same width, got {context_widths}. Give their encoders the same output_dim."
            )
        lengths = [shapes[m][1] for m in self._context_list]
        context_shape = (
            None,
            None if any(t is None for t in lengths) else sum(lengths),
            next(iter(context_widths.values())),
        )
        width = query_shape[-1]
        key_dim = self.key_dim or max(width // self.num_heads, 1)
        inner = self.intermediate_dim or 4 * width
        policy = self.dtype_policy
        self.attention_layers, self.attention_norms = [], []
        self.ffn_inner, self.ffn_outer, self.ffn_norms = [], [], []
        for i in range(self.num_layers):
            attention = keras.layers.MultiHeadAttention(
                self.num_heads, key_dim, dropout=self.dropout, seed=self.seed,
                name=f"attention_{i}", dtype=policy,
            )
            attention.build(query_shape, context_shape)
            attention_norm = keras.layers.LayerNormalization(
                epsilon=1e-5, name=f"attention_norm_{i}", dtype=policy
            )
            attention_norm.build(query_shape)
            inner_dense = keras.layers.Dense(inner, activation="gelu", name=f"ffn_inner_{i}", dtype=policy)
            inner_dense.build(query_shape)
            outer_dense = keras.layers.Dense(width, name=f"ffn_outer_{i}", dtype=policy)
            outer_dense.build(query_shape[:-1] + (inner,))
            ffn_norm = keras.layers.LayerNormalization(epsilon=1e-5, name=f"ffn_norm_{i}", dtype=policy)
            ffn_norm.build(query_shape)
            self.attention_layers.append(attention)
            self.attention_norms.append(attention_norm)
            self.ffn_inner.append(inner_dense)
            self.ffn_outer.append(outer_dense)
            self.ffn_norms.append(ffn_norm)
        self.dropout_layer = keras.layers.Dropout(self.dropout, seed=self.seed, dtype=policy)

    @staticmethod
    def _as_sequence(x):
        return ops.expand_dims(x, 1) if len(x.shape) == 2 else x

    @staticmethod
    def _valid_positions(x, padding, name):
        """`[B, T]` bool: True at real positions of the sequence `x`."""
        if padding is None:
            return ops.ones(ops.shape(x)[:2], dtype="bool")
        if len(padding.shape) != 2 or (None not in (padding.shape[1], x.shape[1]) and padding.shape[1] != x.shape[1]):
            raise ValueError(
                f"CrossAttentionFusion: {name}_padding_mask must be [B, T] matching the {name!r} "
                f"sequence of shape {tuple(x.shape)}, got shape {tuple(padding.shape)}."
            )
        padding = ops.reshape(padding, ops.shape(x)[:2])
        if keras.backend.standardize_dtype(padding.dtype) == "bool":
            return padding
        return ops.not_equal(padding, ops.zeros_like(padding))

    def fuse(self, features, present, padding_masks, training=None):
        keep = present > 0  # [B, M], columns [query, *context]
        query = self._as_sequence(features[self.query])
        query_valid = self._valid_positions(query, padding_masks.get(self.query), self.query)
        query = ops.where(keep[:, 0, None, None], query, ops.zeros_like(query))

        contexts, context_valid, segments = [], [], []
        for j, m in enumerate(self._context_list, start=1):
            c = self._as_sequence(features[m])
            valid = ops.logical_and(self._valid_positions(c, padding_masks.get(m), m), keep[:, j, None])
            contexts.append(ops.where(valid[:, :, None], c, ops.zeros_like(c)))
            context_valid.append(valid)
            segments.append(ops.ones(ops.shape(c)[:2], dtype=present.dtype))
        many = len(contexts) > 1
        context = ops.concatenate(contexts, axis=1) if many else contexts[0]
        key_valid = ops.concatenate(context_valid, axis=1) if many else context_valid[0]  # [B, Tk]
        # One [B, Tk] indicator per context modality, marking its stretch of the keys.
        indicators = []
        for j in range(len(segments)):
            parts = [s if k == j else ops.zeros_like(s) for k, s in enumerate(segments)]
            indicators.append(ops.concatenate(parts, axis=1) if many else parts[0])
        has_context = ops.any(key_valid, axis=1)  # [B]
        attention_mask = ops.logical_and(
            ops.ones_like(query[:, :, :1], dtype="bool"), key_valid[:, None, :]
        )  # [B, Tq, Tk]

        query_weights = ops.cast(query_valid, present.dtype)  # [B, Tq]
        query_count = ops.maximum(ops.sum(query_weights, axis=1), 1.0)  # [B]
        shares = [ops.zeros_like(present[:, 0]) for _ in indicators]
        x = query
        for i in range(self.num_layers):
            update, scores = self.attention_layers[i](
                x, context, attention_mask=attention_mask, training=training, return_attention_scores=True
            )
            update = ops.where(has_context[:, None, None], update, ops.zeros_like(update))
            x = self.attention_norms[i](x + self.dropout_layer(update, training=training))
            hidden = self.ffn_outer[i](self.ffn_inner[i](x))
            x = self.ffn_norms[i](x + self.dropout_layer(hidden, training=training))
            mass = ops.mean(ops.cast(scores, present.dtype), axis=1)  # [B, Tq, Tk]
            for j, indicator in enumerate(indicators):
                per_query = ops.sum(mass * indicator[:, None, :], axis=-1)  # [B, Tq]
                shares[j] = shares[j] + ops.sum(per_query * query_weights, axis=1) / query_count

        fused = masked_mean(x, query_valid)
        context_shares = ops.stack(shares, axis=1) / float(self.num_layers)  # [B, C]
        total = ops.sum(context_shares, axis=1, keepdims=True)
        context_shares = context_shares / ops.where(total > 0, total, ops.ones_like(total))
        query_share = ops.where(has_context, ops.zeros_like(present[:, 0]), present[:, 0])
        return fused, ops.concatenate([query_share[:, None], context_shares], axis=1)

    def get_config(self):
        config = super().get_config()
        config.pop("modalities", None)
        config.update(
            {
                "query": self.query,
                "context": self.context,
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "num_layers": self.num_layers,
            }
        )
        return config
