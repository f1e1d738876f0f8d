"""Raw images and strings → the inputs of a pretrained CLIP / SigLIP dual encoder, inside tf.data."""

import keras
import keras_hub
import tensorflow as tf

from kerasmm import validation
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor


@keras.saving.register_keras_serializable(package="kerasmm")
class PretrainedDualEncoderPreprocessor(MultimodalPreprocessor):
    """Images resized to the vision tower's size in [0, 1]; text packed as the pretrained model expects.

    CLIP texts are lower-cased and packed as start token, tokens, end token
    and padding; SigLIP texts as tokens, end token and its pad token, at the
    fixed length its text tower was trained on, after SigLIP's canonicalisation
    (lower case, punctuation removed, spaces collapsed). A captioning reader's string
    targets become the text, as for every dual encoder.

    Args:
        tokenizer: the pretrained model's keras-hub tokenizer.
        sequence_length: int, token ids per text.
        image_size: (height, width) of the vision tower (or an `image_converter`).
        add_start_token, add_end_token: bool, as the pretrained preprocessor.
        pad_with_end_token: bool. Pad with the end token's id (SigLIP), else 0.
        lowercase: bool. Lower-case texts before tokenising (CLIP).
        canonicalize: bool. Canonicalise texts as keras-hub's `SigLIPPreprocessor` does.

    Example:
    ```python
    import numpy as np
    import kerasmm
    model = kerasmm.zoo.get("tiny_clip")
    model.preprocessor({"image": np.zeros((1, 40, 40, 3), "uint8"), "text": np.array(["a red circle"])})
    ```
    """

    def __init__(self, tokenizer, sequence_length, image_size=None, add_start_token=True, add_end_token=True,
                 pad_with_end_token=False, lowercase=True, canonicalize=False, **kwargs):
        for key in ("modalities", "presence_masks", "text_from_targets"):
            kwargs.pop(key, None)  # fixed for a pretrained dual encoder (and saved by the base config)
        super().__init__(modalities=["image", "text"], tokenizer=tokenizer, sequence_length=sequence_length,
                         image_size=image_size, presence_masks=False, text_from_targets=True, **kwargs)
        self.add_start_token = validation.boolean("add_start_token", add_start_token)
        self.add_end_token = validation.boolean("add_end_token", add_end_token)
        self.pad_with_end_token = validation.boolean("pad_with_end_token", pad_with_end_token)
        self.lowercase = validation.boolean("lowercase", lowercase)
        self.canonicalize = validation.boolean("canonicalize", canonicalize)

    @property
    def text_packer(self):
        """The `StartEndPacker` of the tokenizer's special tokens."""
        # Made when the tokenizer knows its special ids (a loaded one only once its assets are read), and
        # kept outside Keras' tracking: it holds no state.
        end = self.tokenizer.end_token_id
        values = (self.tokenizer.start_token_id if self.add_start_token else None,
                  end if self.add_end_token else None, end if self.pad_with_end_token else 0)
        if self.__dict__.get("_text_packer_values") != values:
            self.__dict__["_text_packer"] = keras_hub.layers.StartEndPacker(
                sequence_length=self.sequence_length, start_value=values[0], end_value=values[1],
                pad_value=values[2], return_padding_mask=False)
            self.__dict__["_text_packer_values"] = values
        return self.__dict__["_text_packer"]

    def _token_ids(self, text):
        if self.canonicalize:
            # keras-hub's own canonicalisation (transformers' SiglipTokenizer does the same), held untracked.
            if "_canonicalizer" not in self.__dict__:
                self.__dict__["_canonicalizer"] = keras_hub.models.SigLIPPreprocessor(self.tokenizer)
            text = self.__dict__["_canonicalizer"].canonicalize_inputs(text)
        return self.text_packer(self.tokenizer(tf.strings.lower(text) if self.lowercase else text))

    def get_config(self):
        config = super().get_config()
        config.update({"add_start_token": self.add_start_token, "add_end_token": self.add_end_token,
                       "pad_with_end_token": self.pad_with_end_token, "lowercase": self.lowercase,
                       "canonicalize": self.canonicalize})
        return config
