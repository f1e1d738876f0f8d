import numpy as np
import pytest
import tensorflow as tf

from kerasmm.metrics import VQAAccuracy, answer_normalisation

END = 3
VOCABULARY = ["[PAD]", "[UNK]", "[START]", "[END]", "a", "the", "?", "red", "two", "2", "blue", "circle"]
IDS = {token: i for i, token in enumerate(VOCABULARY)}


def ids(*rows, width=5):
    """Token ids of space-separated rows, each closed by [END] and padded with 0."""
    out = np.zeros((len(rows), width), "int64")
    for i, row in enumerate(rows):
        tokens = [IDS[t] for t in row.split()] + [END]
        out[i, : len(tokens)] = tokens
    return out


def score(references, predictions, **kwargs):
    metric = VQAAccuracy(end_id=END, **kwargs)
    metric.update_state(references, predictions)
    return float(metric.result())


def test_one_reference_is_exact_match_on_words():
    assert score(ids("red", "blue"), ids("red", "red")) == 0.5
    assert score(ids("red circle"), ids("red")) == 0.0  # a prefix is not the answer
    assert score(ids("red"), ids("red circle")) == 0.0


def test_several_references_give_credit_for_each_up_to_three():
    references = np.stack([ids("red", "red", "blue", "blue", "blue")])  # [1, 5 references, 5]
    assert score(references, ids("red")) == pytest.approx(2 / 3)
    assert score(references, ids("blue")) == 1.0
    two = np.stack([ids("red", "blue", "", width=5)])  # an empty row is a missing reference
    two[0, 2] = 0
    assert score(two, ids("blue")) == 0.5


def test_normalisation_drops_articles_and_punctuation_and_maps_number_words():
    normalisation = answer_normalisation(VOCABULARY)
    assert sorted(normalisation["ignore_ids"]) == [IDS["a"], IDS["the"], IDS["?"]]
    assert normalisation["equivalent_ids"] == [[IDS["two"], IDS["2"]]]
    assert score(ids("the red circle ?"), ids("red circle"), **normalisation) == 1.0
    assert score(ids("2"), ids("two"), **normalisation) == 1.0
    assert score(ids("2"), ids("two")) == 0.0  # without it, different words


def test_state_adds_up_over_batches_and_in_a_tf_function():
    metric = VQAAccuracy(end_id=END)
    update = tf.function(metric.update_state)
    update(ids("red"), ids("red"))
    update(ids("red", "blue", "red"), ids("blue", "blue", "red"))
    assert float(metric.result()) == pytest.approx(3 / 4)
    assert VQAAccuracy.from_config(metric.get_config()).get_config() == metric.get_config()


@pytest.mark.parametrize("equivalent_ids", [[1, 2], [[1, 2, 3]], 5])
def test_bad_equivalent_ids_are_a_clear_error(equivalent_ids):
    with pytest.raises(ValueError, match=r"equivalent_ids must be \[from, to\] pairs of ids"):
        VQAAccuracy(equivalent_ids=equivalent_ids)
