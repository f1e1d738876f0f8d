"""`saved_model(model, export_dir)`: one self-contained SavedModel per zoo model, in TF Serving's layout.

```
export_dir/
  1/                                   # version (TF Serving serves the highest number)
    saved_model.pb                     # graphs of every signature
    variables/variables.{index,data-*}
    assets/kerasmm_export.json         # family, signatures, preprocessing constants, generation settings
    assets/vocabulary.txt              # models with text: the WordPiece vocabulary (one token per line)
    assets/labels.txt                  # classifiers: class names, one per line (line = class id)
    assets.extra/tf_serving_warmup_requests   # TFRecord of PredictionLog: real requests for warm-up
    fingerprint.pb
```

The version is written under a temporary name in `export_dir` and renamed
when complete, so a TF Serving instance watching `export_dir` never loads a
half-written version.

Example:
```python
import kerasmm
model = kerasmm.zoo.get("tiny_captioner")
path = kerasmm.export.saved_model(model, "out/captioner")   # "out/captioner/1"
```
"""

import os
import shutil
import tempfile

import tensorflow as tf

from kerasmm import validation
from kerasmm.backend_compat import portable_slice_updates
from kerasmm.export import signatures, warmup


def saved_model(model, export_dir, version=1, *, sampler=None, max_length=None, num_beams=4, sample_rate=16000,
                scores=True, jit_compile=False, prompted=False, warmup_requests=True, model_name=None,
                overwrite=False):
    """Export `model` for serving on raw inputs; returns the version directory `export_dir/<version>`.

    Args:
        model: a zoo classifier, dual encoder, captioner or text-to-image model
            (with its preprocessor).
        export_dir: the model's base path (TF Serving's `--model_base_path`).
        version: positive int, the version subdirectory.
        sampler, max_length, num_beams: captioners only, fixed at export:
            sampler name or keras_hub `Sampler` (default the model's),
            decoder positions (default the model's `sequence_length`), beam width.
        sample_rate: Hz that WAV inputs are resampled to (models with audio).
        scores: captioners: also return each caption's mean token log-probability.
        jit_compile: captioners: compile the decoding loop with XLA (faster on
            GPU, but the server then needs XLA: stock TF Serving GPU images
            lack it). Off by default: the graph then holds only ops with
            plain CPU and GPU kernels.
        prompted: captioners: also export `caption_prompted(..., prompt)`,
            captions that continue a text prompt, and `write_from_prompt(prompt)`,
            from the prompt alone. Its in-graph tokenizer
            uses tensorflow-text ops, which the server must then have (the
            other captioner signatures need none).
        warmup_requests: write `assets.extra/tf_serving_warmup_requests`.
        model_name: the `model_spec.name` of the warm-up requests (default:
            the base name of `export_dir`).
        overwrite: replace an existing version directory.
    """
    version = validation.positive_int("version", version)
    sample_rate = validation.positive_int("sample_rate", sample_rate)
    export_dir = os.fspath(export_dir)
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or a new version.")
    model_name = model_name or os.path.basename(os.path.normpath(os.path.abspath(export_dir)))
    os.makedirs(export_dir, exist_ok=True)

    with tempfile.TemporaryDirectory() as staging:
        export = signatures.build(model, staging, sampler=sampler, max_length=max_length, num_beams=num_beams,
                                  sample_rate=sample_rate, scores=scores, jit_compile=jit_compile,
                                  prompted=prompted)
        partial = tempfile.mkdtemp(prefix=f".{version}-partial-", dir=export_dir)
        try:
            with portable_slice_updates(enabled=not jit_compile):
                tf.saved_model.save(export.module, partial, signatures=export.functions)
            if warmup_requests:
                warmup.write_requests(partial, model_name, export.examples)
            if os.path.exists(path):
                shutil.rmtree(path)
            os.rename(partial, path)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return path
