"""Text-to-image: a text encoder conditions a small upsampling convolutional decoder."""

import math

import keras
import numpy as np
import tensorflow as tf

from kerasmm import validation
from kerasmm.models.backbone_parts import image_pair
from kerasmm.models.text_to_image.text_to_image_backbone import TextToImageBackbone
from kerasmm.models.text_to_image.text_to_image_preprocessor import TextToImagePreprocessor
from kerasmm.models.task import ZooTask


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

    # What keras-hub's `from_preset` builds this task from.
    backbone_cls = TextToImageBackbone
    preprocessor_cls = TextToImagePreprocessor

    def __init__(self, backbone, image_size=32, filters=(64, 32), preprocessor=None, **kwargs):
        if not isinstance(backbone, TextToImageBackbone):
            raise ValueError(f"backbone must be a TextToImageBackbone, got {type(backbone).__name__}.")
        filters = validation.positive_ints("filters", filters)
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
            keras.layers.BatchNormalization(momentum=0.9, synchronized=True, dtype=policy, name=f"norm_{i}")
            for i in range(len(filters))
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

    # --- serving (kerasmm.export) ---------------------------------------------------

    serving_family = "text_to_image"

    def serving_signatures(self, module, staging, *, sample_rate=16000, sampler=None, max_length=None, num_beams=4,
                           scores=True, jit_compile=False, prompted=False):
        """Raw-input serving signatures for `kerasmm.export` (see `ZooTask.serving_signatures`).

        `serving_default(text)` → `images`, `png_bytes` (see
        `kerasmm.models.text_to_image.text_to_image_serving`).
        """
        from kerasmm.models.text_to_image import text_to_image_serving  # imports kerasmm.export, only when exporting

        return text_to_image_serving.serving_signatures(self, module, staging, sample_rate)

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": self.image_size, "filters": self.filters})
        return config
