"""Serving signatures of `MultimodalClassifier` on raw inputs (see `kerasmm.export`).

- `serving_default(image_bytes, text, [audio_bytes])` (the preprocessor's
  modalities) → `probabilities` `[B, C]`, `label` `[B]`, `label_id` `[B]`,
  `class_names` `[B, C]`; the class names are the `labels.txt` asset.
"""

import os

import tensorflow as tf

from kerasmm.export import inputs as raw
from kerasmm.export.signatures import (
    DEFAULT_SIGNATURE,
    LABELS_FILE,
    _id_table,
    _write_lines,
    raw_features,
    signature_function,
)


def serving_signatures(model, module, staging, sample_rate):
    """`(functions, modalities, extra_metadata)` of a classifier; the labels asset is written under `staging`."""
    preprocessor = model.preprocessor
    modalities = list(preprocessor.modalities)
    names = [raw.INPUT_NAMES[m] for m in modalities]
    num_classes = int(model.num_classes)
    class_names = list(model.class_names) if model.class_names else [str(i) for i in range(num_classes)]
    module.labels_asset = tf.saved_model.Asset(_write_lines(os.path.join(staging, LABELS_FILE), class_names,
                                                            "class name"))
    module.labels_table = _id_table(module.labels_asset)
    apply_softmax = getattr(model, "activation", None) is None

    def body(request):
        x = preprocessor(raw_features(preprocessor, modalities, request, sample_rate))
        outputs = tf.cast(model(x, training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs, axis=-1) if apply_softmax else outputs
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        classes = module.labels_table.lookup(tf.range(num_classes, dtype=tf.int64))
        return {
            "probabilities": probabilities,
            "label": module.labels_table.lookup(tf.cast(label_id, tf.int64)),
            "label_id": label_id,
            "class_names": tf.tile(classes[None, :], [tf.shape(probabilities)[0], 1]),
        }

    functions = {DEFAULT_SIGNATURE: signature_function(names, body, "classify")}
    return functions, modalities, {"num_classes": num_classes, "class_names_file": LABELS_FILE}
