"""`kerasmm train`: train a zoo recipe into a folder, resumable: run the same command again to go on.

Usage:
    kerasmm train RECIPE --out DIR [--data SPEC] [--set KEY=VALUE ...] [--verbose 0|1|2]

RECIPE is a zoo recipe name (`zoo/<name>/recipe.py`; `tiny_<name>` for its
tiny twin) or a recipe file (see `kerasmm.recipes`). DIR receives
`recipe.json` (the settings), `checkpoints/` (written by
`kerasmm.distribute.fit_resumable` every `save_every` steps and at each
epoch end), `logs/train/` (TensorBoard scalars per epoch), `history.json`
(per-epoch metrics, kept across resumes) and, at the end, `model.keras`.
Started again with the same DIR it resumes from the newest checkpoint and
trains each step exactly once; a finished run is left as it is, except that
raising `epochs` trains on. `kerasmm eval DIR` then scores the held-out data.

With `--data` the model is fitted to the data (`kerasmm.recipes.Recipe.fit_to_data`):
a classifier takes the data's class names and count (integer labels without
names: a manifest's largest label + 1, else `--set model.num_classes=N`), and
a model reading text with the shapes vocabulary gets a WordPiece vocabulary
trained on the data's texts when that one would leave words unknown; both
go into `recipe.json`, so resuming, `kerasmm eval` and `kerasmm export` see
the same model. While a run lives it holds a lock on DIR (`DIR/.lock`, an
`flock` the system drops when the process ends, even when killed): a
second `kerasmm train` with the same DIR is refused.

Example:
```python
from kerasmm.cli import main
main(["train", "tiny_captioner", "--out", "runs/tiny_captioner", "--set", "epochs=2"])
```
"""

import contextlib
import json
import os
import sys

from kerasmm.cli.options import RECIPE_HELP, add_recipe_options
from kerasmm.recipes import DATA_FITTED

NAME = "train"
RECIPE_JSON = "recipe.json"
HISTORY_JSON = "history.json"
MODEL_FILE = "model.keras"
LOCK_FILE = ".lock"
# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("epochs", "save_every")


def add_parser(subparsers):
    """Register `train` on an argparse subparsers object; returns its parser."""
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(
        NAME, help=summary, description=summary[0].upper() + summary[1:],
        epilog="Example: kerasmm train captioner --out runs/captioner --set epochs=2 --set model.hidden_dim=64",
    )
    parser.add_argument("recipe", metavar="RECIPE", help=RECIPE_HELP)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run folder: checkpoints, logs/, history.json, model.keras; the same DIR resumes")
    add_recipe_options(parser, "train on this data instead of the recipe's: a classifier takes its class names, a "
                               "model reading text a vocabulary of its texts where the recipe's lacks words (then "
                               "eval needs --data too)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 silent, 1 a progress bar (default), 2 one line per epoch")
    return parser


def resolve_recipe(args):
    """The recipe of `args.recipe` with `--data` and `--set` applied."""
    from kerasmm import recipes

    recipe = recipes.load(args.recipe)
    if args.data:
        recipe = recipe.with_data(args.data)
    return recipe.with_settings(args.settings)


def run_settings(out):
    """The `recipe.json` of the run in `out` (a dict), or None."""
    path = os.path.join(out, RECIPE_JSON)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_same_run(out, recipe, ignore=()):
    """ValueError if `out` holds a run of other settings (only `_RESUMABLE_CHANGES` may differ).

    `ignore`: model settings left out of the comparison (those the data fit, before they are fitted).
    """
    old = run_settings(out)
    if old is None:
        return
    new = recipe.to_dict()
    old_model = {k: v for k, v in (old.get("model") or {}).items() if k not in ignore}
    new_model = {k: v for k, v in new["model"].items() if k not in ignore}
    differs = ["entry"] if old.get("entry") != new["entry"] else []
    differs += [f"model.{k}" for k in sorted(set(old_model) | set(new_model)) if old_model.get(k) != new_model.get(k)]
    differs += ["data"] if old.get("data") != new["data"] else []
    differs += [f"train.{key}" for key in new["train"]
                if key not in _RESUMABLE_CHANGES and old.get("train", {}).get(key) != new["train"][key]]
    if differs:
        fitted = [d for d in differs if d.startswith("model.") and d.split(".", 1)[1] in DATA_FITTED]
        why = "; the model's classes and vocabulary come from --data, so the data changed" if fitted else ""
        raise ValueError(f"{out} holds a run with other settings ({', '.join(differs)} differ{why}): resume it with "
                         "the same recipe, settings and data, or give a new --out.")


@contextlib.contextmanager
def locked(out):
    """Hold an exclusive lock on the run folder `out` (made if missing) while the block runs.

    The lock is an `flock` on `out/.lock`: the system drops it when the
    process ends, however it ends, so a killed run leaves no stale lock. A
    folder another process holds is a ValueError naming that process.
    Where there is no `fcntl` (Windows) the folder is not locked.
    """
    try:
        import fcntl
    except ImportError:
        fcntl = None
    os.makedirs(out, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(os.path.join(out, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise ValueError(f"--out {out} is in use by another kerasmm train (process {holder}): wait for it to "
                             "end, or give another --out.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_json(path, values):
    """Write `values` as JSON, atomically (a kill never leaves half a file)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def epoch_callbacks(out):
    """Callbacks that keep `out/history.json` and `out/logs/train` TensorBoard scalars, epoch by epoch."""
    import keras
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    scalars = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    class EpochLogs(keras.callbacks.Callback):
        # keras.callbacks.TensorBoard needs the tensorboard package; the scalars need only core TF ops.
        def on_train_begin(self, logs=None):
            path = os.path.join(out, HISTORY_JSON)
            self.history = {"epoch": []}
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    self.history = json.load(f)
            self.writer = tf.summary.create_file_writer(os.path.join(out, "logs", "train"))

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            # A resumed epoch replaces what an interrupted one may have written.
            keep = [i for i, e in enumerate(self.history["epoch"]) if e < epoch + 1]
            history = {k: [v[i] for i in keep] for k, v in self.history.items() if k == "epoch" or k in logs}
            history["epoch"].append(epoch + 1)
            for key, value in logs.items():
                history.setdefault(key, [None] * len(keep)).append(value)
            self.history = history
            write_json(os.path.join(out, HISTORY_JSON), history)
            with self.writer.as_default():
                for key, value in logs.items():
                    tf.summary.write(f"epoch_{key}", tf.constant(value), step=epoch, metadata=scalars)
            self.writer.flush()

        def on_train_end(self, logs=None):
            self.writer.close()

    return [EpochLogs()]


def run(args):
    """Run `kerasmm train` on parsed arguments; returns the exit status (0, or 1 when training diverged)."""
    recipe = resolve_recipe(args)
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder.")
    check_same_run(out, recipe, ignore=DATA_FITTED)  # before reading the data: a quick refusal
    recipe, notes = recipe.fit_to_data(previous=run_settings(out))
    with locked(out):
        check_same_run(out, recipe)
        for note in notes:
            print(note, flush=True)
        return train_run(recipe, out, args.verbose)


def train_run(recipe, out, verbose):
    """Train `recipe` into the run folder `out` (locked); returns the exit status."""
    import keras

    from kerasmm.distribute import NonFiniteLossError, fit_resumable

    write_json(os.path.join(out, RECIPE_JSON), recipe.to_dict())
    keras.utils.set_random_seed(recipe.train["seed"])
    model = recipe.build_model()
    dataset = recipe.dataset("data", shuffle=True)
    print(f"Training {recipe.entry} ({model.count_params():,} parameters) from recipe {recipe.name} into {out}",
          flush=True)
    try:
        fit_resumable(model, dataset, recipe.train["epochs"], directory=os.path.join(out, "checkpoints"),
                      steps_per_epoch=recipe.train["steps_per_epoch"], save_every=recipe.train["save_every"],
                      callbacks=epoch_callbacks(out), verbose=verbose)
    except NonFiniteLossError as error:
        print(f"kerasmm {NAME}: error: {error}", file=sys.stderr)
        return 1
    model.save(os.path.join(out, MODEL_FILE))
    with open(os.path.join(out, HISTORY_JSON), encoding="utf-8") as f:
        history = json.load(f)
    final = {k: v[-1] for k, v in history.items() if v}
    print(f"Saved {os.path.join(out, MODEL_FILE)}; after epoch {final.pop('epoch', '?')}: "
          + json.dumps({k: round(v, 4) for k, v in sorted(final.items())}))
    return 0
