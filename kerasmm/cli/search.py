"""`kerasmm search`: find the images in a folder that best match text queries, with a saved dual encoder.

Usage:
    kerasmm search "a red circle" ["a blue square" ...] --model PATH (--images DIR | --index FILE)
        [--k 5] [--out search_results.png] [--batch-size 256] [--on-error raise|skip]
        [--save-index FILE] [--method auto|exact|approximate] [--rerank K]

PATH is a `.keras` file, or a directory holding `model.keras`, of an
image-text dual encoder (loaded with `safe_mode=True`). Every image under DIR
(recursively; .jpg, .jpeg, .png, .gif, .bmp; hidden files left out) is
embedded into a `kerasmm.search.Index` (`--save-index FILE` keeps it), or a
saved index is read from `--index FILE`; for each query the `k` best matches
are printed (rank, cosine score, path) and all matches are drawn into a
contact-sheet PNG. `--method` chooses exact or approximate search (the
default, auto, searches approximately from 100,000 images when faiss is
installed: `pip install kerasmm[search]`). `--rerank K` re-orders each
query's K most similar images by the model's image–text matching head (a dual
encoder trained with `matching_layers > 0`); the scores printed are then its
match probabilities.

Example:
```python
from kerasmm.cli import main
main(["search", "a red circle", "--model", "run/model.keras", "--images", "photos", "--k", "3"])
```
"""

import contextlib
import os
import sys

NAME = "search"
METHODS = ("auto", "exact", "approximate")  # kerasmm.search.METHODS, here so `--help` needs no numpy or TensorFlow
DEFAULT_OUT = "search_results.png"
_SHEET_MAX_COLUMNS = 10


def add_parser(subparsers):
    """Register `search` on an argparse subparsers object; returns its parser.

    Example:
    ```python
    import argparse
    from kerasmm.cli import search
    parser = argparse.ArgumentParser(prog="kerasmm")
    search.add_parser(parser.add_subparsers())
    ```
    """
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(
        NAME, help=summary, description=summary[0].upper() + summary[1:],
        epilog="Example: kerasmm search \"a red circle\" --model run/model.keras --images photos --k 3",
    )
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="text to search for (one or more)")
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="a .keras file, or a directory holding model.keras, of an image-text dual encoder")
    gallery = parser.add_mutually_exclusive_group(required=True)
    gallery.add_argument("--images", metavar="DIR",
                         help="folder searched recursively for image files (JPEG, PNG, GIF, BMP)")
    gallery.add_argument("--index", metavar="FILE",
                         help="an index saved by --save-index (or kerasmm.search.Index.save) instead of --images")
    parser.add_argument("--k", type=int, default=5, help="matches per query (default 5)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="PNG",
                        help=f"contact sheet of the matches (default {DEFAULT_OUT} in the current directory)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="images embedded at a time (default 256)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="an unreadable image stops the search (raise, default) or is left out (skip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (on stderr) while embedding the images")
    parser.add_argument("--save-index", metavar="FILE",
                        help="keep the index built from --images in FILE (.npz), for --index next time")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="exact, approximate (pip install kerasmm[search]) or auto (the default: approximate "
                             "from 100,000 images when that is installed)")
    parser.add_argument("--rerank", type=int, default=None, metavar="K",
                        help="re-rank each query's K most similar images (K >= --k) by the model's image-text "
                             "matching head; scores are then match probabilities")
    return parser


def find_images(directory):
    """Sorted paths of the image files under `directory` (recursive; hidden files and folders left out).

    Example:
    ```python
    from kerasmm.cli.search import find_images
    find_images(".")   # ['./a.png', './photos/b.jpg', ...]
    ```
    """
    from kerasmm.data.image_ops import IMAGE_EXTENSIONS  # here: `kerasmm search --help` needs no TensorFlow

    if not os.path.isdir(directory):
        raise FileNotFoundError(f"No image folder at {directory}.")
    paths = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(
            os.path.join(root, name) for name in sorted(files)
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        )
    if not paths:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {directory}.")
    return paths


def load_dual_encoder(path):
    """Load an image-text dual encoder from a `.keras` file or a directory holding `model.keras`.

    Example:
    ```python
    from kerasmm.cli.search import load_dual_encoder
    model = load_dual_encoder("run")   # reads run/model.keras
    ```
    """
    from kerasmm.models import DualEncoder
    from kerasmm.cli.export import load_model

    model = load_model(path)
    file = os.path.join(path, "model.keras") if os.path.isdir(path) else path
    if not isinstance(model, DualEncoder):
        raise ValueError(f"The model in {file} is a {type(model).__name__}, not a dual encoder; "
                         "search needs an image-text dual encoder (e.g. a trained kerasmm 'dual_encoder').")
    if model.query_modality != "image":
        raise ValueError(f"The model in {file} pairs text with {model.query_modality}, not images; "
                         "search needs an image-text dual encoder.")
    return model


def sheet_captions(queries, results):
    """Captions for the contact sheet: rank, score and file name; each query's first match also names it."""
    captions = []
    for query, matches in zip(queries, results):
        for rank, (key, score) in enumerate(matches, 1):
            caption = f"{rank}. {score:.3f}  {os.path.basename(str(key))}"
            captions.append(f"\"{query}\"\n{caption}" if rank == 1 else caption)
    return captions


def run(args):
    """Run `kerasmm search` on parsed arguments; returns the exit status (0).

    Example:
    ```python
    from kerasmm.cli import build_parser, search
    args = build_parser().parse_args(["search", "a red circle", "--model", "run", "--images", "photos"])
    search.run(args)
    ```
    """
    from kerasmm import search

    queries = list(args.queries)
    for i, query in enumerate(queries, 1):
        if not query.strip():
            raise ValueError(f"Query {i} is empty; give some words to search for.")
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}.")
    if args.rerank is not None and args.rerank < args.k:
        raise ValueError(f"--rerank must be at least --k ({args.k}), got {args.rerank}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.save_index and args.index:
        raise ValueError("--save-index keeps an index built from --images; with --index it is already saved.")
    if args.method == "approximate" and not search.approximate_available():
        raise ValueError(search.INSTALL_HINT)
    paths = find_images(args.images) if args.images else None
    model = load_dual_encoder(args.model)
    if args.rerank is not None and getattr(model, "matching_head", None) is None:  # before embedding the gallery
        raise ValueError(f"--rerank needs a dual encoder with an image–text matching head; {args.model} has none "
                         "(train one with matching_layers > 0).")

    if paths is None:
        index = search.Index.load(args.index, method=args.method)
        print(f"Loaded an index of {len(index)} image(s) from {args.index} ({index.method} search).")
    else:
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr: stdout has the matches
            index = search.Index.from_images(model, paths=paths, batch_size=args.batch_size, on_error=args.on_error,
                                             verbose=0 if args.quiet else 1, method=args.method)
        if len(index.skipped):
            print(f"kerasmm {NAME}: warning: {index.skipped.summary()}", file=sys.stderr)
        print(f"Indexed {len(index)} image(s) under {args.images}.")
        if args.save_index:
            if os.path.dirname(args.save_index):
                os.makedirs(os.path.dirname(args.save_index), exist_ok=True)
            print(f"Saved the index to {index.save(args.save_index)}.")
    results = index.search_text(model, queries, k=args.k, rerank=args.rerank)
    for query, matches in zip(queries, results):
        print(f"\n\"{query}\"")
        for rank, (path, score) in enumerate(matches, 1):
            print(f"  {rank:>3}  {score:6.3f}  {path}")

    out = args.out
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    columns = min(len(results[0]), _SHEET_MAX_COLUMNS)
    items = [path for matches in results for path, _ in matches]
    search.contact_sheet(items, sheet_captions(queries, results), out, columns=columns)
    print(f"\nContact sheet: {out}")
    return 0
