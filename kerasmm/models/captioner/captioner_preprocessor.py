"""The captioner's preprocessor: raw images/audio + caption strings → teacher-forcing batches."""

import keras
import keras_hub
import tensorflow as tf

from kerasmm import validation
from kerasmm.models.multimodal_preprocessor import MultimodalPreprocessor

CONTEXT_MODALITIES = ("image", "audio")
# The raw features that hold text rather than context: a caption and a prompt.
TEXT_FEATURES = ("text", "prompt")
PROMPT_FEATURES = TEXT_FEATURES


@keras.saving.register_keras_serializable(package="kerasmm")
class CaptionerPreprocessor(MultimodalPreprocessor):
    """Raw `(features, captions)` → `({context..., "tokens"}, next_tokens, weights)`.

    `features` holds the context: `"image"` pixels and/or `"audio"`
    waveforms (a missing one is zero-filled and masked, as in
    `MultimodalPreprocessor`). Captions are strings, given as the targets
    (the readers' layout) or as `features["text"]`. Each caption becomes
    `[START] ids… [END]` padded to `sequence_length + 1`; the model reads the
    first `sequence_length` ids as `"tokens"` and learns to predict the last
    `sequence_length`, weighted 1 on real tokens and 0 on padding. Without
    captions, `"tokens"` holds only the start token.

    A `features["prompt"]` of strings `[B]` is text the caption continues:
    with captions, each row becomes `[START] prompt… caption… [END]` and the
    prompt's positions weigh 0 (the loss is the continuation's, as in a
    prefix language model); without, `"tokens"` holds `[START] prompt…`,
    which `Captioner.generate` keeps and continues. With
    `prompt_feature="text"` the prompt is `features["text"]` (a question, in
    the layout of the VQA readers) and the captions (answers) are the targets.

    With a prompt (or captions) and no context feature at all, every
    context modality is absent: text alone.

    Args:
        modalities: context modalities, a subset of ("image", "audio").
        tokenizer: a keras_hub tokenizer whose vocabulary has `start_token`
            and `end_token`.
        sequence_length: int, decoder positions (the longest caption + 1).
        image_size, audio_length: as in `MultimodalPreprocessor`.
        start_token, end_token: str, the tokens that open and close a caption.
        prompt_feature: "prompt" or "text", the feature holding the prompt.

    Example:
    ```python
    import keras_hub, numpy as np
    from kerasmm.models import CaptionerPreprocessor
    from kerasmm.data import shapes_vocabulary
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=shapes_vocabulary(), lowercase=True)
    preprocessor = CaptionerPreprocessor(["image"], tokenizer, sequence_length=8, image_size=(32, 32))
    x, y, weights = preprocessor({"image": np.zeros((2, 32, 32, 3), "uint8")},
                                 np.array(["a red circle", "a small blue square"]))
    ```
    """

    def __init__(
        self,
        modalities,
        tokenizer,
        sequence_length,
        image_size=None,
        audio_length=None,
        start_token="[START]",
        end_token="[END]",
        prompt_feature="prompt",
        **kwargs,
    ):
        modalities = list(modalities)
        validation.one_of("prompt_feature", prompt_feature, PROMPT_FEATURES)
        if not modalities or any(m not in CONTEXT_MODALITIES for m in modalities):
            raise ValueError(
                f"A captioner's context modalities must be a non-empty subset of {list(CONTEXT_MODALITIES)}, "
                f"got {modalities}."
            )
        if tokenizer is None or not sequence_length:
            raise ValueError("A captioner needs a tokenizer and a sequence_length (decoder positions).")
        super().__init__(
            modalities=modalities,
            tokenizer=tokenizer,
            sequence_length=sequence_length,
            image_size=image_size,
            audio_length=audio_length,
            **kwargs,
        )
        self.start_token = start_token
        self.end_token = end_token
        self.prompt_feature = prompt_feature
        if getattr(tokenizer, "vocabulary", None) is not None:
            self.start_id, self.end_id  # a vocabulary without them fails now, not at the first batch

    # The vocabulary of a tokenizer loaded from a `.keras` file arrives after construction,
    # so the special ids (and the packer that needs them) are looked up on use.
    @property
    def start_id(self):
        return self._token_id(self.start_token)

    @property
    def end_id(self):
        return self._token_id(self.end_token)

    def _token_id(self, token):
        token_id = self.tokenizer.token_to_id(token) if token in self.tokenizer.get_vocabulary() else None
        if token_id is None:
            raise ValueError(f"The captioner's vocabulary has no {token!r} token; add it to the reserved tokens.")
        return token_id

    def call(self, x, y=None, sample_weight=None):
        if not isinstance(x, dict):
            raise ValueError(
                f"The captioner expects a dict of raw features with keys among {self.modalities}, "
                f"got {type(x).__name__}."
            )
        prompts = x.get(self.prompt_feature)
        captions = None if self.prompt_feature == "text" else x.get("text")
        if captions is None and y is not None:
            captions = y
        context = {k: v for k, v in x.items() if k not in TEXT_FEATURES}
        text = prompts if prompts is not None else captions
        if text is not None and not any(m in context for m in self.modalities):
            features = self.no_context(tf.shape(_strings(text, "Prompts" if prompts is not None else "Captions"))[0])
        else:
            features = super().call(context)
        if captions is None:
            if prompts is not None:
                features["tokens"] = self.prompt_ids(prompts)
                return features
            batch = tf.shape(features[f"{self.modalities[0]}_mask"])[0]
            features["tokens"] = tf.pad(tf.fill((batch, 1), self.start_id), [[0, 0], [0, self.sequence_length - 1]])
            return features
        ids = self.caption_ids(captions, prompts)
        features["tokens"] = ids[:, :-1]
        next_tokens = ids[:, 1:]
        weights = tf.cast(next_tokens != 0, "float32")
        if prompts is not None:  # a prefix language model: the prompt is given, only its continuation is learned
            prompt_lengths = tf.cast(self.token_ids(prompts, "Prompts").row_lengths(), "int32")
            weights *= tf.cast(tf.range(tf.shape(next_tokens)[1])[None, :] >= prompt_lengths[:, None], "float32")
        if sample_weight is not None:
            weights *= tf.reshape(tf.cast(sample_weight, "float32"), (-1, 1))
        return features, next_tokens, weights

    def no_context(self, batch):
        """Features of `batch` examples with every context modality absent (zero-filled, masked)."""
        features = {}
        for m in self.modalities:
            features[m] = self._placeholder(m, batch)
            features[f"{m}_mask"] = tf.zeros((batch,))
        return features

    def caption_ids(self, captions, prompts=None):
        """`[B, sequence_length + 1]` int32 ids of `[START] prompt caption [END]`, padded (and cut) to length."""
        pieces = self.token_ids(captions, "Captions")
        if prompts is not None:
            pieces = tf.concat([self.token_ids(prompts, "Prompts"), pieces], axis=1)
        return self._pack(pieces, self.sequence_length + 1, self.end_id)

    def prompt_ids(self, prompts):
        """`[B, sequence_length]` int32 ids of `[START] prompt`, padded with 0 (and cut) to length."""
        return self._pack(self.token_ids(prompts, "Prompts"), self.sequence_length, None)

    def token_ids(self, texts, what="Texts"):
        """A `tf.RaggedTensor` `[B, None]` of each text's ids (no start or end token).

        keras_hub tokenizers called eagerly return Python lists; this is the
        ragged tensor either way, so prompt and caption ids can be joined.
        """
        ids = self.tokenizer(_strings(texts, what))
        return ids if isinstance(ids, tf.RaggedTensor) else tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1)

    def _pack(self, pieces, length, end_id):
        packer = keras_hub.layers.StartEndPacker(
            sequence_length=length, start_value=self.start_id, end_value=end_id, pad_value=0,
            return_padding_mask=False,
        )
        return tf.cast(packer(pieces), "int32")

    def get_config(self):
        config = super().get_config()
        for key in ("presence_masks", "text_from_targets"):
            config.pop(key, None)
        config.update({"start_token": self.start_token, "end_token": self.end_token,
                       "prompt_feature": self.prompt_feature})
        return config


def _strings(values, what):
    """`values` as a `[B]` string tensor (a `[B, 1]` column is squeezed); a clear error otherwise."""
    values = tf.convert_to_tensor(values)
    if values.dtype != tf.string:
        raise ValueError(f"{what} must be strings, got dtype {values.dtype.name}.")
    if values.shape.rank == 2 and values.shape[-1] == 1:
        values = tf.squeeze(values, -1)
    if values.shape.rank != 1:
        raise ValueError(f"{what} must be a [batch] vector of strings, got shape {values.shape}.")
    return values
