"""Shared base of kerasmm's task models (keras_hub `Task` + restorable compile + multi-worker fit)."""

import keras
import keras_hub
import tensorflow as tf

from kerasmm.backend_compat import MultiWorkerFitFix, flatten_layers, preset_task_class
from kerasmm.data.model_ready import is_model_ready

class ZooTask(MultiWorkerFitFix, keras_hub.models.Task):
    """A keras_hub `Task` whose custom `compile` defaults survive a `.keras` round trip.

    keras_hub tasks override `compile` to supply defaults, which makes Keras
    skip restoring the saved compile settings (and the optimizer state) when a
    `.keras` file is loaded. This base restores them.

    It also makes `fit`, `evaluate` and `predict` work under
    `tf.distribute.MultiWorkerMirroredStrategy` (keras-team/keras#20585, see
    `kerasmm.backend_compat.MultiWorkerFitFix`) and take a `tf.distribute.DistributedDataset` (e.g. from
    `kerasmm.distribute.distribute_dataset`), whose batches go to the model
    as they are: preprocess inside the dataset function.
    """

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """keras-hub's `Task.from_preset`, building the task class the preset saved where it is one of `cls`'s."""
        saved = preset_task_class(preset)
        if saved is not None and saved is not cls and issubclass(saved, cls):
            cls = saved  # keras-hub would take any subclass on the preset's backbone class
        return super(ZooTask, cls).from_preset(preset, load_weights=load_weights, **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    # --- Model-ready input: skip keras_hub's preprocessing pipeline ---------
    # keras_hub's `fit` maps the preprocessor over `x`, which a distributed
    # dataset cannot take (it is not a `tf.data.Dataset`) and which a
    # pipeline that already preprocessed must not get twice. Those go
    # straight to `keras.Model`'s methods; everything else is unchanged.

    def fit(self, x=None, *args, **kwargs):
        self._build_optimizer()
        if isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            # Keras warns that its default shuffle=True does not apply to datasets (they shuffle themselves).
            kwargs.setdefault("shuffle", False)
        if not is_model_ready(x):
            return super().fit(x, *args, **kwargs)
        validation_data = kwargs.get("validation_data")
        if validation_data is not None and not is_model_ready(validation_data):
            if not isinstance(validation_data, tf.data.Dataset):
                raise ValueError(
                    "With model-ready training data (a distributed or kerasmm.distribute dataset), pass "
                    "validation_data as a tf.data.Dataset of raw (features, targets) or as model-ready data "
                    f"too; got {type(validation_data).__name__}."
                )
            kwargs["validation_data"] = validation_data.map(
                self.preprocess_samples, num_parallel_calls=tf.data.AUTOTUNE
            ).prefetch(tf.data.AUTOTUNE)
        return keras.Model.fit(self, x, *args, **kwargs)

    def _build_optimizer(self):
        """Create the optimizer's variables now, as Keras does itself only under a distribution strategy.

        Otherwise Keras' TensorFlow trainer leaves them to the first traced
        train step, and a `tf.function` that creates variables is traced a
        second time: about a third of a small model's first `fit` here
        (`benchmarks/first_fit.py`).
        """
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None or optimizer.built or not self.built:
            return
        preprocessing = {id(layer) for layer in flatten_layers(self.preprocessor)} if self.preprocessor else set()
        if not all(layer.built for layer in flatten_layers(self) if id(layer) not in preprocessing):
            return  # a layer that builds on its first call: Keras creates the variables in order
        with self.distribute_strategy.scope():
            optimizer.build(self.trainable_variables)

    @property
    def evaluating(self):
        """True while `evaluate` runs (and traces its test step): for evaluation-only metric work."""
        return getattr(self, "_evaluating", False)

    def evaluate(self, x=None, *args, **kwargs):
        self._evaluating = True
        try:
            if is_model_ready(x):
                return keras.Model.evaluate(self, x, *args, **kwargs)
            return super().evaluate(x, *args, **kwargs)
        finally:
            self._evaluating = False

    def predict(self, x=None, *args, **kwargs):
        if is_model_ready(x):
            return keras.Model.predict(self, x, *args, **kwargs)
        return super().predict(x, *args, **kwargs)

    # --- Serving: each family declares its raw-input signatures for kerasmm.export ---

    # The family written into the export metadata ("classifier", "dual_encoder", "captioner",
    # "text_to_image"); None for a task that cannot be exported.
    serving_family = None

    def serving_signatures(self, module, staging, *, sample_rate=16000, sampler=None, max_length=None, num_beams=4,
                           scores=True, jit_compile=False, prompted=False):
        """The serving signatures of this model on raw inputs (what `kerasmm.export.saved_model` saves).

        Args:
            module: the `tf.Module` being exported; assets and lookup tables
                the signatures use are set on it.
            staging: a directory to write asset files into (copied into the
                SavedModel's `assets/`).
            sample_rate: Hz that WAV inputs are resampled to.
            sampler, max_length, num_beams, scores, jit_compile, prompted:
                generation settings (families that generate; ignored by the
                others).

        Returns:
            `(functions, modalities, extra_metadata)`: signature name →
            `tf.function` of `[None]` string inputs, the modalities the
            requests carry, and a JSON-able dict added to the export metadata.
        """
        raise NotImplementedError(
            f"{type(self).__name__} declares no serving signatures: kerasmm.export serves MultimodalClassifier, "
            "DualEncoder, Captioner and TextToImage; a new task must override `serving_signatures` and set "
            "`serving_family`."
        )
