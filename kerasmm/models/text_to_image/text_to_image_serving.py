"""Serving signatures of `TextToImage` on raw inputs (see `kerasmm.export`).

- `serving_default(text)` → `images` `[B, H, W, 3]` float32 in [0, 1] and
  `png_bytes` `[B]` (the same images, PNG-encoded).
"""

import tensorflow as tf

from kerasmm.export import inputs as raw
from kerasmm.export.signatures import DEFAULT_SIGNATURE, signature_function


def serving_signatures(model, module, staging, sample_rate):
    """`(functions, modalities, extra_metadata)` of a text-to-image model (it writes no assets of its own)."""
    preprocessor = model.preprocessor

    def body(request):
        text = raw.checked_text(request[raw.TEXT_INPUT], raw.TEXT_INPUT)
        images = tf.cast(model({"text": preprocessor.prepare_text(text)}, training=False), tf.float32)
        png = tf.map_fn(
            lambda image: tf.io.encode_png(tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)),
            images, fn_output_signature=tf.TensorSpec((), tf.string),
        )
        return {"images": images, "png_bytes": png}

    functions = {DEFAULT_SIGNATURE: signature_function([raw.TEXT_INPUT], body, "generate_images")}
    return functions, ["text"], {"image_size": [int(s) for s in model.image_size]}
