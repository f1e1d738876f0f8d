"""Every zoo entry, parametrised over the registry: a new entry is tested without a new test."""

import keras
import numpy as np
import pytest

import kerasmm
from kerasmm import testing
from kerasmm.models import ZooTask

CLASSIFIERS = ["audio_visual_classifier", "clip_classifier", "concat_classifier", "vqa_classifier",
               "weighted_sum_classifier"]
RETRIEVERS = ["audio_text_dual_encoder", "clip", "dual_encoder", "siglip", "siglip_dual_encoder"]
CAPTIONERS = ["audio_visual_captioner", "captioner", "clip_captioner", "crossmodal_lm", "generative_vqa"]
GENERATORS = ["text_to_image"]
# The shapes data each zoo task trains on, where it is not the task's own.
DATA = {"retrieval": {"task": "classification"}, "text_to_image": {"task": "captioning"},
        "vqa_generation": {"task": "vqa", "answers": "text"}}
# Tasks whose model writes text with the captioner's decoder.
WRITERS = ("captioning", "vqa_generation")
# Aliases (same architecture under a second name) are built and trained once, under their first name.
TINY = [n for n in kerasmm.zoo.list(include_tiny=True, include_aliases=False) if n.startswith("tiny_")]
FULL = kerasmm.zoo.list(include_aliases=False)


def shapes_for(model, task, num_examples=4, batch_size=2):
    with_audio = "audio" in model.backbone.modalities
    return kerasmm.data.shapes(
        num_examples=num_examples, batch_size=batch_size, with_audio=with_audio, audio_seconds=0.1,
        **DATA.get(task, {"task": task}),
        image_size=model.preprocessor.image_size[0] if model.preprocessor.image_size else 32,
    )


def test_list_names_every_entry():
    assert kerasmm.zoo.list() == sorted(CLASSIFIERS + RETRIEVERS + CAPTIONERS + GENERATORS)
    assert kerasmm.zoo.list("*vqa*") == ["generative_vqa", "vqa_classifier"]
    assert set(TINY) == {"tiny_" + n for n in FULL}
    assert kerasmm.zoo.entry("audio_visual_captioner").alias_of == "crossmodal_lm"
    assert "audio_visual_captioner" not in FULL and "tiny_audio_visual_captioner" not in TINY


@pytest.mark.parametrize("name", TINY)
def test_tiny_entry_fits_predicts_and_round_trips(name, tmp_path):
    entry = kerasmm.zoo.entry(name)
    model = kerasmm.zoo.get(name)
    train = shapes_for(model, entry.task)
    history = model.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    outputs = model.predict(train, verbose=0)
    if entry.task == "retrieval":
        for embedding in outputs.values():
            np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    elif entry.task in WRITERS:
        assert outputs.shape == (4, model.backbone.sequence_length, model.backbone.vocabulary_size)
    elif entry.task == "text_to_image":
        assert outputs.shape == (4, *model.image_size, 3)
    else:
        assert outputs.shape == (4, model.num_classes)
    x = next(iter(train.map(lambda x, y: model.preprocessor(x, y))))[0]
    loaded = testing.run_model_saving_test(model, x)
    # keras-hub's preset round trip: the task class (or the generic ZooTask) rebuilds it, tokenizer included.
    preset = tmp_path / "preset"
    model.save_to_preset(str(preset))
    from_preset = ZooTask.from_preset(str(preset))
    assert type(from_preset) is type(model)
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), from_preset.predict(train, verbose=0), outputs
    )
    if entry.task in WRITERS:
        features = next(iter(train))[0]
        # Without XLA: the round trip is what is tested here (its compile would be most of this test's time).
        np.testing.assert_array_equal(from_preset.generate(features, return_tokens=True, jit_compile=False),
                                      model.generate(features, return_tokens=True, jit_compile=False))
    # The reloaded model carries its preprocessor: raw features in, same outputs.
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), loaded.predict(train, verbose=0), outputs
    )
    if entry.task == "retrieval":
        assert loaded.contrastive_loss == model.contrastive_loss
        assert float(loaded.logit_scale_variable.numpy()) == float(model.logit_scale_variable.numpy())
    elif entry.task in WRITERS:
        raw = next(iter(train))[0]
        length = 6 if entry.task == "captioning" else None  # a question fills the first positions
        assert (loaded.generate(raw, max_length=length, jit_compile=False)
                == model.generate(raw, max_length=length, jit_compile=False))
    elif entry.task == "classification":
        assert loaded.class_names == model.class_names


# One full-size entry per family: the tiny twins above cover every architecture.
FULL_PER_FAMILY = ["captioner", "dual_encoder", "text_to_image", "vqa_classifier"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_PER_FAMILY)
def test_full_entry_builds_and_round_trips(name):
    model = kerasmm.zoo.get(name)
    data = shapes_for(model, kerasmm.zoo.entry(name).task, num_examples=2)
    x = next(iter(data.map(lambda x, y: model.preprocessor(x, y))))[0]
    testing.run_model_saving_test(model, x)


def test_overrides_merge_into_the_entry():
    model = kerasmm.zoo.get(
        "tiny_weighted_sum_classifier", encoders={"image": {"output_dim": 16, "filters": [4]}}, learning_rate=0.5
    )
    assert model.backbone.encoder_layers["image"].filters == [4]
    assert float(model.optimizer.learning_rate) == pytest.approx(0.5)
    image_only = kerasmm.zoo.get("tiny_weighted_sum_classifier", encoders={"text": None})
    assert image_only.backbone.modalities == ["image"]


def test_unknown_override_lists_the_settings():
    with pytest.raises(ValueError, match=r"no setting 'epochs'.*learning_rate"):
        kerasmm.zoo.get("tiny_weighted_sum_classifier", epochs=3)


def test_model_takes_any_subset_of_its_modalities():
    model = kerasmm.zoo.get("tiny_audio_visual_classifier")
    full = kerasmm.data.shapes(num_examples=2, batch_size=2, with_audio=True)
    x, _ = next(iter(full))
    for subset in (["image"], ["audio"], ["text"], ["image", "audio"]):
        probs = model.predict({k: x[k] for k in subset}, verbose=0)
        assert probs.shape == (2, model.num_classes)
        assert np.all(np.isfinite(probs))


def test_the_first_fit_traces_the_train_step_once():
    # Keras creates the optimizer's variables in the first traced step unless a strategy is set, and a
    # tf.function that creates variables is traced twice; ZooTask.fit builds the optimizer first.
    model = kerasmm.zoo.get("tiny_text_to_image")
    traced = []
    train_step = model.train_step
    model.train_step = lambda data: traced.append(1) or train_step(data)
    model.fit(kerasmm.data.shapes(num_examples=4, batch_size=2, task="captioning"), epochs=1, verbose=0)
    assert len(traced) == 1 and model.optimizer.built
