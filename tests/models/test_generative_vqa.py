"""`GenerativeVQA`: the question as the decoder's prompt, the answer generated, scored and exported."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.data import image_ops
from kerasmm.export import warmup

DATA = {"task": "vqa", "answers": "text"}


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(4)
    model = kerasmm.zoo.get("tiny_generative_vqa")
    model.fit(kerasmm.data.shapes(num_examples=8, batch_size=4, **DATA), epochs=1, verbose=0)
    features, answers = kerasmm.data.shapes_arrays(num_examples=6, split="test", **DATA)
    return model, features, [str(a) for a in answers]


def test_the_question_is_the_prompt_and_only_the_answer_is_learned(trained):
    model, features, answers = trained
    x, next_tokens, weights = model.preprocessor({"image": features["image"][:1], "text": ["how many shapes ?"]},
                                                 np.array(["two"]))
    vocabulary = model.preprocessor.tokenizer.get_vocabulary()
    words = [vocabulary[i] for i in np.asarray(x["tokens"][0]) if i]
    assert words == ["[START]", "how", "many", "shapes", "?", "two", "[END]"]
    # Learned: "two" after "?", then the end token; the question's own words weigh 0.
    assert np.asarray(weights[0]).tolist()[:6] == [0, 0, 0, 0, 1, 1]
    assert [vocabulary[i] for i in np.asarray(next_tokens[0])[4:6]] == ["two", "[END]"]


def test_answers_are_what_generate_writes_after_the_question(trained):
    model, features, _ = trained
    questions = [str(q) for q in features["text"]]
    whole = model.generate(features["image"], prompt=questions, return_tokens=True)
    after = model.generate(features["image"], prompt=questions, include_prompt=False, return_tokens=True)
    lengths = np.asarray(model.preprocessor.token_ids(questions).row_lengths())
    for row, length in enumerate(lengths):
        assert not after[row, :length].any()
        np.testing.assert_array_equal(after[row, length:], whole[row, length:])
    answers = model.answer(features["image"], questions)
    assert answers == model.detokenize(after)
    # The questions can ride in the inputs, as the VQA readers give them.
    assert model.answer({"image": features["image"], "text": features["text"]}) == answers


def test_evaluate_scores_the_answers_written_after_each_question(trained):
    model, features, _ = trained
    answers = model.answer(features["image"], [str(q) for q in features["text"]])
    # Right answers for the even rows (the model's own), wrong ones for the odd rows.
    targets = [a if i % 2 == 0 else ("circle" if a != "circle" else "square") for i, a in enumerate(answers)]
    scored = [i for i, t in enumerate(targets) if t]  # an empty reference is not scored
    assert any(i % 2 == 0 for i in scored)
    data = tf.data.Dataset.from_tensor_slices(({"image": features["image"], "text": features["text"]},
                                               np.array(targets, dtype=object))).batch(3)
    logs = model.evaluate(data, return_dict=True, verbose=0)
    assert logs["vqa_accuracy"] == pytest.approx(sum(i % 2 == 0 for i in scored) / len(scored))
    assert "bleu_4" not in logs


def test_the_export_answers_image_bytes_and_questions_as_answer_does(trained, tmp_path):
    model, features, _ = trained
    path = kerasmm.export.saved_model(model, tmp_path / "vqa")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image_bytes = warmup.read_requests(path)[1][2]["image_bytes"]  # a JPEG and a PNG
    questions = ["what colour is the circle ?", "how many shapes are there ?"]
    outputs = serve(image_bytes=tf.constant(image_bytes), question=tf.constant(questions))
    pixels = np.stack([image_ops.decode_image(b).numpy() for b in image_bytes])
    assert [a.decode() for a in outputs["answers"].numpy()] == model.answer(pixels, questions)
    assert outputs["scores"].shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="question: element is empty or only white space"):
        serve(image_bytes=tf.constant(image_bytes), question=tf.constant(["what colour ?", " "]))


def test_a_prompt_argument_is_refused(trained):
    model, features, _ = trained
    with pytest.raises(ValueError, match="answer\\(\\) takes the question as `questions`"):
        model.answer(features["image"], prompt="what")
