"""`kerasmm caption`: caption image files with an exported captioner SavedModel; prints path<TAB>caption.

Usage:
    kerasmm caption IMAGE [IMAGE ...] --model DIR [--scores] [--batch-size N]

DIR is what `kerasmm export` wrote for a captioner: TF Serving's layout,
`DIR/<version>/` (the highest numeric version is used), or one version
folder itself. Its `serving_default(image_bytes)` signature (or, for a
model that also takes audio, `caption_image`) captions the raw file bytes
(JPEG, PNG, GIF, BMP) in the graph; neither kerasmm's models nor Keras are
needed to run it. `--scores` adds each caption's mean token log-probability
as a third column.

Example:
```python
from kerasmm.cli import main
main(["caption", "photo.jpg", "--model", "serving/captioner"])   # photo.jpg	a small red circle
```
"""

import os

NAME = "caption"
SIGNATURES = ("serving_default", "caption_image")
IMAGE_INPUT = "image_bytes"


def add_parser(subparsers):
    """Register `caption` on an argparse subparsers object; returns its parser."""
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(NAME, help=summary, description=summary[0].upper() + summary[1:],
                                   epilog="Example: kerasmm caption photo.jpg more/*.png --model serving/captioner")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to caption")
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="an exported captioner: DIR/<version>/saved_model.pb (or the version folder)")
    parser.add_argument("--scores", action="store_true", help="print each caption's score as a third column")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per call (default 16)")
    return parser


def version_dir(path):
    """The SavedModel folder of an export: `path` itself, or its highest numeric version subfolder."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No exported model at {path}.")
    versions = [int(d) for d in os.listdir(path)
                if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"{path} holds no SavedModel (saved_model.pb, or numbered version folders with one); "
                                "make one with kerasmm export.")
    return os.path.join(path, str(max(versions)))


def caption_function(loaded, path):
    """The signature that captions images alone, out of `SIGNATURES`."""
    for name in SIGNATURES:
        function = loaded.signatures.get(name)
        if function is not None and set(function.structured_input_signature[1]) == {IMAGE_INPUT}:
            if "captions" not in function.structured_outputs:
                raise ValueError(f"The model at {path} is not a captioner (its {name} returns "
                                 f"{', '.join(sorted(function.structured_outputs))}).")
            return function
    found = ", ".join(f"{n}({', '.join(sorted(f.structured_input_signature[1]))})"
                      for n, f in loaded.signatures.items()) or "none"
    raise ValueError(f"The model at {path} has no signature that captions images alone "
                     f"({' or '.join(SIGNATURES)} taking {IMAGE_INPUT}); its signatures: {found}.")


def error_detail(error):
    """The op's own words out of a TF graph error (no node names or stack markers)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    lines = [line.strip() for line in error.message.splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    return lines[0] if lines else type(error).__name__


def caption_batch(function, paths, contents):
    """`(captions, scores)` of a batch; a file that does not decode is named in a ValueError."""
    import tensorflow as tf

    try:
        outputs = function(**{IMAGE_INPUT: tf.constant(contents)})
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        if len(paths) > 1:  # find the broken one
            for path, content in zip(paths, contents):
                caption_batch(function, [path], [content])
        raise ValueError(f"Cannot caption {paths[0]}: the model could not decode it ({error_detail(error)}).") from None
    captions = [c.decode("utf-8") for c in outputs["captions"].numpy()]
    scores = outputs["scores"].numpy().tolist() if "scores" in outputs else [float("nan")] * len(captions)
    return captions, scores


def run(args):
    """Run `kerasmm caption` on parsed arguments; returns the exit status (0)."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    for image in args.images:
        if not os.path.isfile(image):
            raise FileNotFoundError(f"No image file {image}.")
    path = version_dir(args.model)

    import tensorflow as tf

    function = caption_function(tf.saved_model.load(path), path)
    for start in range(0, len(args.images), args.batch_size):
        paths = args.images[start:start + args.batch_size]
        contents = []
        for image in paths:
            with open(image, "rb") as f:
                contents.append(f.read())
        for image, caption, score in zip(paths, *caption_batch(function, paths, contents)):
            print(f"{image}\t{caption}" + (f"\t{score:.4f}" if args.scores else ""), flush=True)
    return 0
