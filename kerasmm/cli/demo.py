"""`kerasmm demo`: run the main demo (`python -m kerasmm.demo`); its options pass through.

Usage:
    kerasmm demo [DEMO OPTIONS ...]      (`kerasmm demo --help` lists them)

Example:
```python
from kerasmm.cli import main
main(["demo", "--epochs", "2"])
```
"""

import inspect

NAME = "demo"


def add_parser(subparsers):
    """Register `demo` on an argparse subparsers object; returns its parser.

    Every argument after `demo`, `--help` included, goes to `kerasmm.demo.main`
    (its `_forwards_arguments` default tells `kerasmm.cli.main` to keep them in `args.forwarded`).
    """
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(NAME, help=summary, add_help=False, description=summary[0].upper() + summary[1:])
    parser.set_defaults(_forwards_arguments=True)
    return parser


def run(args):
    """Run `kerasmm demo` with the forwarded arguments; returns the demo's exit status."""
    from kerasmm import demo

    argv = list(getattr(args, "forwarded", []))
    if {"-h", "--help"} & set(argv):
        print("kerasmm demo [OPTIONS] runs `python -m kerasmm.demo [OPTIONS]`:\n", flush=True)
    if inspect.signature(demo.main).parameters:
        return demo.main(argv)
    if argv:
        raise ValueError(f"The demo takes no options; got {' '.join(argv)}.")
    return demo.main()
