"""Text-to-image: a text encoder conditions a small upsampling convolutional decoder."""

import math

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from kerasmm.builders.backbone import image_pair, resolve_encoders
from kerasmm.builders.task import ZooTask


@keras.saving.register_keras_serializable(package="kerasmm")
class TextToImageBackbone(keras_hub.models.Backbone):
    """A text encoder's pooled output, the condition of a text-to-image decoder.

    Input: `{"text": int32 [B, T]}` token ids (0 = padding). Output: the
    encoder's `pooled` features `[B, D]`.

    Args:
        text_encoder: a registered text encoder name, spec dict or layer.
        sequence_length: int, T.

    Example:
    ```python
    import numpy as np
    from kerasmm.builders.text_to_image import TextToImageBackbone
    backbone = TextToImageBackbone({"name": "bow", "vocabulary_size": 20, "output_dim": 8}, sequence_length=6)
    backbone({"text": np.ones((2, 6), "int32")}).shape  # (2, 8)
    ```
    """

    def __init__(self, text_encoder, sequence_length, dtype=None, **kwargs):
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive int, got {sequence_length!r}.")
        # === Layers ===
        self.text_encoder = resolve_encoders({"text": text_encoder})["text"]

        # === Functional Model ===
        inputs = {"text": keras.Input(shape=(sequence_length,), dtype="int32", name="text")}
        pooled = self.text_encoder(inputs["text"])["pooled"]
        super().__init__(inputs=inputs, outputs=pooled, dtype=dtype, **kwargs)

        # === Config ===
        self.sequence_length = sequence_length

    @property
    def modalities(self):
        return ["text"]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "text_encoder": keras.layers.serialize(self.text_encoder),
                "sequence_length": self.sequence_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["text_encoder"] = keras.layers.deserialize(config["text_encoder"])
        return super().from_config(config)


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
    from kerasmm.builders.text_to_image import TextToImagePreprocessor
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
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(f"sequence_length must be a positive int, got {sequence_length!r}.")
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


@keras.saving.register_keras_serializable(package="kerasmm")
class TextToImage(ZooTask):
    """Generates small RGB images from text, trained with squared error.

    The backbone's pooled text features go through a dense layer to a grid
    of `image_size / 2**len(filters)` cells with `filters[0]` channels; each
    entry of `filters` is then an upsampling stage (×2 nearest-neighbour
    upsampling, 3x3 convolution, batch normalisation with momentum 0.9, ReLU); a last 3x3
    convolution with a sigmoid gives `[B, H, W, 3]` in [0, 1] (float32 even
    under mixed precision).

    `fit` and `evaluate` take raw data: a captioning reader's
    `({"image": pixels}, captions)` or `({"text": strings}, images)` (see
    `TextToImagePreprocessor`). `predict` takes `{"text": strings}` or a list
    of strings; `generate` returns numpy images.

    Args:
        backbone: a `TextToImageBackbone`.
        image_size: int or (height, width), each divisible by `2**len(filters)`.
        filters: list of ints, the channels of each upsampling stage.
        preprocessor: a `TextToImagePreprocessor`, or None to feed token ids.

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_text_to_image")
    model.fit(kerasmm.data.shapes(num_examples=32, batch_size=16, task="captioning"), epochs=1)
    images = model.generate(["a large red circle", "a small blue square"])  # (2, 32, 32, 3)
    ```
    """

    def __init__(self, backbone, image_size=32, filters=(64, 32), preprocessor=None, **kwargs):
        if not isinstance(backbone, TextToImageBackbone):
            raise ValueError(f"backbone must be a TextToImageBackbone, got {type(backbone).__name__}.")
        filters = list(filters) if isinstance(filters, (list, tuple)) else filters
        if not filters or not isinstance(filters, list) or any(
            isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters
        ):
            raise ValueError(f"filters must be a non-empty list of positive ints, got {filters!r}.")
        image_size = image_pair(image_size)
        factor = 2 ** len(filters)
        if any(s < 1 or s % factor for s in image_size):
            raise ValueError(
                f"image_size {image_size} must be divisible by the decoder's upsampling factor {factor} "
                f"(2 ** len(filters), with {len(filters)} upsampling stages)."
            )
        grid = (image_size[0] // factor, image_size[1] // factor, filters[0])

        # === Layers ===
        # The decoder follows the backbone's dtype policy (so a reloaded model is still mixed
        # precision); the output pixels are computed in float32.
        policy = backbone.dtype_policy
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.grid_dense = keras.layers.Dense(math.prod(grid), activation="relu", dtype=policy, name="grid_dense")
        self.grid_reshape = keras.layers.Reshape(grid, dtype=policy, name="grid")
        self.upsamplings = [
            keras.layers.UpSampling2D(2, dtype=policy, name=f"upsample_{i}") for i in range(len(filters))
        ]
        self.convs = [
            keras.layers.Conv2D(f, 3, padding="same", dtype=policy, name=f"conv_{i}") for i, f in enumerate(filters)
        ]
        # Batch, not group or instance, normalisation: those rescale each example on its own,
        # which erases the per-example activation magnitudes that carry the text condition
        # (on shapes, group norm learnt colours several times slower). Momentum 0.9, not
        # 0.99: the moving statistics `generate` uses must keep up in short trainings.
        self.norms = [
            keras.layers.BatchNormalization(momentum=0.9, synchronized=True, dtype=policy, name=f"norm_{i}") for i in range(len(filters))
        ]
        self.relus = [keras.layers.ReLU(dtype=policy, name=f"relu_{i}") for i in range(len(filters))]
        self.pixels = keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid", dtype="float32", name="pixels")

        # === Functional Model ===
        inputs = dict(backbone.input)
        x = self.grid_reshape(self.grid_dense(backbone(inputs)))
        for upsample, conv, norm, relu in zip(self.upsamplings, self.convs, self.norms, self.relus):
            x = relu(norm(conv(upsample(x))))
        outputs = self.pixels(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.image_size = image_size
        self.filters = filters

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """`keras.Model.compile` with defaults: Adam(1e-3), mean squared error over pixels, MAE."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if loss == "auto":
            loss = keras.losses.MeanSquaredError()
        if metrics == "auto":
            metrics = [keras.metrics.MeanAbsoluteError(name="mae")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def generate(self, texts, batch_size=256):
        """float32 images `[N, H, W, 3]` in [0, 1] for raw strings (a single string gives N = 1)."""
        if self.preprocessor is None:
            raise ValueError("generate() needs the model's preprocessor to tokenise text; call the model on ids.")
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        elif isinstance(texts, tf.Tensor):
            texts = texts.numpy()
        texts = np.asarray(texts, dtype=object) if isinstance(texts, (list, tuple)) else np.asarray(texts)
        if texts.ndim != 1:
            raise ValueError(f"generate() takes a string or a 1-D batch of strings, got shape {texts.shape}.")
        if len(texts) == 0:
            raise ValueError("Nothing to generate: the text batch is empty.")
        bad = [t for t in texts.tolist() if not isinstance(t, (str, bytes))]
        if bad:
            raise ValueError(f"Text must be strings, got {type(bad[0]).__name__} values such as {bad[0]!r}.")
        images = self.predict({"text": texts.astype(object)}, batch_size=batch_size, verbose=0)
        return np.asarray(images, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": self.image_size, "filters": self.filters})
        return config
