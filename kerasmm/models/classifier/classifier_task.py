"""Multimodal classifiers: backbone (encoders → fusion) → classification head."""

import keras

from kerasmm import validation
from kerasmm.models.classifier.classifier_backbone import MultimodalBackbone
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor
from kerasmm.models.task import ZooTask


@keras.saving.register_keras_serializable(package="kerasmm")
class MultimodalClassifier(ZooTask):
    """Classifies examples from any mix of image, text and audio.

    `fit`, `evaluate` and `predict` take raw features (pixels, strings,
    waveforms) and run `preprocessor` inside tf.data; calling the model
    directly takes preprocessed inputs (see `MultimodalBackbone`).

    Args:
        backbone: a `MultimodalBackbone`.
        num_classes: int.
        preprocessor: a `MultimodalPreprocessor`, or None to feed
            preprocessed inputs.
        hidden_dim: optional int, a ReLU hidden layer before the output.
        dropout: float, dropout before the output layer.
        activation: None (logits) or "softmax".
        class_names: optional list of `num_classes` label names.

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_weighted_sum_classifier")
    data = kerasmm.data.shapes(num_examples=32, batch_size=16)
    model.fit(data, epochs=1)
    model.predict(data)
    ```
    """

    # What keras-hub's `from_preset` builds this task from.
    backbone_cls = MultimodalBackbone
    preprocessor_cls = MultimodalPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        hidden_dim=None,
        dropout=0.1,
        activation=None,
        class_names=None,
        **kwargs,
    ):
        if not isinstance(backbone, MultimodalBackbone):
            raise ValueError(f"backbone must be a MultimodalBackbone, got {type(backbone).__name__}.")
        num_classes = validation.int_at_least("num_classes", num_classes, 2)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != num_classes:
                raise ValueError(f"{len(class_names)} class_names given for num_classes={num_classes}.")
        if activation not in (None, "softmax"):
            raise ValueError(f"activation must be None (logits) or 'softmax', got {activation!r}.")

        # === Layers ===
        # The head follows the backbone's dtype policy (so a reloaded model is still mixed precision),
        # but the logits (and softmax) are computed in float32.
        policy = backbone.dtype_policy
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.hidden = (
            keras.layers.Dense(hidden_dim, activation="relu", dtype=policy, name="hidden") if hidden_dim else None
        )
        self.output_dropout = keras.layers.Dropout(dropout, dtype=policy, name="output_dropout")
        self.output_dense = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name="logits")

        # === Functional Model ===
        inputs = dict(backbone.input)
        x = backbone(inputs)
        if self.hidden is not None:
            x = self.hidden(x)
        outputs = self.output_dense(self.output_dropout(x))
        self.activation = activation  # read by the default compile() inside Task.__init__
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.class_names = class_names

    def fit(self, x=None, *args, **kwargs):
        self.check_classes(x, "training data")
        self.check_classes(kwargs.get("validation_data"), "validation data")
        return super().fit(x, *args, **kwargs)

    def check_classes(self, data, what="data"):
        """A ValueError when `data` (a kerasmm reader's dataset) names more classes than the head has.

        Without it the first training step fails inside the graph, on a label beyond the logits.
        """
        names = getattr(data, "class_names", None)
        if names and len(names) > self.num_classes:
            shown = ", ".join(str(n) for n in list(names)[:5]) + (", ..." if len(names) > 5 else "")
            raise ValueError(
                f"The {what} have {len(names)} classes ({shown}) but this model's head has {self.num_classes}: "
                f"build the model for the data, kerasmm.zoo.get(name, data=train_ds), or with "
                f"num_classes={len(names)}."
            )

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """`keras.Model.compile` with defaults: Adam(1e-3), sparse cross-entropy, accuracy."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=self.activation is None)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # --- serving (kerasmm.export) ---------------------------------------------------

    serving_family = "classifier"

    def serving_signatures(self, module, staging, *, sample_rate=16000, sampler=None, max_length=None, num_beams=4,
                           scores=True, jit_compile=False):
        """Raw-input serving signatures for `kerasmm.export` (see `ZooTask.serving_signatures`).

        `serving_default(image_bytes, text, [audio_bytes])` → `probabilities`, `label`, `label_id`,
        `class_names` (see `kerasmm.models.classifier.classifier_serving`).
        """
        from kerasmm.models.classifier import classifier_serving  # imports kerasmm.export, only when exporting

        return classifier_serving.serving_signatures(self, module, staging, sample_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
                "activation": self.activation,
                "class_names": self.class_names,
            }
        )
        return config
