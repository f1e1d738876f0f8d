"""`kerasmm caption`: caption image files with an exported captioner SavedModel; prints path<TAB>caption.

Usage:
    kerasmm caption IMAGE [IMAGE ...] --model DIR [--prompt TEXT | --question TEXT] [--scores]
        [--batch-size N] [--on-error raise|skip]

DIR is what `kerasmm export` wrote for a captioner: TF Serving's layout,
`DIR/<version>/` (the highest numeric version is used), or one version
folder itself. Its `serving_default(image_bytes)` signature (or, for a
model that also takes audio, `caption_image`) captions the raw file bytes
(JPEG, PNG, GIF, BMP) in the graph; neither kerasmm's models nor Keras are
needed to run it. `--scores` adds each caption's mean token log-probability
as a third column. `--prompt TEXT` writes captions that continue TEXT (a
captioner exported with `kerasmm export --prompted`, its `caption_prompted`
signature); `--question TEXT` prints the answer of an exported
`generative_vqa` model to TEXT about each image.

Every file is checked before the model loads (`kerasmm.data.image_header.check_image`:
missing, damaged or truncated files, images over the pixel limit). With
`--on-error raise` (the default) the first bad file stops the command with
one line naming it and the reason (a file the check refuses, before
anything is captioned); with `--on-error skip` each bad file, also one the
model fails to decode, is listed on stderr as
`kerasmm caption: skipped PATH: REASON` and the others are captioned: the
exit status is 0 if at least one file was captioned.

Example:
```python
from kerasmm.cli import main
main(["caption", "photo.jpg", "--model", "serving/captioner"])   # photo.jpg	a small red circle
```
"""

import os
import sys

NAME = "caption"
SIGNATURES = ("serving_default", "caption_image")
IMAGE_INPUT = "image_bytes"
# The text inputs of the prompted captioner's and the question answerer's signatures: kerasmm.export.inputs'
# names, repeated so that `kerasmm caption --help` imports no TensorFlow.
PROMPT_INPUT, QUESTION_INPUT = "prompt", "question"
PROMPTED_SIGNATURE = "caption_prompted"
MISSING = "no such file"
SKIP_HINT = "--on-error skip captions the other files"


def add_parser(subparsers):
    """Register `caption` on an argparse subparsers object; returns its parser."""
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(NAME, help=summary, description=summary[0].upper() + summary[1:],
                                   epilog="Example: kerasmm caption photo.jpg more/*.png --model serving/captioner")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to caption")
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="an exported captioner: DIR/<version>/saved_model.pb (or the version folder)")
    parser.add_argument("--prompt", metavar="TEXT",
                        help="captions continue TEXT (a captioner exported with kerasmm export --prompted)")
    parser.add_argument("--question", metavar="TEXT",
                        help="print the answer to TEXT about each image (an exported generative_vqa model)")
    parser.add_argument("--scores", action="store_true", help="print each caption's score as a third column")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per call (default 16)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="a bad image file stops the command (raise, default) or is listed on stderr and "
                             "left out (skip)")
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


def caption_function(loaded, path, text_input=None):
    """`(function, output)`: the signature that takes images (and `text_input`), and its text output's name."""
    wanted = {IMAGE_INPUT} | ({text_input} if text_input else set())
    names = {PROMPT_INPUT: (PROMPTED_SIGNATURE,), QUESTION_INPUT: ("serving_default",)}.get(text_input, SIGNATURES)
    for name in names:
        function = loaded.signatures.get(name)
        if function is not None and set(function.structured_input_signature[1]) == wanted:
            output = "answers" if text_input == QUESTION_INPUT else "captions"
            if output not in function.structured_outputs:
                raise ValueError(f"The model at {path} is not a {'question answerer' if text_input else 'captioner'} "
                                 f"(its {name} returns {', '.join(sorted(function.structured_outputs))}).")
            return function, output
    found = ", ".join(f"{n}({', '.join(sorted(f.structured_input_signature[1]))})"
                      for n, f in loaded.signatures.items()) or "none"
    if text_input == PROMPT_INPUT:
        raise ValueError(f"The model at {path} takes no prompt (export it with kerasmm export --prompted); its "
                         f"signatures: {found}.")
    if text_input == QUESTION_INPUT:
        raise ValueError(f"The model at {path} answers no questions (--question is for an exported generative_vqa "
                         f"model); its signatures: {found}.")
    raise ValueError(f"The model at {path} has no signature that captions images alone "
                     f"({' or '.join(SIGNATURES)} taking {IMAGE_INPUT}); its signatures: {found}.")


def load(path):
    """The SavedModel in the folder `path`; a damaged or foreign one is a ValueError in one line."""
    import tensorflow as tf

    from kerasmm.cli.errors import cause

    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError, KeyError, TypeError, tf.errors.OpError) as error:
        reason = cause(error).replace(os.path.join(path, ""), "")  # the message names the folder once
        raise ValueError(f"Cannot load the exported model in {path}: {reason}.") from None


def check_files(paths):
    """`(path, reason)` of each file that cannot be captioned, found without the model."""
    from kerasmm.data.image_header import check_image

    bad = []
    for path in paths:
        reason = MISSING if not os.path.isfile(path) else check_image(path)
        if reason:
            bad.append((path, reason))
    return bad


def usable_files(paths, on_error):
    """The files of `paths` that pass `check_files`; the others raise (`on_error="raise"`) or are listed."""
    bad = check_files(paths)
    if bad and on_error == "raise":
        path, reason = bad[0]
        if reason == MISSING:
            raise FileNotFoundError(f"No image file {path}.")
        raise ValueError(f"Cannot caption {path}: {reason} ({SKIP_HINT}).")
    for path, reason in bad:
        skipped(path, reason)
    refused = {path for path, _ in bad}
    usable = [path for path in paths if path not in refused]
    if not usable:
        raise ValueError(f"None of the {len(paths)} file(s) can be captioned (each is listed above).")
    return usable


def caption_batch(function, paths, contents, text=None, output="captions"):
    """`(caption, score)` per file, or the reason the model could not caption it (a str).

    `text`: `{input name: string}` given beside every image (a prompt or a question).
    """
    import tensorflow as tf

    from kerasmm.cli.errors import tf_error_line

    inputs = {IMAGE_INPUT: tf.constant(contents)}
    for name, value in (text or {}).items():
        inputs[name] = tf.constant([value] * len(contents))
    try:
        outputs = function(**inputs)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        if len(paths) == 1:
            return [f"the model could not decode it ({tf_error_line(error)})"]
        return [caption_batch(function, [p], [c], text, output)[0] for p, c in zip(paths, contents)]
    captions = [c.decode("utf-8") for c in outputs[output].numpy()]
    scores = outputs["scores"].numpy().tolist() if "scores" in outputs else [float("nan")] * len(captions)
    return list(zip(captions, scores))


def caption_files(function, paths, args, text=None, output="captions"):
    """Print `path<TAB>caption[<TAB>score]` for each file, batch by batch; returns how many were captioned."""
    captioned = 0
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start:start + args.batch_size]
        contents = []
        for path in batch:
            with open(path, "rb") as f:
                contents.append(f.read())
        for path, result in zip(batch, caption_batch(function, batch, contents, text, output)):
            if isinstance(result, str) and args.on_error == "raise":
                raise ValueError(f"Cannot caption {path}: {result} ({SKIP_HINT}).")
            if isinstance(result, str):
                skipped(path, result)
                continue
            caption, score = result
            print(f"{path}\t{caption}" + (f"\t{score:.4f}" if args.scores else ""), flush=True)
            captioned += 1
    return captioned


def text_input(args):
    """`{input name: text}` of `--prompt` or `--question` (empty without), checked before anything loads."""
    given = {name: value for name, value in ((PROMPT_INPUT, args.prompt), (QUESTION_INPUT, args.question))
             if value is not None}
    if len(given) > 1:
        raise ValueError("Give --prompt (text a caption continues) or --question (for a generative_vqa model), "
                         "not both.")
    for name, value in given.items():
        if not value.strip():
            what = "continues" if name == PROMPT_INPUT else "answers"
            raise ValueError(f"--{name} is empty: give the text the model {what}.")
    return given


def skipped(path, reason):
    """List a file left out under `--on-error skip` on stderr."""
    print(f"kerasmm {NAME}: skipped {path}: {reason}", file=sys.stderr, flush=True)


def run(args):
    """Run `kerasmm caption` on parsed arguments; returns the exit status (0)."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    text = text_input(args)
    paths = usable_files(args.images, args.on_error)
    path = version_dir(args.model)
    function, output = caption_function(load(path), path, next(iter(text), None))
    if not caption_files(function, paths, args, text, output):
        raise ValueError(f"None of the {len(args.images)} file(s) could be captioned (each is listed above).")
    return 0
