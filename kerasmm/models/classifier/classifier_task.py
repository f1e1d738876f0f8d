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
        modality_loss_weight: float. When above 0 and the backbone has
            several modalities, each modality's pooled encoding also gets its
            own output layer during training, and the loss adds this weight
            times their cross-entropies. Every encoder must then classify on
            its own, so the fused model cannot lean on the modality that fits
            the training set fastest and neglect the others (Wang et al.,
            "What Makes Training Multi-modal Classification Networks Hard?",
            2020). Prediction uses the fused output only.

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
        modality_loss_weight=0.0,
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
        modality_loss_weight = validation.non_negative_number("modality_loss_weight", modality_loss_weight)
        modalities = list(backbone.modality_features) if modality_loss_weight and len(
            backbone.modality_features) > 1 else []

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
        self.modality_heads = {
            m: keras.layers.Dense(num_classes, activation=activation, dtype="float32", name=f"{m}_logits")
            for m in modalities
        }

        # === Functional Model ===
        inputs = dict(backbone.input)
        if modalities:
            # The backbone's own graph with each modality's encoding as an output too: one pass gives both.
            encoded = keras.Model(backbone.input, {"fused": backbone.output, **backbone.modality_features},
                                  name="backbone_with_modalities")(inputs)
            x = encoded["fused"]
        else:
            x = backbone(inputs)
        if self.hidden is not None:
            x = self.hidden(x)
        outputs = self.output_dense(self.output_dropout(x))
        # What `call` returns while training: the fused output and each modality's own.
        self._training_graph = keras.Model(
            inputs, {"fused": outputs, **{m: self.modality_heads[m](encoded[m]) for m in modalities}}
        ) if modalities else None
        self.activation = activation  # read by the default compile() inside Task.__init__
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.class_names = class_names
        self.modality_loss_weight = modality_loss_weight

    def call(self, inputs, training=None, mask=None):
        if training and self._training_graph is not None:
            return self._training_graph(inputs, training=True)
        return super().call(inputs, training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        loss = super().compute_loss(x, y, y_pred["fused"], sample_weight, training)
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=self.activation is None)
        for m in self.modality_heads:
            loss = loss + self.modality_loss_weight * keras.ops.cast(
                cross_entropy(y, y_pred[m], sample_weight=sample_weight), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred["fused"] if isinstance(y_pred, dict) else y_pred, sample_weight)

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
            raise ValueError(
                f"The {what} have {len(names)} classes ({validation.preview(names)}) but this model's head has "
                f"{self.num_classes}: "
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
                           scores=True, jit_compile=False, prompted=False):
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
                "modality_loss_weight": self.modality_loss_weight,
            }
        )
        return config
