"""`Captioner.generate`'s sampling options, XLA by default (with a fallback), and punctuation in captions."""

import math
import warnings

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.export import signatures
from kerasmm.generation import attach_punctuation, resolve_sampler
from kerasmm.models.captioner import captioner_serving
from kerasmm.models.captioner.captioner_task import Captioner


@pytest.fixture(scope="module")
def captioner():
    keras.utils.set_random_seed(1)
    model = kerasmm.zoo.get("tiny_captioner", sequence_length=8)
    model.fit(kerasmm.data.shapes(num_examples=8, batch_size=4, task="captioning"), epochs=1, verbose=0)
    return model


def images(num_examples=3):
    return kerasmm.data.shapes_arrays(num_examples=num_examples, task="captioning", seed=3)[0]["image"]


# --- keyword options → keras_hub samplers ----------------------------------------------


def test_keywords_build_keras_hub_samplers():
    top_p = resolve_sampler(top_p=0.8, top_k=20, temperature=0.5, seed=3)
    assert isinstance(top_p, keras_hub.samplers.TopPSampler)
    assert (top_p.p, top_p.k, top_p.temperature, top_p.seed) == (0.8, 20, 0.5, 3)
    top_k = resolve_sampler(top_k=7, seed=1)
    assert isinstance(top_k, keras_hub.samplers.TopKSampler) and (top_k.k, top_k.seed) == (7, 1)
    assert resolve_sampler("top_p").k is None and resolve_sampler("top_p").p == 0.9  # keras_hub's nucleus alone
    assert resolve_sampler("top_k").k == 5
    assert isinstance(resolve_sampler(None, "beam", num_beams=3, temperature=2.0), keras_hub.samplers.BeamSampler)
    assert isinstance(resolve_sampler("random", seed=0), keras_hub.samplers.RandomSampler)
    greedy = keras_hub.samplers.GreedySampler()
    assert resolve_sampler(greedy) is greedy and resolve_sampler(None, greedy) is greedy
    # top_p / top_k choose their sampler over the model's default, even a sampler object.
    assert isinstance(resolve_sampler(None, greedy, top_p=0.5), keras_hub.samplers.TopPSampler)


@pytest.mark.parametrize("kwargs, message", [
    ({"top_p": 0.0}, r"^top_p must be in \(0, 1\], got 0.0.$"),
    ({"top_p": 1.5}, r"^top_p must be in \(0, 1\], got 1.5.$"),
    ({"top_p": True}, r"^top_p must be in \(0, 1\], got True.$"),
    ({"top_k": 0}, r"^top_k must be a positive int, got 0.$"),
    ({"top_k": 2.5}, r"^top_k must be a positive int, got 2.5.$"),
    ({"temperature": 0}, r"^temperature must be a finite number > 0, got 0.$"),
    ({"temperature": -1.0}, r"^temperature must be a finite number > 0, got -1.0.$"),
    ({"temperature": math.inf}, r"^temperature must be a finite number > 0, got inf.$"),
    ({"sampler": "top_k", "seed": -1}, r"^seed must be None or a non-negative int, got -1.$"),
    ({"sampler": "top_k", "seed": "1"}, r"^seed must be None or a non-negative int, got '1'.$"),
    ({"sampler": keras_hub.samplers.GreedySampler(), "temperature": 0.5},
     r"^temperature cannot be combined with the sampler object \(GreedySampler\); set them on the sampler"),
    ({"sampler": keras_hub.samplers.TopKSampler(k=3), "top_k": 4, "seed": 1},
     r"^top_k, seed cannot be combined with the sampler object \(TopKSampler\)"),
    ({"sampler": "top_k", "top_p": 0.9}, r"^top_p applies to sampler='top_p' only, not 'top_k'.$"),
    ({"sampler": "beam", "top_k": 3}, r"^top_k applies to sampler='top_k' or 'top_p' only, not 'beam'.$"),
    ({"sampler": "greedy", "seed": 1},
     r"^seed applies to the random samplers \('random', 'top_k', 'top_p'\) only; 'greedy' is deterministic.$"),
    ({"seed": 1}, r"only; 'greedy' \(the model's default sampler\) is deterministic.$"),
    ({"sampler": "nucleus"}, r"^Unknown sampler 'nucleus'; valid samplers: \['beam', 'greedy', 'random'"),
    ({"jit_compile": "yes"}, r"^jit_compile must be True or False, got 'yes'.$"),
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(map(str, v)))
def test_bad_options_are_one_line_value_errors(captioner, kwargs, message):
    with pytest.raises(ValueError, match=message) as caught:
        captioner.generate(images(1), **kwargs)
    assert "\n" not in str(caught.value)


def test_a_model_with_a_sampler_object_refuses_options_for_it():
    model = kerasmm.zoo.get("tiny_captioner", sequence_length=6, sampler=keras_hub.samplers.GreedySampler())
    with pytest.raises(ValueError, match=r"^temperature cannot be combined with the model's default sampler object"):
        model.generate(images(1), temperature=0.7)


# --- sampling ----------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_captions(captioner):
    x = images(3)
    first = captioner.generate(x, top_p=0.95, temperature=1.5, seed=7, return_tokens=True)
    again = captioner.generate(x, top_p=0.95, temperature=1.5, seed=7, return_tokens=True)
    other = captioner.generate(x, top_p=0.95, temperature=1.5, seed=8, return_tokens=True)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    # Batches after the first continue the stream: still the same for the same seed.
    np.testing.assert_array_equal(captioner.generate(x, top_k=4, seed=2, batch_size=2, return_tokens=True),
                                  captioner.generate(x, top_k=4, seed=2, batch_size=2, return_tokens=True))
    assert captioner.generate(x, sampler="random", seed=3) == captioner.generate(x, sampler="random", seed=3)


def test_cut_offs_of_one_token_are_greedy(captioner):
    x = images(3)
    greedy = captioner.generate(x, return_tokens=True)
    np.testing.assert_array_equal(captioner.generate(x, top_k=1, seed=0, return_tokens=True), greedy)
    np.testing.assert_array_equal(captioner.generate(x, top_p=1e-6, seed=0, return_tokens=True), greedy)
    # The temperature does not move the argmax.
    np.testing.assert_array_equal(captioner.generate(x, temperature=0.3, return_tokens=True), greedy)


# --- XLA ---------------------------------------------------------------------------------


def test_generation_is_xla_compiled_by_default_with_the_same_tokens(captioner):
    assert not captioner.jit_compile  # the train step's setting (Keras leaves XLA off on CPU) ...
    assert captioner.generate_jit_compile  # ... does not decide generation's
    assert captioner.generate_function("greedy", 6)._jit_compile is True
    assert captioner.generate_function("greedy", 6, jit_compile=False)._jit_compile is False
    x = images(3)
    for options in ({}, {"sampler": "beam", "num_beams": 3}):
        np.testing.assert_array_equal(captioner.generate(x, return_tokens=True, **options),
                                      captioner.generate(x, return_tokens=True, jit_compile=False, **options))


def test_generate_jit_compile_is_a_setting_kept_in_the_config():
    parts = kerasmm.zoo.get("tiny_captioner", sequence_length=6)
    model = Captioner(parts.backbone, parts.preprocessor, generate_jit_compile=False)
    assert model.generate_function()._jit_compile is False
    assert model.generate_function(jit_compile=True)._jit_compile is True
    assert Captioner.from_config(model.get_config()).generate_jit_compile is False
    with pytest.raises(ValueError, match="generate_jit_compile must be True or False"):
        Captioner(parts.backbone, parts.preprocessor, generate_jit_compile="auto")


class NumpyArgmaxSampler(keras_hub.samplers.Sampler):
    """Greedy through `tf.numpy_function`, which XLA cannot compile."""

    def get_next_token(self, probabilities):
        token = tf.numpy_function(lambda p: p.argmax(-1).astype("int32"), [probabilities], tf.int32)
        return tf.ensure_shape(token, probabilities.shape[:1])


def test_a_loop_xla_cannot_compile_runs_without_it_after_one_warning(captioner):
    x = images(2)
    with pytest.warns(RuntimeWarning, match="XLA could not compile the decoding loop.*jit_compile=False"):
        tokens = captioner.generate(x, sampler=NumpyArgmaxSampler(), return_tokens=True)
    np.testing.assert_array_equal(tokens, captioner.generate(x, return_tokens=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(captioner.generate(x, sampler=NumpyArgmaxSampler(), return_tokens=True), tokens)
        np.testing.assert_array_equal(
            captioner.generate(x, sampler=NumpyArgmaxSampler(), max_length=5, return_tokens=True), tokens[:, :4])


# --- punctuation -------------------------------------------------------------------------

PUNCTUATED = [
    ("flag : sweden", "flag: sweden"),
    ("it ' s a dog", "it's a dog"),
    ("they don ' t", "they don't"),
    ("( a )", "(a)"),
    ("a man , a dog and a cat .", "a man, a dog and a cat."),
    ("what is it ?", "what is it?"),
    ("a black - and - white photo", "a black-and-white photo"),
    ("a sign that says \" stop \" .", "a sign that says \"stop\"."),
    ("3 . 5 million , $ 20", "3.5 million, $20"),
    ("it is 10 : 30", "it is 10:30"),
    ("wait . . . !", "wait...!"),
    ("a café", "a café"),
]


@pytest.mark.parametrize("joined, written", PUNCTUATED)
def test_punctuation_is_attached_as_written(joined, written):
    assert attach_punctuation(joined).numpy().decode() == written


def test_python_and_exported_detokenize_write_the_same_captions(tmp_path):
    words = sorted({w for joined, _ in PUNCTUATED for w in joined.split()})
    vocabulary = list(kerasmm.data.SPECIAL_TOKENS) + words + ["##s", "##é"]
    model = kerasmm.zoo.get("tiny_captioner", vocabulary=vocabulary, sequence_length=6)
    tokenizer = model.preprocessor.tokenizer
    ids = [[tokenizer.token_to_id(w) for w in joined.split()] for joined, _ in PUNCTUATED]
    width = max(map(len, ids))
    tokens = np.array([row + [0] * (width - len(row)) for row in ids], "int32")
    expected = [written for _, written in PUNCTUATED]
    assert model.detokenize(tokens) == expected
    table = signatures._id_table(signatures._write_lines(str(tmp_path / "vocabulary.txt"), vocabulary, "token"))
    start, end = model.start_id, model.end_id
    exported = captioner_serving.detokenize(table, tokens, (0, start, end)).numpy()
    assert [c.decode() for c in exported] == expected
    # Inside a tf.function, as in the SavedModel.
    graph = tf.function(lambda t: captioner_serving.detokenize(table, t, (0, start, end)))
    assert [c.decode() for c in graph(tf.constant(tokens)).numpy()] == expected
