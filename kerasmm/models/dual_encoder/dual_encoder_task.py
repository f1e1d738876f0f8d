"""Dual encoders (CLIP / SigLIP style): two towers into one normalised embedding space."""

import math

import keras
import numpy as np

from kerasmm import validation
from kerasmm.models.dual_encoder.dual_encoder_backbone import DualEncoderBackbone
from kerasmm.models.dual_encoder.dual_encoder_preprocessor import PretrainedDualEncoderPreprocessor
from kerasmm.models.dual_encoder.pretrained_dual_encoder_backbone import PretrainedDualEncoderBackbone
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor
from kerasmm.models.task import ZooTask
from kerasmm.losses import contrastive
from kerasmm.metrics import RetrievalMetrics

CLIP_LOGIT_SCALE = math.log(1 / 0.07)
DEFAULT_TEMPLATES = ("a photo of a {}.", "a {}.")


@keras.saving.register_keras_serializable(package="kerasmm")
class DualEncoder(ZooTask):
    """A CLIP-style (or SigLIP-style) retriever trained contrastively with `fit`.

    The loss sees the whole global batch under any `tf.distribute` strategy
    (see `kerasmm.losses.contrastive`). `fit`, `evaluate` and `predict` take
    raw features; a captioning reader's string targets become the text.

    Args:
        backbone: a `DualEncoderBackbone`.
        preprocessor: a `MultimodalPreprocessor` (with `presence_masks=False`).
        loss: "contrastive" (symmetric InfoNCE with a learnable temperature,
            initialised at log(1/0.07) and used clamped to at most ln 100),
            "sigmoid" (SigLIP: pairwise sigmoid with a learnable bias), or
            "alignment" (mean squared distance of pairs, no negatives).
        logit_scale: initial log of the inverse temperature.
        logit_bias: initial bias of the sigmoid loss.
        retrieval_capacity: rows `evaluate` can rank at once. `evaluate`
            reports recall@1/5/10 both ways and mean/median ranks over the
            whole evaluation set (see `kerasmm.metrics.RetrievalMetrics`).
        retrieval_groups: "rows" (each row is its own pair; integer targets
            such as class labels are ignored) or "targets" (integer targets
            are image ids, e.g. `from_coco(captions="all", target="image_id")`:
            every caption of an image counts as its match).

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_dual_encoder")
    model.fit(kerasmm.data.shapes(num_examples=32, batch_size=16), epochs=1)
    text = model.encode_text(["a small red circle"])
    ```
    """

    # What keras-hub's `from_preset` builds this task from.
    backbone_cls = DualEncoderBackbone
    preprocessor_cls = MultimodalPreprocessor

    def __init__(self, backbone, preprocessor=None, loss="contrastive", logit_scale=CLIP_LOGIT_SCALE,
                 logit_bias=-10.0, retrieval_capacity=10000, retrieval_groups="rows", **kwargs):
        if not isinstance(backbone, self.backbone_cls):
            raise ValueError(f"backbone must be a {self.backbone_cls.__name__}, got {type(backbone).__name__}.")
        validation.one_of("retrieval_groups", retrieval_groups, ("rows", "targets"))
        validation.one_of("loss", loss, contrastive.LOSSES)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = dict(backbone.input)
        outputs = backbone(inputs)
        self.contrastive_loss = loss  # read by compile() inside Task.__init__
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # float32 under any dtype policy: exp(logit_scale) multiplies every similarity.
        self.logit_scale_variable = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(logit_scale), dtype="float32", name="logit_scale"
        )
        self.logit_bias_variable = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(logit_bias), dtype="float32", name="logit_bias",
            trainable=loss == "sigmoid",
        )
        # Updated by compute_metrics while evaluating: Keras gives a compiled
        # metric one output tensor, and retrieval needs both towers.
        self.retrieval_metrics = RetrievalMetrics(
            capacity=retrieval_capacity, embedding_dim=backbone.embedding_dim,
            query_key=f"{backbone.query_modality}_embedding", gallery_key="text_embedding",
            group_key="rows" if retrieval_groups == "rows" else None,
        )

        # === Config ===
        self.logit_scale = logit_scale
        self.logit_bias = logit_bias
        self.retrieval_capacity = retrieval_capacity
        self.retrieval_groups = retrieval_groups

    @property
    def query_modality(self):
        return self.backbone.query_modality

    def compile(self, optimizer="auto", **kwargs):
        """`keras.Model.compile`; the loss is the dual-encoder loss chosen at construction."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        kwargs.pop("loss", None)
        super().compile(optimizer=optimizer, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        query = y_pred[f"{self.query_modality}_embedding"]
        text = y_pred["text_embedding"]
        names = (self.query_modality, "text")
        if self.contrastive_loss == "contrastive":
            value = contrastive.info_nce(query, text, self.logit_scale_variable, names)
        elif self.contrastive_loss == "sigmoid":
            value = contrastive.sigmoid_loss(query, text, self.logit_scale_variable, self.logit_bias_variable, names)
        else:
            value = contrastive.alignment_loss(query, text, names)
        # Regularisers and `add_loss` terms, summed in float32 as Keras' own `compute_loss` does.
        extra = [keras.ops.sum(keras.ops.cast(loss, "float32")) for loss in self.losses]
        return contrastive.replica_share(value + sum(extra) if extra else value)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        evaluating = self.evaluating
        if evaluating:
            self.retrieval_metrics.update_state(y, y_pred, sample_weight)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if not evaluating:  # training steps neither collect rows nor log the (empty) scores
            logs = {k: v for k, v in logs.items() if k not in self.retrieval_metrics.result_keys}
        return logs

    # --- inference helpers (raw inputs in, numpy out) --------------------------

    def tower(self, modality):
        """The functional sub-model preprocessed `modality` input → its unit-length embedding."""
        # Cached outside Keras' attribute tracking, so the sub-models are not saved.
        towers = self.__dict__.setdefault("_tower_cache", {})
        if modality not in towers:
            inputs = self.backbone.input[modality]
            towers[modality] = keras.Model(inputs, self.backbone.get_layer(f"{modality}_normalization").output)
        return towers[modality]

    def _encode(self, modality, raw, batch_size, verbose="auto"):
        raw = np.asarray(raw) if not hasattr(raw, "shape") else raw
        if len(raw) == 0:
            raise ValueError(f"Nothing to encode: the {modality} batch is empty.")
        batch_size = validation.positive_int("batch_size", batch_size)
        verbose = validation.one_of("verbose", verbose, (0, 1, "auto"))
        if verbose == "auto":  # a bar only where there is more than one batch to wait for
            verbose = int(len(raw) > batch_size)
        prepared = self.preprocessor.prepare(modality, raw) if self.preprocessor is not None else raw
        return self.tower(modality).predict(prepared, batch_size=batch_size, verbose=verbose)

    def encode_text(self, texts, batch_size=256, verbose="auto"):
        """Unit-length embeddings `[N, E]` of raw strings.

        `verbose`: 1 shows Keras' progress bar, 0 none, "auto" one when
        there is more than one batch (the same for `encode_image` and
        `encode_audio`).
        """
        return self._encode("text", texts, batch_size, verbose)

    def encode_image(self, images, batch_size=256, verbose="auto"):
        """Unit-length embeddings `[N, E]` of raw images (uint8 `[N,H,W,3]`)."""
        return self._encode("image", images, batch_size, verbose)

    def encode_audio(self, waveforms, batch_size=256, verbose="auto"):
        """Unit-length embeddings `[N, E]` of raw waveforms `[N, S]`."""
        return self._encode("audio", waveforms, batch_size, verbose)

    def class_embeddings(self, class_names, templates=DEFAULT_TEMPLATES):
        """One unit vector per class: the mean of its prompt embeddings ("a photo of a {}."), renormalised."""
        if not class_names:
            raise ValueError("class_names is empty.")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"Each template needs a '{{}}' for the class name; got {templates!r}.")
        prompts = [t.format(name) for name in class_names for t in templates]
        embeddings = self.encode_text(prompts, verbose=0).reshape(len(class_names), len(templates), -1).mean(axis=1)
        return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)

    def classify(self, inputs, class_names, templates=DEFAULT_TEMPLATES):
        """Zero-shot class probabilities `[N, C]` of raw images (or audio) against `class_names`."""
        queries = self._encode(self.query_modality, inputs, 256, verbose=0)
        scale = float(np.exp(min(float(self.logit_scale_variable.numpy()), contrastive.MAX_LOGIT_SCALE)))
        logits = scale * queries @ self.class_embeddings(class_names, templates).T
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    # --- serving (kerasmm.export) ---------------------------------------------------

    serving_family = "dual_encoder"

    def serving_signatures(self, module, staging, *, sample_rate=16000, sampler=None, max_length=None, num_beams=4,
                           scores=True, jit_compile=False, prompted=False):
        """Raw-input serving signatures for `kerasmm.export` (see `ZooTask.serving_signatures`).

        `encode_<query>`, `encode_text` → `embedding`; `score` (= `serving_default`) →
        `similarity`, `logits`, `probabilities`; the towers are `tower`'s (see
        `kerasmm.models.dual_encoder.dual_encoder_serving`).
        """
        from kerasmm.models.dual_encoder import dual_encoder_serving  # imports kerasmm.export, only when exporting

        return dual_encoder_serving.serving_signatures(self, module, staging, sample_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "loss": self.contrastive_loss,
                "logit_scale": self.logit_scale,
                "logit_bias": self.logit_bias,
                "retrieval_capacity": self.retrieval_capacity,
                "retrieval_groups": self.retrieval_groups,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasmm")
class PretrainedDualEncoder(DualEncoder):
    """A `DualEncoder` on a whole pretrained CLIP or SigLIP model (`PretrainedDualEncoderBackbone`).

    Everything of `DualEncoder` applies: `encode_image` / `encode_text`,
    zero-shot `classify`, recall@K in `evaluate`, fine-tuning with the
    global-batch losses and raw-bytes export. Built by the zoo entries
    `clip` and `siglip` with the pretrained logit scale (and bias).

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_clip")          # kerasmm.zoo.get("clip", preset=...) for real weights
    model.classify(kerasmm.data.shapes_arrays(num_examples=2)[0]["image"], ["circle", "square"])
    ```
    """

    backbone_cls = PretrainedDualEncoderBackbone
    preprocessor_cls = PretrainedDualEncoderPreprocessor
