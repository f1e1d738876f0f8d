"""Image–text matching (ITM): a head that tells whether a caption describes an image, for re-ranking.

`ImageTextMatchingHead` lets the text tower's tokens cross-attend over the
image tower's tokens (keras-hub `TransformerDecoder` blocks without a causal
mask) and returns one match logit per (text, image) pair: its own score plus
the pair's dual-encoder similarity, scaled by a learnt factor. A `DualEncoder`
whose backbone has one (`matching_layers > 0`) trains it beside the
contrastive loss on the positive pairs and on hard negatives mined from the
global batch's similarity matrix (`kerasmm.losses.contrastive.hard_negatives`);
it then re-ranks the dual encoder's top candidates (`DualEncoder.match`,
`Index.search_text(..., rerank=K)`, and the `reranked_*` recalls of `evaluate`).

`MatchingBuffer` keeps the token sequences of every evaluated row, beside
`RetrievalMetrics`' embeddings, so `evaluate` can re-rank the whole set.
"""

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from kerasmm import validation
from kerasmm.layers.masked_ops import masked_mean
from kerasmm.metrics.retrieval import scatter_rows


@keras.saving.register_keras_serializable(package="kerasmm")
class ImageTextMatchingHead(keras.layers.Layer):
    """Text tokens cross-attend over image tokens → one match logit per pair, a correction to the similarity.

    The image tokens are normalised, projected to the text tokens' width and
    given a learned position embedding (the head reads relations such as
    "left of" from where things are; the number of image tokens must be
    fixed); `num_layers` keras-hub `TransformerDecoder` blocks (bidirectional
    self-attention over the text, cross-attention over the image) follow, then
    a masked mean over the real text positions and a `Dense(1)`, to which the
    pair's dual-encoder cosine similarity times a learnt scale (initially
    `similarity_scale`) is added. The head so learns what the similarity
    gets wrong (trained from scratch alongside it, a head without that term
    stayed behind the similarity it was meant to correct: see
    zoo/dual_encoder/README.md), and BLIP likewise ranks by the sum of both.

    Call: `head(text_tokens [B, T, D], text_mask [B, T], image_tokens [B, N, Di], similarity [B])`
    → float32 logits `[B]` (positive: the text describes the image).

    Args:
        num_layers: positive int, decoder blocks.
        num_heads: positive int, attention heads (D must divide by it).
        intermediate_dim: positive int, the blocks' feed-forward width; default 2 * D.
        dropout: float in [0, 1).
        similarity_scale: float, the initial weight of the similarity.

    Example:
    ```python
    import numpy as np
    from kerasmm.models.dual_encoder.dual_encoder_matching import ImageTextMatchingHead
    head = ImageTextMatchingHead(num_layers=1, num_heads=2)
    logits = head(np.random.rand(2, 5, 8).astype("float32"), np.ones((2, 5), "float32"),
                  np.random.rand(2, 4, 6).astype("float32"), np.array([0.9, 0.1], "float32"))
    logits.shape  # (2,)
    ```
    """

    def __init__(self, num_layers=1, num_heads=2, intermediate_dim=None, dropout=0.0, similarity_scale=10.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_layers = validation.positive_int("matching_layers", num_layers)
        self.num_heads = validation.positive_int("matching_heads", num_heads)
        self.intermediate_dim = validation.positive_int("intermediate_dim", intermediate_dim, allow_none=True)
        self.dropout = validation.rate("dropout", dropout)
        self.similarity_scale = float(similarity_scale)
        self.image_norm = keras.layers.LayerNormalization(dtype=self.dtype_policy, name="image_norm")
        self.image_projection = None  # its width is the text tokens', known in build
        self.image_positions = None  # as long as the image tokens, known in build
        self.blocks = []
        self.output_layer = keras.layers.Dense(1, dtype=self.dtype_policy, name="match_logit")

    def build(self, text_tokens_shape, text_mask_shape=None, image_tokens_shape=None, similarity_shape=None):
        text_shape, image_shape = text_tokens_shape, image_tokens_shape
        width = text_shape[-1]
        if width % self.num_heads:
            raise ValueError(
                f"The matching head's {self.num_heads} heads must divide the text tokens' width {width}; "
                "choose matching_heads accordingly."
            )
        if image_shape[1] is None:
            raise ValueError("The matching head needs a fixed number of image tokens (a fixed image_size); got "
                             f"image tokens of shape {tuple(image_shape)}.")
        self.image_norm.build(image_shape)
        self.image_projection = keras.layers.Dense(width, dtype=self.dtype_policy, name="image_projection")
        self.image_projection.build(image_shape)
        projected = tuple(image_shape[:-1]) + (width,)
        self.image_positions = keras_hub.layers.PositionEmbedding(
            sequence_length=image_shape[1], dtype=self.dtype_policy, name="image_positions")
        self.image_positions.build(projected)
        self.blocks = [
            keras_hub.layers.TransformerDecoder(
                intermediate_dim=self.intermediate_dim or 2 * width, num_heads=self.num_heads,
                dropout=self.dropout, activation="gelu", dtype=self.dtype_policy, name=f"block{i}",
            )
            for i in range(self.num_layers)
        ]
        for block in self.blocks:
            block.build(tuple(text_shape), projected)
        self.output_layer.build(tuple(text_shape[:1]) + (width,))
        self.scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.similarity_scale),
                                     dtype="float32", name="similarity_scale")
        self.built = True

    def call(self, text_tokens, text_mask, image_tokens, similarity, training=None):
        image = self.image_projection(self.image_norm(image_tokens))
        image = image + self.image_positions(image)
        mask = ops.cast(text_mask, "bool")
        x = text_tokens
        for block in self.blocks:
            x = block(x, image, decoder_padding_mask=mask, use_causal_mask=False, training=training)
        logits = ops.cast(ops.squeeze(self.output_layer(masked_mean(x, mask)), axis=-1), "float32")
        return logits + self.scale * ops.cast(similarity, "float32")

    def compute_output_shape(self, text_tokens_shape, text_mask_shape=None, image_tokens_shape=None,
                             similarity_shape=None):
        return (text_tokens_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update({"num_layers": self.num_layers, "num_heads": self.num_heads,
                       "intermediate_dim": self.intermediate_dim, "dropout": self.dropout,
                       "similarity_scale": self.similarity_scale})
        return config


@keras.saving.register_keras_serializable(package="kerasmm")
class MatchingBuffer(keras.metrics.Metric):
    """The text tokens, their mask and the image tokens of every row `evaluate` sees, for re-ranking.

    Rows land at the positions `RetrievalMetrics` gives them (rows whose
    `sample_weight` is 0 are skipped alike; under a strategy the global batch
    is gathered first), so row i here is row i of its embedding buffers.
    `result()` is empty: `DualEncoder.evaluate` re-ranks once, at the end.

    Args:
        capacity: int, the most rows held (as `RetrievalMetrics`').
        text_shape: (T, D) of the text tokens.
        image_shape: (N, Di) of the image tokens.

    Example:
    ```python
    import numpy as np
    from kerasmm.models.dual_encoder.dual_encoder_matching import MatchingBuffer
    buffer = MatchingBuffer(capacity=4, text_shape=(3, 2), image_shape=(5, 2))
    buffer.update_state(None, {"text_tokens": np.ones((2, 3, 2)), "text_token_mask": np.ones((2, 3)),
                               "image_tokens": np.ones((2, 5, 2))})
    int(buffer.count.numpy())   # 2
    ```
    """

    def __init__(self, capacity, text_shape, image_shape, name="matching_buffer", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.capacity = validation.positive_int("capacity", capacity)
        self.text_shape = tuple(validation.positive_ints("text_shape", text_shape))
        self.image_shape = tuple(validation.positive_ints("image_shape", image_shape))

        def buffer(shape, dtype, name):
            return self.add_variable(shape=shape, initializer="zeros", dtype=dtype,
                                     aggregation="only_first_replica", name=name)

        rows = self.capacity + 1  # the spare row takes skipped and overflowing rows
        self.count = buffer((), "int64", "count")
        self.text_tokens = buffer((rows, *self.text_shape), "float32", "text_tokens")
        self.text_mask = buffer((rows, self.text_shape[0]), "float32", "text_token_mask")
        self.image_tokens = buffer((rows, *self.image_shape), "float32", "image_tokens")

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = [tf.cast(y_pred[key], tf.float32) for key in ("text_tokens", "text_token_mask", "image_tokens")]
        keep = tf.ones([tf.shape(values[0])[0]], tf.bool)
        if sample_weight is not None:
            keep = tf.not_equal(tf.reshape(tf.convert_to_tensor(sample_weight), [-1]), 0)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            values = [context.all_gather(v, axis=0) for v in values]
            keep = context.all_gather(tf.cast(keep, tf.float32), axis=0) > 0.5
        start = tf.convert_to_tensor(self.count)
        positions = start + tf.cumsum(tf.cast(keep, tf.int64)) - 1
        indices = tf.where(tf.logical_and(keep, positions < self.capacity), positions, self.capacity)[:, None]
        for variable, value in zip((self.text_tokens, self.text_mask, self.image_tokens), values):
            scatter_rows(variable, indices, value)
        self.count.assign(start + tf.reduce_sum(tf.cast(keep, tf.int64)))

    def result(self):
        return {}

    def rows(self):
        """`(text_tokens, text_mask, image_tokens)` of the rows held, as numpy arrays."""
        held = min(int(self.count.numpy()), self.capacity)
        return tuple(np.asarray(v.numpy())[:held] for v in (self.text_tokens, self.text_mask, self.image_tokens))

    def reset_state(self):
        for variable in self.variables:
            variable.assign(tf.zeros(variable.shape, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"capacity": self.capacity, "text_shape": list(self.text_shape),
                       "image_shape": list(self.image_shape)})
        return config
