"""The `kerasmm` command line: `kerasmm <command> ...`; `kerasmm <command> --help` for each.

Each command is a module with `add_parser(subparsers)` (returns its
`argparse` parser) and `run(args)` (returns an exit status); adding one is
one line in `COMMANDS`. A user mistake (a `ValueError`, an `OSError` such
as `FileNotFoundError`, a `kerasmm.data.BadRecordError`, or a TensorFlow
`OpError` such as a label outside the model's classes, out of `run`)
prints one line, `kerasmm <command>: error: ...`, to stderr and exits with
status 2; the line leaves out what Keras and TensorFlow add to their
messages (configs, call arguments, graph stack traces). A command whose
parser sets the default `_forwards_arguments=True` gets the arguments it
does not know in `args.forwarded` (`demo` hands them to
`kerasmm.demo.main`); for the others they are an error.

Example:
```python
from kerasmm.cli import main
main(["search", "--help"])   # prints the search usage, exits 0
```
"""

import argparse
import sys

from kerasmm.cli import caption, demo, evaluate, export, list_, search, train
from kerasmm.cli.errors import one_line, user_error  # noqa: F401  (one_line: part of this module's API)
from kerasmm.version import __version__

COMMANDS = (
    list_,
    train,
    evaluate,
    export,
    caption,
    search,
    demo,
)
USAGE_ERROR = 2



def build_parser():
    """The `kerasmm` argument parser with every command of `COMMANDS` registered.

    Example:
    ```python
    from kerasmm.cli import build_parser
    args = build_parser().parse_args(["search", "a red circle", "--model", "m.keras", "--images", "photos"])
    ```
    """
    parser = argparse.ArgumentParser(prog="kerasmm", description="kerasmm: multimodal models from the command line.")
    parser.add_argument("--version", action="version", version=f"kerasmm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = command.add_parser(subparsers)
        sub.set_defaults(_run=command.run, _prog=sub.prog)
    return parser


def main(argv=None):
    """Run `kerasmm` with `argv` (default: the process arguments); returns the exit status.

    Example:
    ```python
    from kerasmm.cli import main
    status = main(["search", "a red circle", "--model", "missing.keras", "--images", "."])   # 2
    ```
    """
    parser = build_parser()
    args, forwarded = parser.parse_known_args(argv)
    if forwarded and not getattr(args, "_forwards_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(forwarded)}")
    args.forwarded = forwarded  # the arguments a command like `demo` passes on
    try:
        return args._run(args)
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        print(f"{args._prog}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
