"""Bad configurations and inputs fail at build time with a clear message."""

import numpy as np
import pytest

import kerasmm
from kerasmm.models import MultimodalBackbone

IMAGE = {"name": "cnn", "output_dim": 16, "filters": [8]}
TEXT = {"name": "bow", "vocabulary_size": 20, "output_dim": 16}


def backbone(**kwargs):
    config = dict(encoders={"image": IMAGE, "text": TEXT}, fusion="weighted_sum", image_size=16, sequence_length=6)
    config.update(kwargs)
    return MultimodalBackbone(**config)


def test_unknown_encoder():
    with pytest.raises(ValueError, match=r"Unknown encoder 'resnet9'.*Valid encoder names: .*cnn"):
        backbone(encoders={"image": {"name": "resnet9"}, "text": TEXT})


def test_unknown_fusion():
    with pytest.raises(ValueError, match=r"Unknown fusion 'sum'.*weighted_sum"):
        backbone(fusion="sum")


def test_inconsistent_dimensions():
    with pytest.raises(ValueError, match=r"same width.*projection_dim"):
        backbone(encoders={"image": IMAGE, "text": {**TEXT, "output_dim": 8}})
    backbone(encoders={"image": IMAGE, "text": {**TEXT, "output_dim": 8}},
             fusion={"name": "weighted_sum", "projection_dim": 8})


def test_fusion_given_a_modality_the_model_has_no_input_for():
    with pytest.raises(ValueError, match=r"no input for \['audio'\]"):
        backbone(fusion={"name": "cross_attention", "query": "text", "context": "audio"})
    with pytest.raises(ValueError, match=r"no input for \['audio'\]"):
        backbone(fusion={"name": "concat", "modalities": ["image", "audio"]})


def test_encoder_in_the_wrong_modality_slot():
    with pytest.raises(ValueError, match=r"works on image, but was given for the 'text' input"):
        backbone(encoders={"image": IMAGE, "text": IMAGE})
    with pytest.raises(ValueError, match=r"Unknown modality 'video'"):
        backbone(encoders={"video": IMAGE})


def test_wrong_dtype_or_rank_reaches_the_encoder():
    encoder = kerasmm.encoders.get("cnn", output_dim=8, filters=[8])
    with pytest.raises(ValueError, match=r"CNNImageEncoder \(image encoder\) expects.*rank 4.*shape \(2, 16, 16\)"):
        encoder(np.zeros((2, 16, 16), "float32"))
    text = kerasmm.encoders.get("bow", vocabulary_size=10, output_dim=8)
    with pytest.raises(ValueError, match=r"expects.*int dtype.*got dtype float32"):
        text(np.zeros((2, 5), "float32"))


def test_missing_lengths():
    with pytest.raises(ValueError, match="sequence_length"):
        backbone(sequence_length=None)


def test_raw_features_of_the_wrong_kind():
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    images = np.zeros((2, 32, 32, 3), "uint8")
    with pytest.raises(ValueError, match="Text must be strings"):
        model.preprocessor({"image": images, "text": np.zeros((2,), "int32")})
    with pytest.raises(ValueError, match=r"Images must be \[batch, height, width, 3\]"):
        model.preprocessor({"image": np.zeros((2, 32, 32), "uint8"), "text": np.array(["a", "b"])})
    with pytest.raises(ValueError, match=r"Unknown feature keys \['caption'\]"):
        model.preprocessor({"image": images, "caption": np.array(["a", "b"])})
    with pytest.raises(ValueError, match="No feature for any of the model's modalities"):
        model.preprocessor({"image_mask": np.ones((2,))})
