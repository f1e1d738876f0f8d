"""Serving signatures of `DualEncoder` on raw inputs (see `kerasmm.export`).

- `encode_image(image_bytes)` (or `encode_audio(audio_bytes)`, the query
  modality) and `encode_text(text)` → `embedding` `[B, E]` (unit length).
- `score(image_bytes, text)` (or `audio_bytes, text`) → `similarity`
  (cosine), `logits` and `probabilities` `[N_queries, N_texts]`
  (softmax over the texts, or a sigmoid for SigLIP models); also
  `serving_default`.

The towers are the model's own (`DualEncoder.tower`).
"""

import tensorflow as tf

from kerasmm.export import inputs as raw
from kerasmm.export.signatures import DEFAULT_SIGNATURE, raw_features, signature_function
from kerasmm.losses.contrastive import MAX_LOGIT_SCALE


def serving_signatures(model, module, staging, sample_rate):
    """`(functions, modalities, extra_metadata)` of a dual encoder (it writes no assets)."""
    preprocessor = model.preprocessor
    query = model.query_modality
    towers = {m: model.tower(m) for m in (query, "text")}
    sigmoid = getattr(model, "contrastive_loss", "contrastive") == "sigmoid"

    def embed(modality, request):
        features = raw_features(preprocessor, [modality], request, sample_rate)
        prepared = preprocessor.prepare(modality, features[modality])
        return tf.cast(towers[modality](prepared, training=False), tf.float32)

    def encode(modality):
        return lambda request: {"embedding": embed(modality, request)}

    def score(request):
        queries, texts = embed(query, request), embed("text", request)
        similarity = tf.matmul(queries, texts, transpose_b=True)
        scale = tf.exp(tf.minimum(tf.cast(model.logit_scale_variable, tf.float32), MAX_LOGIT_SCALE))
        logits = scale * similarity
        if sigmoid:
            logits = logits + tf.cast(model.logit_bias_variable, tf.float32)
            probabilities = tf.sigmoid(logits)
        else:
            probabilities = tf.nn.softmax(logits, axis=-1)
        return {"similarity": similarity, "logits": logits, "probabilities": probabilities}

    q_name = raw.INPUT_NAMES[query]
    score_function = signature_function([q_name, raw.TEXT_INPUT], score, "score")
    functions = {
        f"encode_{query}": signature_function([q_name], encode(query), f"encode_{query}"),
        "encode_text": signature_function([raw.TEXT_INPUT], encode("text"), "encode_text"),
        "score": score_function,
        DEFAULT_SIGNATURE: score_function,
    }
    extra = {"embedding_dim": int(model.backbone.embedding_dim), "loss": "sigmoid" if sigmoid else "contrastive",
             "probabilities": "sigmoid of logits" if sigmoid else "softmax of logits over the texts"}
    return functions, [query, "text"], extra
