"""The `clip` / `siglip` entries on keras-hub presets the tests write (never downloaded)."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import kerasmm
from kerasmm.models.dual_encoder import pretrained_dual_encoder_presets as presets

TEXTS = ["a red circle", "two blue squares", "a green triangle on the left"]
CLIP_MEAN, CLIP_STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def clip_preset(tmp_path_factory):
    """A keras-hub CLIP preset as keras-hub writes one: backbone, tokenizer, image converter."""
    keras.utils.set_random_seed(1)
    hub, tokenizer = presets._random("clip", {})
    hub.get_layer("clip_head").logit_scale.assign(3.25)
    path = str(tmp_path_factory.mktemp("clip_preset"))
    hub.save_to_preset(path)
    tokenizer.save_to_preset(path)
    scale = [1 / (255 * s) for s in CLIP_STD]
    offset = [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)]
    keras_hub.layers.CLIPImageConverter(image_size=(32, 32), scale=scale, offset=offset).save_to_preset(path)
    return path, hub, tokenizer


def images(n=3):
    return kerasmm.data.shapes_arrays(num_examples=n, image_size=32)[0]["image"]


def test_a_clip_preset_keeps_its_towers_projections_scale_and_normalisation(clip_preset):
    path, hub, tokenizer = clip_preset
    model = kerasmm.zoo.get("clip", preset=path)
    assert isinstance(model, kerasmm.models.PretrainedDualEncoder)
    assert float(model.logit_scale_variable.numpy()) == pytest.approx(3.25)
    # Embeddings are keras-hub's own projected towers on its normalised pixels and packed ids.
    pixels = (images().astype("float32") / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    want = keras.ops.convert_to_numpy(hub.get_vision_embeddings(pixels.astype("float32")))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode_image(images()), want, atol=1e-5)
    packer = keras_hub.layers.StartEndPacker(24, start_value=tokenizer.start_token_id,
                                             end_value=tokenizer.end_token_id, pad_value=0)
    ids = packer(tokenizer(tf.constant(TEXTS)))
    want = keras.ops.convert_to_numpy(hub.get_text_embeddings(ids))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode_text(TEXTS), want, atol=1e-5)
    assert model.classify(images(), ["circle", "square"]).shape == (3, 2)


def test_a_siglip_preset_keeps_its_bias_and_trains_with_the_sigmoid_loss(tmp_path):
    hub, tokenizer = presets._random("siglip", {})
    hub.get_layer("siglip_head").logit_bias.assign(-6.5)
    hub.save_to_preset(str(tmp_path))
    tokenizer.save_to_preset(str(tmp_path))
    model = kerasmm.zoo.get("siglip", preset=str(tmp_path))
    assert model.contrastive_loss == "sigmoid"
    assert float(model.logit_bias_variable.numpy()) == pytest.approx(-6.5)
    ids = model.preprocessor.prepare("text", np.array(["a red circle"]))[0].numpy()
    assert ids[-1] == tokenizer.end_token_id  # padded with the end token to the tower's fixed length


def test_the_clip_export_encodes_jpeg_bytes_as_the_model_does(clip_preset, tmp_path):
    model = kerasmm.zoo.get("clip", preset=clip_preset[0])
    version = kerasmm.export.saved_model(model, str(tmp_path / "clip"))
    jpegs = [tf.io.encode_jpeg(image).numpy() for image in images()]
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
    served = tf.saved_model.load(version).signatures["encode_image"](image_bytes=tf.constant(jpegs))
    np.testing.assert_allclose(served["embedding"].numpy(), model.encode_image(decoded), atol=1e-5)


def test_bad_presets_are_one_line_errors(clip_preset, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="holds a CLIPBackbone, not a SigLIPBackbone"):
        kerasmm.zoo.get("siglip", preset=clip_preset[0])
    hub, _ = presets._random("clip", {})
    hub.save_to_preset(str(tmp_path))
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        kerasmm.zoo.get("clip", preset=str(tmp_path))
    not_a_checkpoint = tmp_path / "notes"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "config.json").write_text('{"learning_rate": 0.1}')
    with pytest.raises(ValueError, match="is not a checkpoint kerasmm reads. Expected one of: keras-hub preset"):
        kerasmm.zoo.get("clip", preset=str(not_a_checkpoint))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="is a transformers 'bert' checkpoint; kerasmm converts transformers CLIP"):
        kerasmm.zoo.get("clip", preset=str(bert))
    import kagglehub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(kagglehub, "model_download", offline)
    with pytest.raises(ValueError, match=r"cannot download the keras-hub preset 'clip_vit_base_patch16'.*"
                                         r"pass DIR as the preset"):
        kerasmm.zoo.get("clip")  # the entry's default preset: a download, refused offline in one line
