"""The preprocessor every zoo model carries: raw features → backbone inputs."""

import keras
import keras_hub
import tensorflow as tf

from kerasmm.data import image_ops

MODALITIES = ("image", "text", "audio")


def eight_bit_or_unit_float(images):
    """uint8 pixels, or float32 in [0, 1], from pixels of any integer or float dtype.

    uint8 stays; uint16 (16-bit PNG) is scaled by 65535 to float; other
    integer dtypes (int64 is numpy's default) must hold 8-bit values 0–255
    and become uint8, or fail naming the values found; floats are taken as
    [0, 1].
    """
    if images.dtype == tf.uint8:
        return images
    if images.dtype == tf.uint16:
        return tf.cast(images, "float32") / 65535.0
    if images.dtype.is_integer:
        low, high = tf.reduce_min(images), tf.reduce_max(images)
        check = tf.debugging.Assert(
            (low >= 0) & (high <= 255),
            [f"Images of dtype {images.dtype.name} must hold 8-bit values 0-255 (pass uint8, uint16, or floats "
             "in [0, 1]); found values from", low, "to", high],
        )
        with tf.control_dependencies([check]):
            return tf.cast(images, tf.uint8)
    if images.dtype.is_floating:
        return tf.cast(images, "float32")
    raise ValueError(f"Images must be integer or float pixels, got dtype {images.dtype.name}.")


@keras.saving.register_keras_serializable(package="kerasmm")
class MultimodalPreprocessor(keras_hub.models.Preprocessor):
    """Turns raw features into the backbone's input dict, inside tf.data.

    Raw features (a dict; any subset of the model's modalities):
    `"image"` decoded pixels `[B,H,W,3]` (uint8 0–255, or float 0–1) of any
    size, resized here to `image_size`; `"text"` strings `[B]`, tokenised and
    padded or cut to `sequence_length`; `"audio"` float waveform `[B,S]`,
    zero-padded or cut to `audio_length`. Optional `"<modality>_mask"` `[B]`
    flags mark examples where a modality is missing.

    Output: the same keys as model inputs — `image` float32 in [0, 1],
    `text` int32 ids (0 = padding), `audio` float32 — plus a
    `"<modality>_mask"` float32 `[B]` for every modality of the model. A
    modality absent from the raw features is filled with zeros and masked out,
    so a model trained on image + text + audio can be asked about any subset.

    Args:
        modalities: the model's modalities, a subset of ("image", "text", "audio").
        tokenizer: a keras_hub tokenizer, needed when "text" is a modality.
        sequence_length: int, token ids per text.
        image_size: (height, width) the image encoder expects; builds the
            `image_converter` (a keras_hub `ImageConverter` that resizes).
        image_converter: a keras_hub `ImageConverter`, instead of `image_size`.
        audio_length: int, waveform samples per clip.

    Example:
    ```python
    import keras_hub, numpy as np
    from kerasmm.models import MultimodalPreprocessor
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=["[PAD]", "[UNK]", "a", "red", "circle"], lowercase=True)
    preprocessor = MultimodalPreprocessor(
        modalities=["image", "text"], tokenizer=tokenizer,
        sequence_length=8, image_size=(32, 32))
    x = preprocessor({"image": np.zeros((2, 40, 40, 3), "uint8"),
                      "text": np.array(["a red circle", "a circle"])})
    ```
    """

    def __init__(
        self,
        modalities,
        tokenizer=None,
        sequence_length=None,
        image_size=None,
        audio_length=None,
        image_converter=None,
        presence_masks=True,
        text_from_targets=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        modalities = list(modalities)
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown or not modalities:
            raise ValueError(f"Unknown modalities {unknown or modalities}; valid modalities: {list(MODALITIES)}.")
        if "text" in modalities and (tokenizer is None or not sequence_length):
            raise ValueError("A model with a text modality needs a tokenizer and a sequence_length.")
        if "image" in modalities and image_size is None and image_converter is None:
            raise ValueError("A model with an image modality needs image_size=(height, width).")
        if "audio" in modalities and not audio_length:
            raise ValueError("A model with an audio modality needs audio_length (samples per clip).")
        self.modalities = modalities
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        if image_converter is None and "image" in modalities:
            image_converter = keras_hub.layers.ImageConverter(
                image_size=tuple(image_size), interpolation="bilinear", antialias=True
            )
        self.image_converter = image_converter
        self.audio_length = audio_length
        self.presence_masks = presence_masks
        self.text_from_targets = text_from_targets
        self.packer = None
        if tokenizer is not None:
            self.packer = keras_hub.layers.StartEndPacker(
                sequence_length=sequence_length, pad_value=0, return_padding_mask=False
            )

    def build(self, input_shape):
        self.built = True  # the tokenizer and image converter need no weights

    def call(self, x, y=None, sample_weight=None):
        if not isinstance(x, dict):
            raise ValueError(
                f"The preprocessor expects a dict of raw features with keys among {self.modalities}, "
                f"got {type(x).__name__}."
            )
        if self.text_from_targets and "text" not in x and y is not None:
            y = tf.convert_to_tensor(y)
            if y.dtype == tf.string:
                x, y = {**x, "text": y}, None
        unknown = [k for k in x if k not in MODALITIES and not k.endswith("_mask")]
        if unknown:
            raise ValueError(f"Unknown feature keys {unknown}; this model takes {self.modalities}.")
        given = [m for m in self.modalities if m in x]
        if not given:
            raise ValueError(f"No feature for any of the model's modalities {self.modalities}; got keys {list(x)}.")
        raw = {m: tf.convert_to_tensor(x[m]) for m in given}
        batch = tf.shape(raw[given[0]])[0]
        outputs = {}
        if not self.presence_masks:
            missing = [m for m in self.modalities if m not in raw]
            if missing:
                raise ValueError(f"This model needs every one of {self.modalities}; missing {missing}.")
            return keras.utils.pack_x_y_sample_weight(
                {m: self.prepare(m, raw[m]) for m in self.modalities}, y, sample_weight
            )
        for m in self.modalities:
            if m in raw:
                outputs[m] = self.prepare(m, raw[m])
                mask = x.get(f"{m}_mask")
                mask = tf.ones((batch,)) if mask is None else tf.reshape(tf.cast(mask, "float32"), (batch,))
            else:
                outputs[m] = self._placeholder(m, batch)
                mask = tf.zeros((batch,))
            outputs[f"{m}_mask"] = mask
        return keras.utils.pack_x_y_sample_weight(outputs, y, sample_weight)

    def prepare(self, modality, raw):
        """Preprocess one modality's raw batch (images, strings or waveforms)."""
        return getattr(self, f"_prepare_{modality}")(tf.convert_to_tensor(raw))

    def _prepare_image(self, images):
        if images.shape.rank != 4 or (images.shape[-1] is not None and images.shape[-1] != 3):
            raise ValueError(f"Images must be [batch, height, width, 3] pixels, got shape {images.shape}.")
        images = eight_bit_or_unit_float(images)
        if tuple(images.shape[1:3]) != tuple(self.image_converter.image_size):
            # The readers' resize (kerasmm.data.image_ops), so pixels given here match pixels read from files.
            images = image_ops.resize_image(images, self.image_converter.image_size,
                                            image_ops.policy_of(self.image_converter),
                                            image_ops.interpolation_of(self.image_converter))
        if images.dtype == tf.uint8:
            return tf.cast(images, "float32") / 255.0
        return images

    def _prepare_text(self, text):
        if text.dtype != tf.string:
            raise ValueError(f"Text must be strings, got dtype {text.dtype.name}.")
        if text.shape.rank == 2 and text.shape[-1] == 1:
            text = tf.squeeze(text, -1)
        return tf.cast(self._token_ids(text), "int32")

    def _token_ids(self, text):
        """`[B, sequence_length]` ids of strings `[B]`: tokenised, then padded or cut."""
        return self.packer(self.tokenizer(text))

    def _prepare_audio(self, audio):
        if audio.shape.rank != 2:
            raise ValueError(f"Audio must be [batch, samples] waveforms, got shape {audio.shape}.")
        audio = tf.cast(audio, "float32")[:, : self.audio_length]
        missing = self.audio_length - tf.shape(audio)[1]
        return tf.ensure_shape(tf.pad(audio, [[0, 0], [0, missing]]), (None, self.audio_length))

    def _placeholder(self, modality, batch):
        if modality == "image":
            return tf.zeros(tf.concat([[batch], self.image_size, [3]], 0))
        if modality == "text":
            return tf.zeros((batch, self.sequence_length), "int32")
        return tf.zeros((batch, self.audio_length))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "modalities": self.modalities,
                "sequence_length": self.sequence_length,
                "audio_length": self.audio_length,
                "presence_masks": self.presence_masks,
                "text_from_targets": self.text_from_targets,
            }
        )
        return config
