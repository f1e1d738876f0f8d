"""Raw (features, targets) of text-to-image data → token ids and target images, inside tf.data."""


import keras
import keras_hub
import tensorflow as tf

from kerasmm import validation
from kerasmm.models.backbone_parts import image_pair


@keras.saving.register_keras_serializable(package="kerasmm")
class TextToImagePreprocessor(keras_hub.models.Preprocessor):
    """Raw (features, targets) → (`{"text": token ids}`, target images), inside tf.data.

    The text is `features["text"]` when present, else string targets (the
    layout of captioning readers: `({"image": pixels}, captions)`); a plain
    string batch is text too, for `predict`. The target image is
    `features["image"]` when present, else the targets (so
    `({"text": strings}, images)` works as well). Images (uint8 0–255 or
    float 0–1, `[B, H, W, 3]`, any size) are resized to `image_size` and
    returned float32 in [0, 1]. With no image (prediction) only the tokens
    come back.

    Args:
        tokenizer: a keras_hub tokenizer.
        sequence_length: int, token ids per text (padded with 0 or cut).
        image_size: (height, width) of the generated images.
        image_converter: a keras_hub `ImageConverter`, instead of `image_size`.

    Example:
    ```python
    import keras_hub, numpy as np
    from kerasmm.models import TextToImagePreprocessor
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=["[PAD]", "[UNK]", "a", "red", "circle"], lowercase=True)
    preprocessor = TextToImagePreprocessor(tokenizer, sequence_length=6, image_size=(16, 16))
    x, y = preprocessor({"image": np.zeros((2, 32, 32, 3), "uint8")}, np.array(["a red circle", "a circle"]))
    x["text"].shape, y.shape  # (2, 6), (2, 16, 16, 3)
    ```
    """

    def __init__(self, tokenizer, sequence_length, image_size=None, image_converter=None, **kwargs):
        super().__init__(**kwargs)
        if tokenizer is None:
            raise ValueError("A text-to-image preprocessor needs a tokenizer.")
        sequence_length = validation.positive_int("sequence_length", sequence_length)
        if image_size is None and image_converter is None:
            raise ValueError("A text-to-image preprocessor needs image_size=(height, width).")
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        if image_converter is None:
            image_converter = keras_hub.layers.ImageConverter(
                image_size=image_pair(image_size), interpolation="bilinear", antialias=True
            )
        self.image_converter = image_converter
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=sequence_length, pad_value=0, return_padding_mask=False
        )

    def build(self, input_shape):
        self.built = True  # the tokenizer and image converter need no weights

    def call(self, x, y=None, sample_weight=None):
        text, images = self._split(x, y)
        x = {"text": self.prepare_text(text)}
        y = None if images is None else self.prepare_images(images)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def _split(self, x, y):
        """(raw text, raw target images or None) from any accepted layout."""
        y = None if y is None else tf.convert_to_tensor(y)
        if not isinstance(x, dict):
            return x, y
        unknown = [k for k in x if k not in ("image", "text", "audio") and not k.endswith("_mask")]
        if unknown:
            raise ValueError(f"Unknown feature keys {unknown}; a text-to-image model takes 'text' and 'image'.")
        if "text" in x:
            text = x["text"]
        elif y is not None and y.dtype == tf.string:
            text, y = y, None
        else:
            raise ValueError(
                "No text to condition on: give features['text'] or caption strings as targets, "
                f"got feature keys {list(x)} and targets of dtype {None if y is None else y.dtype.name}."
            )
        images = x.get("image", y)
        return text, images

    def prepare_text(self, text):
        """int32 token ids `[B, sequence_length]` from a batch of strings `[B]` (or `[B, 1]`)."""
        text = tf.convert_to_tensor(text)
        if text.shape.rank == 2 and text.shape[-1] == 1:
            text = tf.squeeze(text, -1)
        if text.shape.rank != 1:
            raise ValueError(f"Text must be a batch of strings [batch], got shape {text.shape}.")
        if text.shape[0] == 0:
            raise ValueError("The text batch is empty: nothing to condition on.")
        if text.dtype != tf.string:
            raise ValueError(f"Text must be strings, got dtype {text.dtype.name}.")
        return tf.cast(self.packer(self.tokenizer(text)), "int32")

    def prepare_images(self, images):
        """float32 target images `[B, height, width, 3]` in [0, 1] from raw pixels."""
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or (images.shape[-1] is not None and images.shape[-1] != 3):
            raise ValueError(
                f"Target images must be RGB pixels [batch, height, width, 3], got shape {images.shape}."
            )
        if images.dtype == tf.string or images.dtype == tf.bool:
            raise ValueError(f"Target images must be pixel values, got dtype {images.dtype.name}.")
        if images.dtype == tf.uint8:
            images = tf.cast(images, "float32") / 255.0
        else:
            images = tf.cast(images, "float32")
        if tuple(images.shape[1:3]) != tuple(self.image_converter.image_size):
            images = tf.clip_by_value(self.image_converter(images), 0.0, 1.0)
        return images

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length})
        return config
