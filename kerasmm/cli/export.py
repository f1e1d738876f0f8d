"""`kerasmm export`: write a saved model as a TF Serving SavedModel on raw JPEG/PNG bytes, WAV bytes and strings.

Usage:
    kerasmm export MODEL EXPORT_DIR [--version N] [--zoo] [--sampler NAME] [--max-length L]
        [--num-beams K] [--sample-rate HZ] [--no-scores] [--jit-compile] [--prompted] [--no-warmup]
        [--overwrite] [--verify]

MODEL is a `.keras` file, or a directory holding `model.keras` (loaded with
`safe_mode=True`); with `--zoo` it is a zoo entry name instead (random
weights: for trying the serving set-up). The SavedModel goes to
`EXPORT_DIR/<version>/` (TF Serving's `--model_base_path` is EXPORT_DIR).
`--verify` then loads it in a fresh process that cannot import kerasmm or
keras and replays the warm-up requests (see `kerasmm.export.verify`). The
last line printed is the version directory.

Example:
```python
from kerasmm.cli import main
main(["export", "run/model.keras", "serving/captioner", "--sampler", "beam", "--verify"])
```
"""

import json
import os
import sys
import warnings

NAME = "export"


def add_parser(subparsers):
    """Register `export` on an argparse subparsers object; returns its parser.

    Example:
    ```python
    import argparse
    from kerasmm.cli import export
    parser = argparse.ArgumentParser(prog="kerasmm")
    export.add_parser(parser.add_subparsers())
    ```
    """
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(
        NAME, help=summary, description=summary[0].upper() + summary[1:],
        epilog="Example: kerasmm export run/model.keras serving/captioner --sampler beam --verify",
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a .keras file or a directory holding model.keras (with --zoo: a zoo entry name)")
    parser.add_argument("export_dir", metavar="EXPORT_DIR", help="the model's base directory for TF Serving")
    parser.add_argument("--version", type=int, default=1, help="version subdirectory (default 1)")
    parser.add_argument("--zoo", action="store_true", help="MODEL names a zoo entry (random weights)")
    parser.add_argument("--sampler", default=None,
                        help="captioners: greedy, beam, top_k or top_p (default: the model's)")
    parser.add_argument("--max-length", type=int, default=None, metavar="L",
                        help="captioners: decoder positions, start token included (default: the model's)")
    parser.add_argument("--num-beams", type=int, default=4, metavar="K", help="captioners: beam width (default 4)")
    parser.add_argument("--sample-rate", type=int, default=16000, metavar="HZ",
                        help="models with audio: WAV inputs are resampled to this rate (default 16000)")
    parser.add_argument("--no-scores", action="store_true", help="captioners: leave out the caption scores")
    parser.add_argument("--jit-compile", action="store_true",
                        help="captioners: XLA-compile the decoding loop (the server then needs XLA)")
    parser.add_argument("--prompted", action="store_true",
                        help="captioners: add caption_prompted(..., prompt), captions that continue a text prompt, and "
                             "write_from_prompt(prompt), from the prompt alone "
                             "(the server then needs tensorflow-text's ops)")
    parser.add_argument("--no-warmup", action="store_true", help="write no assets.extra warm-up requests")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--verify", action="store_true",
                        help="check the export in a fresh process without kerasmm or keras")
    return parser


def load_model(path):
    """A model from a `.keras` file or a directory holding `model.keras`, loaded with `safe_mode=True`.

    A file that does not load (damaged, or saved with classes not installed
    here) is a ValueError naming the file and the cause in one sentence.
    """
    import zipfile

    import keras

    import kerasmm
    from kerasmm.cli.errors import cause

    kerasmm.load_all()  # the command imports kerasmm lazily: register its classes before Keras looks them up

    if os.path.isdir(path):
        file = os.path.join(path, "model.keras")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"The model directory {path} holds no model.keras.")
    elif os.path.isfile(path):
        file = path
    else:
        raise FileNotFoundError(f"No model at {path} (give a .keras file or a directory holding model.keras).")
    if not file.endswith(".keras"):
        raise ValueError(f"{file} is not a .keras model file.")
    if not zipfile.is_zipfile(file):
        raise ValueError(f"{file} is not a .keras model file (not a zip archive: damaged, or another format).")
    with warnings.catch_warnings():
        # A model saved after training carries optimizer state that inference does not need.
        warnings.filterwarnings("ignore", message=r".*(optimizer|compile)", category=UserWarning)
        try:
            return keras.saving.load_model(file, safe_mode=True)
        except (TypeError, KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
            raise ValueError(f"Cannot load the model in {file}: {cause(error)}.") from None


def run(args):
    """Run `kerasmm export` on parsed arguments; returns the exit status (0).

    Example:
    ```python
    from kerasmm.cli import build_parser, export
    export.run(build_parser().parse_args(["export", "tiny_captioner", "out/captioner", "--zoo"]))
    ```
    """
    import kerasmm

    if args.num_beams < 1:
        raise ValueError(f"--num-beams must be at least 1, got {args.num_beams}.")
    def progress(step):  # each step takes seconds to a minute; stdout keeps the summary only
        if not args.quiet:
            print(f"kerasmm {NAME}: {step}...", file=sys.stderr, flush=True)

    # No progress line before loading: a model that does not load stays a one-line error.
    model = kerasmm.zoo.get(args.model) if args.zoo else load_model(args.model)
    progress(f"tracing the serving signatures and writing the SavedModel under {args.export_dir}")
    try:
        path = kerasmm.export.saved_model(
            model, args.export_dir, version=args.version, sampler=args.sampler, max_length=args.max_length,
            num_beams=args.num_beams, sample_rate=args.sample_rate, scores=not args.no_scores,
            jit_compile=args.jit_compile, prompted=args.prompted, warmup_requests=not args.no_warmup,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        raise ValueError(f"{error} (--overwrite replaces it)") from None
    with open(os.path.join(path, "assets", "kerasmm_export.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    print(f"Exported a {metadata['family'].replace('_', ' ')} ({metadata['model_class']}) to {path}")
    for name, signature in sorted(metadata["signatures"].items()):
        inputs = ", ".join(signature["inputs"])
        outputs = ", ".join(signature["outputs"])
        print(f"  {name}({inputs}) -> {outputs}")
    if args.verify:
        if args.no_warmup:
            raise ValueError("--verify replays the warm-up requests; leave out --no-warmup.")
        try:
            report = kerasmm.export.verify(path)
        except RuntimeError as error:
            raise ValueError(str(error)) from None
        needs = ", ".join(report["custom_ops"]) or "none"
        print(f"Verified without kerasmm or keras: {report['warmup_requests']} warm-up requests replayed; "
              f"ops beyond core TensorFlow: {needs}")
    print(path)
    return 0
