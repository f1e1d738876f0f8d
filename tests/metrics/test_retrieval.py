"""Tests for the retrieval metrics (kerasmm.metrics.retrieval).

The MirroredStrategy test lives in test_retrieval_distributed.py (it needs its
own process for the logical CPU devices).
"""

import re
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasmm.metrics import RetrievalMetrics, paired_retrieval_scores, reranked_retrieval_scores, retrieval_scores
from kerasmm.metrics import retrieval as retrieval_module

KEYS = [
    "text_to_image_recall@1", "text_to_image_recall@5", "text_to_image_recall@10",
    "image_to_text_recall@1", "image_to_text_recall@5", "image_to_text_recall@10",
    "text_to_image_mean_rank", "text_to_image_median_rank",
    "image_to_text_mean_rank", "image_to_text_median_rank",
]

# Hand-built: images are one-hot, so text i's similarity to image j is TEXTS[i, j].
#   text → image ranks: [1, 3, 2, 4]  (text1: .3 beaten by .8, .5; text2: .4 by .6; text3: .05 by all)
#   image → text ranks (columns): [1, 1, 2, 3]
IMAGES = np.eye(4, dtype="float32")
TEXTS = np.array(
    [[0.9, 0.1, 0.0, 0.2],
     [0.8, 0.3, 0.5, 0.1],
     [0.6, 0.1, 0.4, 0.0],
     [0.3, 0.2, 0.1, 0.05]],
    dtype="float32",
)
HAND_BUILT = {
    "text_to_image_recall@1": 0.25, "text_to_image_recall@2": 0.5, "text_to_image_recall@3": 0.75,
    "image_to_text_recall@1": 0.5, "image_to_text_recall@2": 0.75, "image_to_text_recall@3": 1.0,
    "text_to_image_mean_rank": 2.5, "text_to_image_median_rank": 2.5,
    "image_to_text_mean_rank": 1.75, "image_to_text_median_rank": 1.5,
}

# 3 images × 2 captions, expanded to 6 rows. Image j is one-hot e_j (repeated per caption), so
# caption i's similarity to image j is CAPTIONS[i, j].
#   text → image (3 distinct images): ranks [1, 2, 1, 1, 1, 2]. Caption 1 (.2) is beaten by image 1
#     (.8) only once although image 1 fills two rows; same for caption 5 and image 0.
#   image → text (3 queries, not 6): image 0's best caption .9 → 1; image 1's best .7 is beaten by
#     caption 1 (.8) → 2; image 2's best .45 is beaten by caption 3 (.5) → 2.
GROUPS = np.array([0, 0, 1, 1, 2, 2])
CAPTION_IMAGES = np.eye(3, dtype="float32")[GROUPS]
CAPTIONS = np.array(
    [[0.9, 0.1, 0.0],
     [0.2, 0.8, 0.1],
     [0.1, 0.7, 0.3],
     [0.0, 0.6, 0.5],
     [0.3, 0.2, 0.4],
     [0.5, 0.0, 0.45]],
    dtype="float32",
)
MULTI_CAPTION = {
    "text_to_image_recall@1": 4 / 6, "text_to_image_recall@5": 1.0, "text_to_image_recall@10": 1.0,
    "image_to_text_recall@1": 1 / 3, "image_to_text_recall@5": 1.0, "image_to_text_recall@10": 1.0,
    "text_to_image_mean_rank": 8 / 6, "text_to_image_median_rank": 1.0,
    "image_to_text_mean_rank": 5 / 3, "image_to_text_median_rank": 2.0,
}


def random_pairs(rows, width=6, noise=0.9, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(rows, width)).astype("float32")
    texts = images + noise * rng.normal(size=(rows, width)).astype("float32")
    return images, texts


def update(metric, images, texts, y_true=None, batch_size=None, sample_weight=None):
    batch_size = batch_size or len(images)
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        metric.update_state(
            None if y_true is None else y_true[part],
            {"image_embedding": images[part], "text_embedding": texts[part]},
            None if sample_weight is None else sample_weight[part],
        )
    return metric


def as_floats(result):
    return {key: float(value) for key, value in result.items()}


def assert_scores(actual, expected, atol=1e-6):
    assert list(actual) == list(expected)
    for key in expected:
        assert actual[key] == pytest.approx(expected[key], abs=atol), key


# --- NumPy reference -----------------------------------------------------------


def test_perfect_embeddings_give_recall_one_and_rank_one():
    eye = np.eye(12, dtype="float32")
    expected = {key: 1.0 for key in KEYS}
    assert_scores(as_floats(update(RetrievalMetrics(capacity=16), eye, eye).result()), expected)
    assert_scores(paired_retrieval_scores(eye, eye), expected)
    assert retrieval_scores(eye, eye) == {
        "recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mean_rank": 1.0, "median_rank": 1.0
    }


def test_hand_built_ranks_both_directions():
    ks = (1, 2, 3)
    metric = update(RetrievalMetrics(capacity=4, ks=ks), IMAGES, TEXTS)
    result = as_floats(metric.result())
    assert_scores(result, HAND_BUILT)
    assert_scores(paired_retrieval_scores(IMAGES, TEXTS, ks=ks), HAND_BUILT)
    # One direction at a time: text → image is queries=texts, gallery=images.
    forward = retrieval_scores(TEXTS, IMAGES, ks=ks)
    assert forward == {"recall@1": 0.25, "recall@2": 0.5, "recall@3": 0.75, "mean_rank": 2.5, "median_rank": 2.5}
    backward = retrieval_scores(IMAGES, TEXTS, ks=ks)
    assert backward == {"recall@1": 0.5, "recall@2": 0.75, "recall@3": 1.0, "mean_rank": 1.75, "median_rank": 1.5}


def test_ties_are_broken_by_gallery_order():
    # Both images are identical: the first in gallery order wins the tie.
    images = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    texts = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    result = as_floats(update(RetrievalMetrics(capacity=2, ks=(1,)), images, texts).result())
    assert result["text_to_image_mean_rank"] == 1.5  # text 0 → rank 1, text 1 → rank 2
    assert result["image_to_text_mean_rank"] == 1.5
    assert retrieval_scores(texts, images, ks=(1,))["mean_rank"] == 1.5


# --- whole set, groups -----------------------------------------------------------


def test_batches_of_two_give_the_whole_set_result():
    images, texts = random_pairs(10)
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])  # groups straddle batch boundaries
    expected = paired_retrieval_scores(images, texts, groups)
    one_batch = as_floats(update(RetrievalMetrics(capacity=10), images, texts, groups).result())
    batches = as_floats(update(RetrievalMetrics(capacity=10), images, texts, groups, batch_size=2).result())
    assert_scores(one_batch, expected, atol=1e-5)
    assert_scores(batches, one_batch, atol=1e-6)


def test_whole_set_recall_is_not_the_mean_of_per_batch_recalls():
    # Rows 2 and 3 repeat rows 0 and 1. Each batch of 2 is retrieved perfectly on its own, but over
    # the whole set rows 2 and 3 lose the tie to rows 0 and 1 (earlier in gallery order).
    images = np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    texts = images.copy()
    per_batch = [
        as_floats(update(RetrievalMetrics(capacity=2), images[i:i + 2], texts[i:i + 2]).result())
        for i in (0, 2)
    ]
    assert [b["text_to_image_recall@1"] for b in per_batch] == [1.0, 1.0]
    whole = as_floats(update(RetrievalMetrics(capacity=4), images, texts, batch_size=2).result())
    assert whole["text_to_image_recall@1"] == 0.5
    assert whole["image_to_text_recall@1"] == 0.5
    assert whole["text_to_image_mean_rank"] == 1.5


def test_reranking_reorders_only_the_candidates():
    gallery = np.eye(4, dtype="float32")
    queries = gallery[[1, 2, 3, 0]] + 0.5 * gallery  # each query's own item comes second
    calls = []

    def truth(query_rows, gallery_rows):
        calls.append(len(query_rows))
        return (query_rows == gallery_rows).astype(float)

    assert retrieval_scores(queries, gallery)["recall@1"] == 0.0
    assert reranked_retrieval_scores(queries, gallery, truth, candidates=2, ks=(1, 2))["recall@1"] == 1.0
    assert calls == [8]  # 4 queries x 2 candidates
    # One candidate: the answer is never among them, so the ranks stay (beyond the candidates).
    kept = reranked_retrieval_scores(queries, gallery, truth, candidates=1, ks=(1, 2))
    assert kept == retrieval_scores(queries, gallery, ks=(1, 2))
    backwards = reranked_retrieval_scores(queries, gallery, lambda q, g: -truth(q, g), candidates=4, ks=(1,))
    assert backwards["recall@1"] == 0.0 and backwards["mean_rank"] == 4.0
    with pytest.raises(ValueError, match="candidates must be a positive int"):
        reranked_retrieval_scores(queries, gallery, truth, candidates=0)


def test_multi_caption_groups_count_duplicate_images_once():
    metric = update(RetrievalMetrics(capacity=8), CAPTION_IMAGES, CAPTIONS, GROUPS, batch_size=4)
    assert_scores(as_floats(metric.result()), MULTI_CAPTION)
    assert_scores(paired_retrieval_scores(CAPTION_IMAGES, CAPTIONS, GROUPS), MULTI_CAPTION)
    # The same through retrieval_scores with the images passed once.
    distinct = np.eye(3, dtype="float32")
    forward = retrieval_scores(CAPTIONS, distinct, GROUPS, np.arange(3))
    assert forward["mean_rank"] == pytest.approx(8 / 6)
    backward = retrieval_scores(distinct, CAPTIONS, np.arange(3), GROUPS)
    assert backward["mean_rank"] == pytest.approx(5 / 3)
    # Without the groups, every row is its own image: duplicates compete and each image row is a query.
    ungrouped = as_floats(update(RetrievalMetrics(capacity=8), CAPTION_IMAGES, CAPTIONS).result())
    assert ungrouped["text_to_image_mean_rank"] > MULTI_CAPTION["text_to_image_mean_rank"]
    assert ungrouped == pytest.approx(paired_retrieval_scores(CAPTION_IMAGES, CAPTIONS))


@pytest.mark.parametrize(
    "group_key, y_true, grouped",
    [
        (None, GROUPS, True),                                # integer [B] targets are group ids
        (None, GROUPS[:, None], True),                       # ... or [B, 1]
        (None, GROUPS.astype("float32"), False),             # float targets are not
        (None, None, False),
        ("rows", GROUPS, False),                             # "rows" ignores the targets
        ("image_id", {"image_id": GROUPS, "caption": GROUPS}, True),  # a key of y_true
    ],
)
def test_group_ids_source(group_key, y_true, grouped):
    metric = RetrievalMetrics(capacity=8, group_key=group_key)
    metric.update_state(y_true, {"image_embedding": CAPTION_IMAGES, "text_embedding": CAPTIONS})
    expected = paired_retrieval_scores(CAPTION_IMAGES, CAPTIONS, GROUPS if grouped else None)
    assert_scores(as_floats(metric.result()), expected)


def test_group_key_from_y_pred_and_missing_key():
    metric = RetrievalMetrics(capacity=8, group_key="image_id")
    metric.update_state(None, {"image_embedding": CAPTION_IMAGES, "text_embedding": CAPTIONS, "image_id": GROUPS})
    assert_scores(as_floats(metric.result()), MULTI_CAPTION)
    with pytest.raises(ValueError, match="no 'image_id' entry"):
        metric.update_state(None, {"image_embedding": CAPTION_IMAGES, "text_embedding": CAPTIONS})


def test_zero_weight_rows_are_skipped():
    images, texts = random_pairs(8)
    weights = np.array([1, 0, 1, 1, 0, 0, 1, 1], "float32")
    metric = update(RetrievalMetrics(capacity=5), images, texts, GROUPS[[0, 0, 1, 1, 2, 2, 0, 1]],
                    batch_size=3, sample_weight=weights)
    kept = weights > 0
    expected = paired_retrieval_scores(images[kept], texts[kept], GROUPS[[0, 0, 1, 1, 2, 2, 0, 1]][kept])
    assert int(metric.count.numpy()) == 5
    assert_scores(as_floats(metric.result()), expected, atol=1e-5)


def test_audio_keys_name_the_results():
    metric = RetrievalMetrics(capacity=4, ks=(1,), query_key="audio_embedding")
    metric.update_state(None, {"audio_embedding": IMAGES, "text_embedding": TEXTS})
    assert list(metric.result()) == [
        "text_to_audio_recall@1", "audio_to_text_recall@1", "text_to_audio_mean_rank",
        "text_to_audio_median_rank", "audio_to_text_mean_rank", "audio_to_text_median_rank",
    ]
    assert float(metric.result()["text_to_audio_mean_rank"]) == 2.5


# --- state, graph mode, errors -------------------------------------------------------


def test_reset_state_zeroes_and_empty_result_is_zero():
    metric = update(RetrievalMetrics(capacity=4, embedding_dim=4), IMAGES, TEXTS)
    metric.reset_state()
    assert all(not np.any(v.numpy()) for v in metric.variables)
    assert set(as_floats(metric.result()).values()) == {0.0}
    update(metric, IMAGES, TEXTS)  # refills from row 0
    assert_scores(as_floats(metric.result()), paired_retrieval_scores(IMAGES, TEXTS))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_mode_matches_eager(jit_compile):
    images, texts = random_pairs(9)
    groups = np.array([3, 3, 7, 1, 1, 1, 9, 2, 2])
    eager = as_floats(update(RetrievalMetrics(capacity=12), images, texts, groups, batch_size=4).result())
    metric = RetrievalMetrics(capacity=12, query_block_size=5)  # several query blocks, built lazily in the graph
    step = tf.function(metric.update_state, jit_compile=jit_compile)
    for start in range(0, 9, 4):
        part = slice(start, start + 4)
        step(groups[part], {"image_embedding": images[part], "text_embedding": texts[part]})
    graph = as_floats(tf.function(metric.result, jit_compile=jit_compile)())
    assert_scores(graph, eager)
    assert_scores(graph, paired_retrieval_scores(images, texts, groups), atol=1e-5)


def test_capacity_overflow_is_a_clear_error():
    message = "capacity exceeded.*capacity=4"
    metric = update(RetrievalMetrics(capacity=4), IMAGES[:3], TEXTS[:3])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        update(metric, IMAGES[:2], TEXTS[:2])
    graph_metric = RetrievalMetrics(capacity=4, embedding_dim=4)
    step = tf.function(graph_metric.update_state)
    step(None, {"image_embedding": IMAGES, "text_embedding": TEXTS})
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        step(None, {"image_embedding": IMAGES, "text_embedding": TEXTS})
    # XLA drops asserts: the update goes through, and the eager result() (Keras reads it at the end
    # of evaluate) reports the overflow.
    xla_metric = RetrievalMetrics(capacity=4, embedding_dim=4)
    xla_step = tf.function(xla_metric.update_state, jit_compile=True)
    for _ in range(2):
        xla_step(None, {"image_embedding": IMAGES, "text_embedding": TEXTS})
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        xla_metric.result()


def test_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        RetrievalMetrics(capacity=0)
    with pytest.raises(ValueError, match="ks"):
        RetrievalMetrics(ks=(0, 1))
    with pytest.raises(ValueError, match="two different strings"):
        RetrievalMetrics(query_key="text_embedding")
    metric = RetrievalMetrics(capacity=4)
    with pytest.raises(ValueError, match="expects y_pred to be a dict"):
        metric.update_state(None, IMAGES)
    with pytest.raises(ValueError, match="widths"):
        metric.update_state(None, {"image_embedding": IMAGES, "text_embedding": TEXTS[:, :3]})
    with pytest.raises(ValueError, match="both query_groups and gallery_groups"):
        retrieval_scores(IMAGES, TEXTS, query_groups=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="no gallery item of their group"):
        retrieval_scores(IMAGES, TEXTS, [0, 1, 2, 9], [0, 1, 2, 3])


def test_config_round_trip():
    metric = RetrievalMetrics(capacity=32, ks=(1, 3), query_key="audio_embedding", group_key="rows",
                              query_block_size=8, name="audio_retrieval")
    metric.update_state(None, {"audio_embedding": IMAGES, "text_embedding": TEXTS})
    config = metric.get_config()
    assert config["embedding_dim"] == 4  # recorded when built lazily
    restored = RetrievalMetrics.from_config(config)
    assert restored.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(revived, RetrievalMetrics)
    assert revived.get_config() == config
    assert keras.saving.get_registered_name(RetrievalMetrics) == "kerasmm>RetrievalMetrics"
    revived.update_state(GROUPS[:4], {"audio_embedding": IMAGES, "text_embedding": TEXTS})
    assert as_floats(revived.result()) == as_floats(metric.result())


# --- model.evaluate ----------------------------------------------------------------


def documented_dual_encoder_class():
    """The `compute_metrics` pattern from the module docstring, executed as written."""
    block = re.search(r"```python\n(class DualEncoder.*?)```", retrieval_module.__doc__, re.S).group(1)
    namespace = {"keras": keras, "RetrievalMetrics": RetrievalMetrics}
    exec(block, namespace)

    class TinyDualEncoder(namespace["DualEncoder"]):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            gap = y_pred["image_embedding"] - y_pred["text_embedding"]
            return keras.ops.sum(gap**2) / keras.ops.maximum(keras.ops.cast(keras.ops.shape(gap)[0], "float32"), 1.0)

    return TinyDualEncoder


def tiny_dual_encoder(width=4, embedding_dim=None):
    image = keras.Input((width,), name="image")
    text = keras.Input((width,), name="text")
    outputs = {
        "image_embedding": keras.layers.UnitNormalization()(keras.layers.Dense(width, name="image_projection")(image)),
        "text_embedding": keras.layers.UnitNormalization()(keras.layers.Dense(width, name="text_projection")(text)),
    }
    return documented_dual_encoder_class()({"image": image, "text": text}, outputs, embedding_dim=embedding_dim)


def test_compiled_metric_on_a_dict_output_is_rejected_by_keras():
    # Why the model updates the metric itself: Keras hands each compiled metric a single output.
    model = tiny_dual_encoder()
    model.compile(optimizer="sgd", metrics=[RetrievalMetrics()])
    with pytest.raises(ValueError, match="matching the output names"):
        model.evaluate({"image": IMAGES, "text": TEXTS}, verbose=0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_model_evaluate_reports_whole_set_scores(jit_compile):
    images, texts = random_pairs(13, width=4, noise=0.7)
    groups = np.array([0, 0, 1, 1, 2, 3, 3, 3, 4, 5, 5, 6, 7])
    model = tiny_dual_encoder()
    model.compile(optimizer="sgd", jit_compile=jit_compile)
    assert model.jit_compile is jit_compile
    inputs = {"image": images, "text": texts}
    logs = model.evaluate(inputs, groups, batch_size=4, verbose=0, return_dict=True)
    predicted = model.predict(inputs, verbose=0)
    expected = paired_retrieval_scores(predicted["image_embedding"], predicted["text_embedding"], groups)
    assert_scores({key: logs[key] for key in KEYS}, expected, atol=1e-5)
    assert expected["text_to_image_recall@1"] < 1.0  # not a trivial case
    if jit_compile:
        return  # XLA compiles are slow; the rest does not depend on it
    # A second evaluate starts from an empty buffer (Keras resets tracked metrics).
    again = model.evaluate(inputs, groups, batch_size=5, verbose=0, return_dict=True)
    assert_scores({key: again[key] for key in KEYS}, expected, atol=1e-5)

    history = model.fit(inputs, groups, batch_size=4, epochs=1, verbose=0, validation_data=(inputs, groups))
    assert "text_to_image_recall@1" not in history.history  # training steps neither update nor log it
    assert "val_text_to_image_recall@1" in history.history
    assert int(model.retrieval_metrics.count.numpy()) == 13  # the validation rows only


def test_docstring_examples_run():
    docs = [retrieval_module.__doc__, RetrievalMetrics.__doc__, retrieval_scores.__doc__,
            paired_retrieval_scores.__doc__]
    blocks = [b for doc in docs for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "class DualEncoder" not in b]
    assert len(blocks) == 4
    for block in map(textwrap.dedent, blocks):
        namespace = {}
        exec(block, namespace)
        # Each example ends with an expression and its value as a comment: check it.
        last = block.strip().splitlines()[-1]
        expression, comment = last.split("#", 1)
        assert float(eval(expression, namespace)) == float(comment.split(":")[0].strip()), last
