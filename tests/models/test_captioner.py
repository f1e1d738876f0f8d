"""Captioner: teacher-forced training, in-graph KV-cached generation, bad input, round trips."""

import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.models.captioner.captioner_task import Captioner
from kerasmm.losses.sequence import SmoothedSparseCrossentropy


@pytest.fixture(scope="module")
def captioner():
    keras.utils.set_random_seed(1)
    # context_dropout: some training examples are text alone (no image).
    model = kerasmm.zoo.get("tiny_captioner", sequence_length=12, context_dropout=0.2)
    model.fit(captions(8), epochs=1, verbose=0)
    return model


def captions(num_examples=4, batch_size=4, **kwargs):
    return kerasmm.data.shapes(num_examples=num_examples, batch_size=batch_size, task="captioning", **kwargs)


def images(num_examples=2, seed=3):
    return kerasmm.data.shapes_arrays(num_examples=num_examples, task="captioning", seed=seed)[0]["image"]


def recompute_greedy(model, images, max_length, prompts=None):
    """The keras.io captioning example's decoding: the whole decoder over the prefix at every step.

    `prompts` (one string per image): their ids follow the start token and are kept, not predicted.
    """
    pre = model.preprocessor
    x = {k: v for k, v in pre({"image": images}).items() if k != "tokens"}
    tokens = np.zeros((len(images), model.backbone.sequence_length), "int32")
    tokens[:, 0] = pre.start_id
    given = np.zeros(tokens.shape, bool)
    for row, prompt in enumerate(prompts or []):
        ids = pre.tokenizer(prompt)
        tokens[row, 1: 1 + len(ids)] = ids
        given[row, 1: 1 + len(ids)] = True
    finished = np.zeros(len(images), bool)
    for index in range(1, max_length):
        logits = np.array(model({**x, "tokens": keras.ops.convert_to_tensor(tokens)}, training=False))[:, index - 1]
        logits[:, 0] = -np.inf  # the padding id is never generated
        next_token = np.where(given[:, index], tokens[:, index], np.where(finished, 0, logits.argmax(-1)))
        tokens[:, index] = next_token
        finished |= next_token == pre.end_id
    out = tokens[:, 1:max_length].copy()
    after_end = np.cumsum(out == pre.end_id, axis=1) > 0
    out[after_end] = 0
    return out


def test_preprocessor_shifts_captions_and_masks_padding(captioner):
    pre = captioner.preprocessor
    x, y, weights = pre({"image": images()}, np.array(["a red circle", "a small blue square"]))
    assert x["tokens"].shape == (2, 12) and y.shape == (2, 12)
    np.testing.assert_array_equal(np.asarray(x["tokens"])[:, 1:], np.asarray(y)[:, :-1])
    assert (np.asarray(x["tokens"])[:, 0] == pre.start_id).all()
    # "a red circle" → 3 words + [END]: 4 weighted positions.
    np.testing.assert_array_equal(np.asarray(weights).sum(axis=1), [4, 5])
    assert np.asarray(y)[0, 3] == pre.end_id


def test_fit_lowers_the_masked_loss():
    keras.utils.set_random_seed(2)
    model = kerasmm.zoo.get("tiny_captioner", learning_rate=1e-2)
    history = model.fit(captions(32, batch_size=8), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    logits = model.predict(captions(4), verbose=0)
    assert logits.shape == (4, 16, model.backbone.vocabulary_size)


def test_cached_greedy_equals_full_recompute(captioner):
    batch = images(3)
    cached = captioner.generate(batch, max_length=10, return_tokens=True)
    np.testing.assert_array_equal(cached, recompute_greedy(captioner, batch, 10))
    assert cached.shape == (3, 9) and cached.dtype == np.int32


def test_a_prompt_begins_each_caption_and_the_cache_continues_it(captioner):
    batch = images(3)
    prompts = ["a", "a large red", "small"]
    cached = captioner.generate(batch, max_length=10, return_tokens=True, prompt=prompts)
    np.testing.assert_array_equal(cached, recompute_greedy(captioner, batch, 10, prompts))
    assert [c.split()[: len(p.split())] for c, p in zip(captioner.detokenize(cached), prompts)] == [
        p.split() for p in prompts]
    beams = captioner.generate(batch, max_length=6, prompt="a large", sampler="beam", num_beams=2)
    assert all(c.startswith("a large") for c in beams)


def test_prompts_train_as_a_prefix_language_model(captioner):
    pre = captioner.preprocessor
    x, y, weights = pre({"image": images(), "prompt": np.array(["a large", "a"])}, np.array(["red circle", "square"]))
    start, ids = pre.start_id, [pre.tokenizer(t) for t in ("a large", "red circle", "a", "square")]
    np.testing.assert_array_equal(np.asarray(x["tokens"])[0, :5], [start, *ids[0], *ids[1]])
    # Only the continuation and its end token are learned: 2 words + [END], 1 word + [END].
    np.testing.assert_array_equal(np.asarray(weights)[:, :4], [[0, 0, 1, 1], [0, 1, 1, 0]])
    assert np.asarray(weights).sum() == 5


@pytest.mark.parametrize("prompt, match", [
    (["a", "a"], "Got 2 prompts for 3 inputs"),
    (["a", 3, "a"], "Prompt 1 is a int, not a string"),
    ("a large red circle " * 4, "leaving no room to generate within max_length=12"),
])
def test_bad_prompts_are_refused(captioner, prompt, match):
    with pytest.raises(ValueError, match=match):
        captioner.generate(images(3), prompt=prompt)


def test_beam_of_width_one_is_greedy_and_wider_beams_run(captioner):
    batch = images(2)
    greedy = captioner.generate(batch, return_tokens=True)
    np.testing.assert_array_equal(captioner.generate(batch, sampler="beam", num_beams=1, return_tokens=True), greedy)
    wide = captioner.generate(batch, sampler="beam", num_beams=3, return_tokens=True)
    # kerasmm's beam sampler reorders the cache by row gathers; the beams it keeps are keras_hub's.
    reference = keras_hub.samplers.BeamSampler(num_beams=3)
    np.testing.assert_array_equal(wide, captioner.generate(batch, sampler=reference, return_tokens=True))


@pytest.mark.parametrize("sampler", ["top_k", "top_p"])
def test_random_samplers_give_captions_from_the_vocabulary(captioner, sampler):
    tokens = captioner.generate(images(2), sampler=sampler, return_tokens=True)
    assert tokens.min() >= 0 and tokens.max() < captioner.backbone.vocabulary_size
    assert len(captioner.generate(images(2), sampler=sampler)) == 2


def test_generate_takes_a_dataset_and_a_sampler_instance(captioner):
    from_data = captioner.generate(captions(4, batch_size=2), max_length=8)
    assert len(from_data) == 4
    sampler = keras_hub.samplers.GreedySampler()
    features, _ = kerasmm.data.shapes_arrays(num_examples=4, task="captioning")
    assert captioner.generate(features["image"], max_length=8, sampler=sampler) == from_data


def test_tokens_after_the_end_token_are_padding(captioner):
    end = captioner.preprocessor.end_id
    tokens = captioner.generate(images(2), return_tokens=True)
    ended = np.cumsum(tokens == end, axis=1) > 0
    assert (tokens[ended] == 0).all()
    assert captioner.detokenize(np.array([[7, 5, end, 9]])) == [captioner.detokenize(np.array([[7, 5]]))[0]]


def test_round_trip_keeps_generate(captioner, tmp_path):
    path = os.path.join(tmp_path, "captioner.keras")
    captioner.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, Captioner)
    assert loaded.backbone.modality_dropout.drop_all_rate == 0.2
    batch = images(2)
    np.testing.assert_array_equal(
        loaded.generate(batch, return_tokens=True), captioner.generate(batch, return_tokens=True)
    )
    assert loaded.generate(batch, sampler="beam", num_beams=2) == captioner.generate(batch, sampler="beam", num_beams=2)


def test_crossmodal_lm_generates_from_each_subset_of_its_modalities():
    model = kerasmm.zoo.get("tiny_crossmodal_lm")
    data = captions(4, with_audio=True, audio_seconds=0.1)
    model.fit(data, epochs=1, verbose=0)
    features, _ = next(iter(data))
    subsets = {
        "image": {"image": features["image"]},
        "audio": {"audio": features["audio"]},
        "both": dict(features),
    }
    tokens = {name: model.generate(x, max_length=8, return_tokens=True) for name, x in subsets.items()}
    for name, out in tokens.items():
        assert out.shape == (4, 7), name
    # Masking a modality out is what "absent" means: the same ids whether it is dropped or zeroed+masked.
    masked = {"image": features["image"], "audio": features["audio"], "audio_mask": np.zeros(4, "float32")}
    np.testing.assert_array_equal(model.generate(masked, max_length=8, return_tokens=True), tokens["image"])
    # Text joins them as a prompt the decoder continues: text + image + audio, or text + either one.
    for name, x in subsets.items():
        prompted = model.generate(x, max_length=8, prompt="a small")
        assert all(c.startswith("a small") for c in prompted), name
    # Or text alone: one caption per prompt, whatever the masked placeholders hold (cross-attention sees none).
    alone = model.generate(prompt=["a small", "a large red"], max_length=8, return_tokens=True)
    assert [c.split()[:2] for c in model.detokenize(alone)] == [["a", "small"], ["a", "large"]]
    noise = np.random.default_rng(0)
    hidden = {"image": noise.random((2, 32, 32, 3)).astype("float32"), "image_mask": np.zeros(2, "float32"),
              "audio": noise.normal(size=(2, 1600)).astype("float32"), "audio_mask": np.zeros(2, "float32")}
    np.testing.assert_array_equal(
        model.generate(hidden, prompt=["a small", "a large red"], max_length=8, return_tokens=True), alone)
    prompts_only = tf.data.Dataset.from_tensor_slices({"prompt": ["a small", "a large red"]}).batch(2)
    assert model.generate(prompts_only, max_length=8) == model.detokenize(alone)
    assert model.generate(prompt="a", max_length=8)[0].startswith("a")
    assert kerasmm.zoo.entry("audio_visual_captioner").config == kerasmm.zoo.entry("crossmodal_lm").config


def test_generate_needs_inputs_or_a_prompt(captioner):
    with pytest.raises(ValueError, match="generate needs inputs .* or a prompt"):
        captioner.generate()


def test_label_smoothing_loss_matches_its_definition():
    logits = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    labels = np.array([[1, 2, 0], [4, 0, 0]])
    weights = (labels != 0).astype("float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    smoothed = 0.9 * nll + 0.1 * -log_p.mean(-1)
    loss = SmoothedSparseCrossentropy(label_smoothing=0.1)(labels, logits, sample_weight=weights)
    np.testing.assert_allclose(float(loss), (smoothed * weights).sum() / weights.size, rtol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: np.zeros((32, 32, 3), "uint8"), r"\[batch, height, width, 3\]"),
        (lambda: np.full((2, 32, 32, 3), "x"), "integer or float pixels"),
        (lambda: np.zeros((0, 32, 32, 3), "uint8"), "empty batch"),
    ],
    ids=["rank", "dtype", "empty"],
)
def test_bad_images_are_refused(captioner, bad, match):
    with pytest.raises(ValueError, match=match):
        captioner.generate(bad())


def test_bad_generation_settings_are_refused(captioner):
    with pytest.raises(ValueError, match="positional range.*12 positions"):
        captioner.generate(images(1), max_length=13)
    with pytest.raises(ValueError, match=r"Unknown sampler 'nucleus'.*'beam'"):
        captioner.generate(images(1), sampler="nucleus")
    with pytest.raises(ValueError, match="num_beams"):
        captioner.generate(images(1), sampler="beam", num_beams=0)
    with pytest.raises(ValueError, match="Unknown sampler"):
        kerasmm.zoo.get("tiny_captioner", sampler="nucleus")


def test_bad_architecture_is_refused():
    with pytest.raises(ValueError, match="text is what the decoder writes"):
        kerasmm.zoo.get("tiny_captioner", encoders={"text": {"name": "bow", "output_dim": 16}})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        kerasmm.zoo.get("tiny_captioner", hidden_dim=10, num_heads=4)
    with pytest.raises(ValueError, match=r"context_dropout must be a float in \[0, 1\)"):
        kerasmm.zoo.get("tiny_captioner", context_dropout=1.0)
    with pytest.raises(ValueError, match="no '\\[START\\]' token"):
        kerasmm.zoo.get("tiny_captioner", vocabulary=["[PAD]", "[UNK]", "a", "b"])


def test_evaluate_scores_greedy_generations_in_graph_mode(captioner):
    data = captions(6, batch_size=3, split="test")
    logs = captioner.evaluate(data, verbose=0, return_dict=True)
    assert {"loss", "token_accuracy", "bleu_4", "cider_d"} <= set(logs)
    features, references = kerasmm.data.shapes_arrays(num_examples=6, task="captioning", split="test")
    generated = captioner.generate(features["image"])
    expected = kerasmm.metrics.caption_scores([[r] for r in references], generated)
    assert logs["bleu_4"] == pytest.approx(expected["bleu_4"], abs=1e-6)
    assert logs["cider_d"] == pytest.approx(expected["cider_d"], abs=1e-4)
    assert isinstance(captioner.evaluate(data, verbose=0), list)


def test_generation_compiles_with_xla_to_the_same_tokens(captioner):
    batch = images(2)
    plain = captioner.generate(batch, return_tokens=True)
    jit_compile = captioner.jit_compile
    captioner.jit_compile = True
    try:
        np.testing.assert_array_equal(captioner.generate(batch, return_tokens=True), plain)
    finally:
        captioner.jit_compile = jit_compile
