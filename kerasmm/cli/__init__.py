"""The `kerasmm` command line: `kerasmm <command> ...`; `kerasmm <command> --help` for each.

Each command is a module with `add_parser(subparsers)` (returns its
`argparse` parser) and `run(args)` (returns an exit status); adding one is
one line in `COMMAND_MODULES`. A user mistake (a `ValueError`, an `OSError` such
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
import ast
import importlib
import importlib.util
import sys

from kerasmm.cli.errors import one_line, user_error  # noqa: F401  (one_line: part of this module's API)
from kerasmm.version import __version__

# Each command's module in `kerasmm.cli`, in the order `kerasmm --help` lists them. `main` imports only the
# chosen command's module (so `kerasmm --help`, `--version` and every `<command> --help` import no TensorFlow);
# the others show the summary line of their module docstring, read from the source.
COMMAND_MODULES = ("list_", "train", "evaluate", "export", "caption", "search", "demo")
USAGE_ERROR = 2


def __getattr__(name):
    if name == "COMMANDS":  # every command module, imported (as `build_parser()` does)
        return tuple(_command_module(module) for module in COMMAND_MODULES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_module(module):
    return importlib.import_module(f"{__name__}.{module}")


def _command_summary(module):
    """`(NAME, summary)` from a command module's source, without importing it: its `NAME = "..."`
    and the first docstring line, "`kerasmm NAME`: summary" (which its `add_parser` uses as `help`)."""
    spec = importlib.util.find_spec(f"{__name__}.{module}")
    tree = ast.parse(spec.loader.get_source(spec.name))
    name = next(node.value.value for node in tree.body
                if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["NAME"])
    return name, ast.get_docstring(tree).splitlines()[0].split(": ", 1)[1]


def build_parser(only=None):
    """The `kerasmm` argument parser with every command of `COMMAND_MODULES` registered.

    With `only` (a command name, or `()` for none) the other commands are
    listed by name and summary but their modules are not imported.

    Example:
    ```python
    from kerasmm.cli import build_parser
    args = build_parser().parse_args(["search", "a red circle", "--model", "m.keras", "--images", "photos"])
    ```
    """
    parser = argparse.ArgumentParser(prog="kerasmm", description="kerasmm: multimodal models from the command line.")
    parser.add_argument("--version", action="version", version=f"kerasmm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        name, summary = _command_summary(module) if only is not None else (None, None)
        if only is not None and name != only:
            subparsers.add_parser(name, help=summary, add_help=False)  # never parses: `main` picks its module
            continue
        command = _command_module(module)
        sub = command.add_parser(subparsers)
        sub.set_defaults(_run=command.run, _prog=sub.prog)
    return parser


def _chosen_command(argv):
    """The command `argv` names: its first argument that is not an option (the top level takes no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), ())


def main(argv=None):
    """Run `kerasmm` with `argv` (default: the process arguments); returns the exit status.

    Example:
    ```python
    from kerasmm.cli import main
    status = main(["search", "a red circle", "--model", "missing.keras", "--images", "."])   # 2
    ```
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_chosen_command(argv))
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
