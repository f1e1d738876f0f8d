"""Generative question answering: the question is the decoder's prompt, the answer is what it writes next."""

import keras

from kerasmm.metrics.answer import VQAAccuracy, answer_normalisation
from kerasmm.models.captioner.captioner_task import Captioner


@keras.saving.register_keras_serializable(package="kerasmm")
class GenerativeVQA(Captioner):
    """Answers free-form questions about images (and/or audio) by generating the answer.

    A `Captioner` whose preprocessor reads the question from `features["text"]`
    (`CaptionerPreprocessor(prompt_feature="text")`, the layout of the VQA
    readers) and learns the answer targets as its continuation: a prefix
    language model whose loss covers only the answer. Unlike a VQA
    classifier, the answers are not a fixed list. `evaluate` generates
    greedily after each question and reports `vqa_accuracy` (normalised
    exact match, min(1, matches / 3) against several human answers; see
    `kerasmm.metrics.VQAAccuracy`) beside the loss. Exported, it answers
    `(image_bytes, question)` with answer strings.

    Args:
        backbone, preprocessor, and the other arguments: as `Captioner`.
        normalisation: `{"ignore_ids", "equivalent_ids"}` for the VQA
            accuracy; default `kerasmm.metrics.answer_normalisation` of the
            preprocessor's vocabulary.

    Example:
    ```python
    import kerasmm
    model = kerasmm.zoo.get("tiny_generative_vqa")
    data = kerasmm.data.shapes(num_examples=8, batch_size=4, task="vqa", answers="text")
    model.fit(data, epochs=1)
    features, _ = next(iter(data))
    model.answer(features["image"], ["what colour is the circle ?"] * 4)   # a list of answer strings
    ```
    """

    def __init__(self, backbone, preprocessor=None, normalisation=None, **kwargs):
        # Kept in the config (like the start and end ids): a loaded model builds its metric before its
        # tokenizer's vocabulary asset is read.
        if normalisation is None and preprocessor is not None:
            normalisation = answer_normalisation(preprocessor.tokenizer.get_vocabulary())
        self.normalisation = normalisation
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)

    def _default_caption_metrics(self):
        if self.end_id is None:
            return []
        normalisation = self.normalisation or {}
        ignore = sorted({0, self.start_id, *normalisation.get("ignore_ids", ())})
        return [VQAAccuracy(end_id=self.end_id, ignore_ids=ignore,
                            equivalent_ids=normalisation.get("equivalent_ids", ()))]

    def get_config(self):
        config = super().get_config()
        config["normalisation"] = self.normalisation
        return config

    def answer(self, inputs, questions=None, **generate_options):
        """Answer strings, one per row: what the model writes after each question.

        Args:
            inputs: images `[B, H, W, 3]`, a dict of raw context features
                (with the questions as `"text"` when `questions` is None), or
                a `tf.data.Dataset` of such batches.
            questions: one question string for every row, or a list of one
                per row.
            **generate_options: as `Captioner.generate` (`sampler`,
                `max_length`, `num_beams`, ...).

        Example:
        ```python
        model.answer(images, "how many shapes are there ?")   # ["two", "one", ...]
        ```
        """
        if "prompt" in generate_options or "include_prompt" in generate_options:
            raise ValueError("answer() takes the question as `questions` (or the inputs' \"text\"), not `prompt`.")
        return self.generate(inputs, prompt=questions, include_prompt=False, **generate_options)

    def serving_signatures(self, module, staging, *, sample_rate=16000, sampler=None, max_length=None, num_beams=4,
                           scores=True, jit_compile=False, prompted=False):
        """`serving_default(image_bytes, [audio_bytes], question)` → `answers`, `scores` (see `ZooTask`)."""
        from kerasmm.models.captioner import captioner_serving  # imports kerasmm.export, only when exporting

        return captioner_serving.serving_signatures(
            self, module, staging, sample_rate, sampler=sampler, max_length=max_length, num_beams=num_beams,
            scores=scores, jit_compile=jit_compile, answers=True,
        )
