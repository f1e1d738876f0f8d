"""Dual encoders (CLIP / SigLIP style): two towers into one normalised embedding space."""

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from kerasmm import validation
from kerasmm.models.dual_encoder.dual_encoder_backbone import DualEncoderBackbone
from kerasmm.models.dual_encoder.dual_encoder_matching import MatchingBuffer
from kerasmm.models.dual_encoder.dual_encoder_preprocessor import PretrainedDualEncoderPreprocessor
from kerasmm.models.dual_encoder.pretrained_dual_encoder_backbone import PretrainedDualEncoderBackbone
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor
from kerasmm.models.task import ZooTask
from kerasmm.losses import contrastive
from kerasmm.metrics import RetrievalMetrics, reranked_retrieval_scores

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
        matching_weight: float >= 0, the weight of the image–text matching
            loss beside the contrastive one (for a backbone with a matching
            head, `matching_layers > 0`): binary cross-entropy of the head's
            logit for each pair (a match) and for its hardest negatives in the
            global batch's similarity matrix, both ways (no match).
        matching_negatives: positive int, hard negatives each way per pair:
            a text's most similar other images, an image's most similar other
            texts; rows with the same caption tokens are never negatives of
            each other.
        matching_swaps: int >= 0, negatives per pair made from its own
            caption with two of its tokens swapped ("a red circle above a
            blue square" → "a blue circle above a red square"), for the
            head to learn which word goes where: word-order hard negatives,
            as in NegCLIP. A swap of two equal tokens is no negative.
        rerank_candidates: int, with a matching head `evaluate` also reports
            `reranked_text_to_image_recall@K`: each caption's top
            `rerank_candidates` images re-ranked by the head.
        rerank_capacity: int, the most rows whose tokens `evaluate` keeps for
            that (about 4 x (T x D + N x Di) bytes a row); a larger evaluation
            reports no re-ranked recalls, with a warning.

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_dual_encoder")
    model.fit(kerasmm.data.shapes(num_examples=32, batch_size=16), epochs=1)
    text = model.encode_text(["a small red circle"])
    matcher = kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1)   # with an image–text matching head
    images = kerasmm.data.shapes_arrays(num_examples=2)[0]["image"]
    matcher.match(["a small red circle", "a large blue square"], images)   # match logits [2]
    ```
    """

    # What keras-hub's `from_preset` builds this task from.
    backbone_cls = DualEncoderBackbone
    preprocessor_cls = MultimodalPreprocessor

    def __init__(self, backbone, preprocessor=None, loss="contrastive", logit_scale=CLIP_LOGIT_SCALE,
                 logit_bias=-10.0, retrieval_capacity=10000, retrieval_groups="rows", matching_weight=1.0,
                 matching_negatives=3, matching_swaps=0, rerank_candidates=10, rerank_capacity=2000, **kwargs):
        if not isinstance(backbone, self.backbone_cls):
            raise ValueError(f"backbone must be a {self.backbone_cls.__name__}, got {type(backbone).__name__}.")
        validation.one_of("retrieval_groups", retrieval_groups, ("rows", "targets"))
        validation.one_of("loss", loss, contrastive.LOSSES)
        matching_weight = validation.non_negative_number("matching_weight", matching_weight)
        matching_negatives = validation.positive_int("matching_negatives", matching_negatives)
        matching_swaps = validation.non_negative_int("matching_swaps", matching_swaps)
        rerank_candidates = validation.positive_int("rerank_candidates", rerank_candidates)
        rerank_capacity = validation.positive_int("rerank_capacity", rerank_capacity)
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
        self.matching_buffer = None
        if self.matching_head is not None:
            shapes = [tuple(backbone.output[f"{m}_tokens"].shape[1:]) for m in ("text", "image")]
            if all(None not in shape for shape in shapes):  # else (a dynamic image size): no re-ranked recalls
                self.matching_buffer = MatchingBuffer(rerank_capacity, *shapes)

        # === Config ===
        self.logit_scale = logit_scale
        self.logit_bias = logit_bias
        self.retrieval_capacity = retrieval_capacity
        self.retrieval_groups = retrieval_groups
        self.matching_weight = matching_weight
        self.matching_negatives = matching_negatives
        self.matching_swaps = matching_swaps
        self.swap_seed_generator = keras.random.SeedGenerator(0) if matching_swaps and self.matching_head else None
        self.rerank_candidates = rerank_candidates
        self.rerank_capacity = rerank_capacity

    @property
    def query_modality(self):
        return self.backbone.query_modality

    @property
    def matching_head(self):
        """The backbone's `ImageTextMatchingHead`, or None."""
        return getattr(self.backbone, "matching_head", None)

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
        if self.matching_head is not None and self.matching_weight > 0:
            value = value + self.matching_weight * self._matching_loss(x, y_pred)
        # Regularisers and `add_loss` terms, summed in float32 as Keras' own `compute_loss` does.
        extra = [keras.ops.sum(keras.ops.cast(loss, "float32")) for loss in self.losses]
        return contrastive.replica_share(value + sum(extra) if extra else value)

    def _matching_loss(self, x, y_pred):
        """The matching head's loss: each pair, and its hardest negatives of the global batch both ways."""
        image, text = y_pred["image_embedding"], y_pred["text_embedding"]
        exclude = None
        if isinstance(x, dict) and "text" in x:  # duplicate captions are no negatives of each other
            ids = tf.convert_to_tensor(x["text"])
            global_ids, _ = contrastive.gather_global(ids)
            exclude = tf.reduce_all(tf.equal(ids[:, None, :], global_ids[None, :, :]), axis=-1)
        for_image, for_text, valid = contrastive.hard_negatives(image, text, exclude, self.matching_negatives)
        choices = [(for_image[:, j], for_text[:, j], valid[:, j]) for j in range(self.matching_negatives)]
        tokens, mask, image_tokens = (y_pred[k] for k in ("text_tokens", "text_token_mask", "image_tokens"))
        global_tokens, _ = contrastive.gather_global(tokens)
        global_mask, _ = contrastive.gather_global(mask)
        global_images, _ = contrastive.gather_global(image_tokens)
        global_image, _ = contrastive.gather_global(image)
        global_text, _ = contrastive.gather_global(text)
        head = self.matching_head
        wrong_images, wrong_texts, valids = [], [], []
        take = contrastive.take_rows  # gradients reach the gathered rows of other replicas
        for for_image, for_text, valid in choices:
            other_image, other_text = take(global_image, for_text), take(global_text, for_image)
            wrong_images.append(head(tokens, mask, take(global_images, for_text),
                                     tf.reduce_sum(text * other_image, axis=-1), training=True))
            wrong_texts.append(head(take(global_tokens, for_image), take(global_mask, for_image),
                                    image_tokens, tf.reduce_sum(other_text * image, axis=-1), training=True))
            valids.append(valid)
        swapped, swap_valids = self._swapped_caption_logits(x, image, image_tokens)
        return contrastive.matching_loss(y_pred["match_logit"], wrong_images + wrong_texts + swapped,
                                         valids + valids + swap_valids)

    def _swapped_caption_logits(self, x, image, image_tokens):
        """`(logits, valid)` lists: the head on each pair's caption with two tokens swapped, `matching_swaps` times."""
        if not self.matching_swaps or not (isinstance(x, dict) and "text" in x):
            return [], []
        ids = tf.convert_to_tensor(x["text"])
        backbone = self.backbone
        logits, valids = [], []
        for _ in range(self.matching_swaps):
            swapped, valid = contrastive.swap_two_tokens(ids, self.swap_seed_generator)
            text = backbone.encoder_layers["text"](swapped, training=True)
            similarity = tf.reduce_sum(backbone.embed("text", text) * image, axis=-1)
            logits.append(self.matching_head(text["sequence"], backbone.token_mask(text), image_tokens, similarity,
                                             training=True))
            valids.append(valid)
        return logits, valids

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        evaluating = self.evaluating
        if evaluating:
            self.retrieval_metrics.update_state(y, y_pred, sample_weight)
            if self.matching_buffer is not None:
                self.matching_buffer.update_state(y, y_pred, sample_weight)
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if not evaluating:  # training steps neither collect rows nor log the (empty) scores
            logs = {k: v for k, v in logs.items() if k not in self.retrieval_metrics.result_keys}
        return logs

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`; with a matching head the logs add `reranked_text_to_image_recall@K`.

        Those are the recalls after each caption's `rerank_candidates` most
        similar images are re-ranked by the head (computed once, at the end,
        from the rows' tokens; not shown by the progress bar or callbacks).
        """
        if self.matching_buffer is None:
            return super().evaluate(x, *args, **kwargs)
        return_dict = kwargs.pop("return_dict", False)
        logs = super().evaluate(x, *args, return_dict=True, **kwargs)
        logs.update(self._reranked_scores())
        if return_dict:
            return logs
        names = [m.name for m in self.metrics if m.name in logs]  # Keras' list order: metrics, then sorted keys
        return [logs[k] for k in names + sorted(k for k in logs if k not in names)]

    def _reranked_scores(self):
        metric = self.retrieval_metrics
        rows = int(metric.count.numpy())
        if rows == 0:
            return {}
        if rows > self.rerank_capacity:
            warnings.warn(f"evaluate saw {rows} rows, more than rerank_capacity={self.rerank_capacity}: no "
                          "re-ranked recalls (construct the model with a larger rerank_capacity).", stacklevel=3)
            return {}
        images = metric.query_buffer.numpy()[:rows]
        texts = metric.gallery_buffer.numpy()[:rows]
        groups = metric.group_buffer.numpy()[:rows]
        distinct = np.flatnonzero(metric.first_buffer.numpy()[:rows] > 0.5)
        tokens, mask, image_tokens = self.matching_buffer.rows()

        def rescore(text_rows, image_rows):
            return self._match_logits((tokens, mask, texts), (image_tokens[distinct], images[distinct]),
                                      np.stack([text_rows, image_rows], 1))

        scores = reranked_retrieval_scores(texts, images[distinct], rescore, self.rerank_candidates, groups,
                                           groups[distinct], ks=metric.ks)
        return {f"reranked_text_to_image_recall@{k}": float(scores[f"recall@{k}"]) for k in metric.ks}

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

    def _require_matching_head(self):
        if self.matching_head is None:
            raise ValueError(
                "This dual encoder has no image–text matching head to score pairs or re-rank with; build one "
                "with matching_layers > 0, e.g. kerasmm.zoo.get('dual_encoder', matching_layers=1)."
            )
        return self.matching_head

    def _tokens(self, modality, raw, batch_size):
        """The `modality` tower's tokens (for text, and their mask) and embeddings of raw inputs, as numpy."""
        keys = ["text_tokens", "text_token_mask", "text_embedding"] if modality == "text" else \
            ["image_tokens", "image_embedding"]
        # Cached outside Keras' attribute tracking, as `tower`'s sub-models.
        models = self.__dict__.setdefault("_token_model_cache", {})
        if modality not in models:
            outputs = {key: self.backbone.output[key] for key in keys}
            models[modality] = keras.Model(self.backbone.input[modality], outputs)
        raw = np.asarray(raw) if not hasattr(raw, "shape") else raw
        prepared = self.preprocessor.prepare(modality, raw) if self.preprocessor is not None else raw
        out = models[modality].predict(prepared, batch_size=batch_size, verbose=0)
        return tuple(np.asarray(out[key], np.float32) for key in keys)

    def _match_logits(self, text, image, pairs, batch_size=256):
        """The head's logits of `pairs` given `(tokens, mask, embeddings)` of the texts, `(tokens, embeddings)`
        of the images."""
        head = self._require_matching_head()
        (text_tokens, text_mask, texts), (image_tokens, images) = text, image
        logits = []
        for start in range(0, len(pairs), batch_size):
            t, i = pairs[start: start + batch_size, 0], pairs[start: start + batch_size, 1]
            similarity = np.sum(texts[t] * images[i], axis=-1)
            logits.append(np.asarray(head(text_tokens[t], text_mask[t], image_tokens[i], similarity)))
        return np.concatenate(logits) if logits else np.zeros([0], np.float32)

    def match(self, texts, images, pairs=None, batch_size=256):
        """Match logits of (text, image) pairs from the matching head: positive means "the text describes it".

        Without `pairs`, text i pairs with image i (as many texts as images);
        `pairs` (int `[P, 2]`: text row, image row) scores any pairs, each
        text and image encoded once. Needs a matching head (`matching_layers > 0`).
        Returns float32 `[P]`; `1 / (1 + exp(-logit))` is the match probability.
        """
        self._require_matching_head()
        batch_size = validation.positive_int("batch_size", batch_size)
        texts = [texts] if isinstance(texts, str) else list(texts)
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if not texts or len(images) == 0:
            raise ValueError("Nothing to match: give at least one text and one image.")
        if pairs is None:
            if len(texts) != len(images):
                raise ValueError(f"Got {len(texts)} texts and {len(images)} images; without pairs= text i pairs "
                                 "with image i, so give as many of each.")
            pairs = np.stack([np.arange(len(texts))] * 2, axis=1)
        pairs = np.asarray(pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
            raise ValueError(f"pairs must be integer [P, 2] (text row, image row), got {pairs.dtype} {pairs.shape}.")
        if pairs.size and (pairs.min() < 0 or pairs[:, 0].max() >= len(texts) or pairs[:, 1].max() >= len(images)):
            raise ValueError(f"pairs index past the {len(texts)} texts or {len(images)} images.")
        return self._match_logits(self._tokens("text", texts, batch_size), self._tokens("image", images, batch_size),
                                  pairs, batch_size)

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
                "matching_weight": self.matching_weight,
                "matching_negatives": self.matching_negatives,
                "matching_swaps": self.matching_swaps,
                "rerank_candidates": self.rerank_candidates,
                "rerank_capacity": self.rerank_capacity,
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
