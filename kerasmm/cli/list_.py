"""`kerasmm list`: a table of the zoo entries: name, task, modalities, parameters.

Usage:
    kerasmm list [PATTERN] [--tiny] [--no-params]

Parameters are counted by building each entry (a few seconds for the full
zoo; rows print as they are counted), except entries whose weights are a
preset to download (`clip`, `siglip`: "-"); `--no-params` skips that. `--tiny`
lists the tiny test twins instead. PATTERN is a glob (`"*classifier"`).

Example:
```python
from kerasmm.cli import main
main(["list", "--tiny"])
```
"""

NAME = "list"
COLUMNS = ("name", "task", "modalities", "parameters")


def add_parser(subparsers):
    """Register `list` on an argparse subparsers object; returns its parser."""
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(NAME, help=summary, description=summary[0].upper() + summary[1:],
                                   epilog="Example: kerasmm list '*classifier' --tiny")
    parser.add_argument("pattern", nargs="?", metavar="PATTERN", help="a glob on the names (default: all)")
    parser.add_argument("--tiny", action="store_true", help="list the tiny_ test twins instead of the full entries")
    parser.add_argument("--no-params", action="store_true", help="skip building the entries to count parameters")
    return parser


def entry_names(pattern=None, tiny=False):
    """The zoo entries `list` shows: full ones, or only the tiny twins."""
    import kerasmm

    if tiny:
        return [n for n in kerasmm.zoo.list(pattern, include_tiny=True) if n.startswith(kerasmm.zoo.TINY_PREFIX)]
    return kerasmm.zoo.list(pattern)


def row(name, count_params=True):
    """`(name, task, modalities, parameters)` of a zoo entry, as strings."""
    import keras

    import kerasmm

    from kerasmm.encoders.presets import is_remote

    entry = kerasmm.zoo.entry(name)
    # Entries without `encoders` are whole pretrained image-text models (clip, siglip).
    modalities = "+".join(sorted(entry.config.get("encoders") or ("image", "text")))
    params = "-"
    preset = entry.config.get("preset") or entry.config.get("image_preset")
    if count_params and not (preset and is_remote(preset)):  # listing never downloads a preset
        params = f"{kerasmm.zoo.get(name).count_params():,}"
        keras.backend.clear_session()
    return name, entry.task, modalities, params


def run(args):
    """Run `kerasmm list` on parsed arguments; returns the exit status (0)."""
    names = entry_names(args.pattern, args.tiny)
    if not names:
        raise ValueError(f"No zoo entry matches {args.pattern!r}.")
    widths = [max(len(COLUMNS[0]), *map(len, names)), len("classification"), len("audio+image+text"),
              len(COLUMNS[3])]
    line = "  ".join(f"{{:<{w}}}" for w in widths[:3]) + f"  {{:>{widths[3]}}}"
    print(line.format(*COLUMNS))
    for name in names:
        print(line.format(*row(name, not args.no_params)), flush=True)
    return 0
