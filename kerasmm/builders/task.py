"""Shared base of kerasmm's task models (keras_hub `Task` + restorable compile)."""

import keras
import keras_hub


class ZooTask(keras_hub.models.Task):
    """A keras_hub `Task` whose custom `compile` defaults survive a `.keras` round trip.

    keras_hub tasks override `compile` to supply defaults, which makes Keras
    skip restoring the saved compile settings (and the optimizer state) when a
    `.keras` file is loaded. This base restores them.
    """

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)
