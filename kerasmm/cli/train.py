"""`kerasmm train`: train a zoo recipe into a folder, resumable: run the same command again to go on.

Usage:
    kerasmm train RECIPE --out DIR [--data SPEC] [--val-data SPEC | --val-fraction F] [--patience N]
                  [--precision P] [--jit | --no-jit] [--strategy KIND] [--set KEY=VALUE ...] [--verbose 0|1|2]

RECIPE is a zoo recipe name (`zoo/<name>/recipe.py`; `tiny_<name>` for its
tiny twin) or a recipe file (see `kerasmm.recipes`). DIR receives
`recipe.json` (the settings), `checkpoints/` (written by
`kerasmm.distribute.fit_resumable` every `save_every` steps and at each
epoch end), `logs/` (TensorBoard: `train/` and `validation/` scalars from
`keras.callbacks.TensorBoard`, and `samples/`: each epoch, held-out images
with their generated captions, or a retrieval contact sheet; see
`kerasmm.callbacks`), `training.csv` (`keras.callbacks.CSVLogger`),
`history.json` (per-epoch metrics, kept across resumes) and, at the end,
`model.keras`.
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

Validation: `--val-data SPEC` validates on other data after every epoch,
`--val-fraction F` on a fraction of `--data` held out from training (see
`kerasmm.recipes.Recipe.dataset`); either becomes the run's held-out data,
which `kerasmm eval DIR` then scores. With one, `--patience N` stops after N
epochs without a better `val_loss` and saves the best epoch's weights
(`keras.callbacks.EarlyStopping(restore_best_weights=True)`); a run that
stopped early is finished (`early_stopping.json` says when).

`--precision`, `--jit/--no-jit` and `--strategy` choose the dtype policy,
XLA and the `tf.distribute` strategy (`kerasmm.distribute.get_strategy`),
in whose scope the model is built. They go into `recipe.json` (as the
`TRAIN` settings `precision`, `jit_compile`, `strategy`), and a resumed run
keeps them unless given again (the precision cannot change). Multi-worker:
run the same command on every worker, each with its `TF_CONFIG`, `--out` on
storage they share; only the chief writes the run folder.

Example:
```python
from kerasmm.cli import main
main(["train", "tiny_captioner", "--out", "runs/tiny_captioner", "--set", "epochs=2"])
```
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile

from kerasmm.cli.options import RECIPE_HELP, add_recipe_options, add_training_options
from kerasmm.recipes import DATA_FITTED, TRAIN_DEFAULTS, parse_setting

NAME = "train"
RECIPE_JSON = "recipe.json"
HISTORY_JSON = "history.json"
MODEL_FILE = "model.keras"
LOCK_FILE = ".lock"
CSV_FILE = "training.csv"
EARLY_STOPPING_JSON = "early_stopping.json"
LOG_DIR = "logs"
SAMPLES_RUN = "samples"
# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("epochs", "save_every", "jit_compile", "strategy", "validate", "patience")
# Settings a resumed run takes from its recipe.json unless the command line gives them.
_INHERITED = ("precision", "jit_compile", "strategy")
# Options that are TRAIN settings: argparse destination → setting.
_OPTION_SETTINGS = {"precision": "precision", "jit_compile": "jit_compile", "strategy": "strategy",
                    "patience": "patience", "val_fraction": "val_fraction"}


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
                               "eval needs --data too, unless --val-data or --val-fraction gives the run "
                               "held-out data)")
    add_training_options(parser)
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 silent, 1 a progress bar (default), 2 one line per epoch")
    return parser


def check_options(args):
    """ValueError for validation options that do not go together."""
    fraction = getattr(args, "val_fraction", None)
    if fraction is not None:
        if not 0 < fraction < 1:
            raise ValueError(f"--val-fraction must be between 0 and 1 (exclusive), got {fraction:g}.")
        if not args.data:
            raise ValueError("--val-fraction holds out part of --data: give --data SPEC too (or validate on other "
                             "data with --val-data SPEC).")
        if getattr(args, "val_data", None):
            raise ValueError("Give --val-data or --val-fraction, not both.")


def option_settings(args, previous=None):
    """`KEY=VALUE` settings of the training options; a resumed run's (`previous`) `_INHERITED` ones where not given."""
    settings = [f"{key}={getattr(args, dest)!r}" for dest, key in _OPTION_SETTINGS.items()
                if getattr(args, dest, None) is not None]
    if getattr(args, "val_data", None) or getattr(args, "val_fraction", None) is not None:
        settings.append("validate=True")
    given = {parse_setting(text)[0] for text in [*settings, *args.settings]}
    old = (previous or {}).get("train") or {}
    settings += [f"{key}={old[key]!r}" for key in _INHERITED if key not in given and key in old]
    return settings


def resolve_recipe(args, previous=None):
    """The recipe of `args.recipe` with `--data`, `--val-data`, the training options and `--set` applied.

    `previous`: the `recipe.json` of the run being resumed, whose precision,
    XLA and strategy settings are kept where the command line gives none.
    """
    from kerasmm import recipes

    check_options(args)
    recipe = recipes.load(args.recipe)
    if args.data:
        recipe = recipe.with_data(args.data)
    if getattr(args, "val_data", None):
        recipe = recipe.with_data(args.val_data, section="held_out")
    return recipe.with_settings([*args.settings, *option_settings(args, previous)])


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
    old_train = {**TRAIN_DEFAULTS, **(old.get("train") or {})}  # a run of an older kerasmm lacks newer settings
    old_model = {k: v for k, v in (old.get("model") or {}).items() if k not in ignore}
    new_model = {k: v for k, v in new["model"].items() if k not in ignore}
    differs = ["entry"] if old.get("entry") != new["entry"] else []
    differs += [f"model.{k}" for k in sorted(set(old_model) | set(new_model)) if old_model.get(k) != new_model.get(k)]
    differs += ["data"] if old.get("data") != new["data"] else []
    differs += [f"train.{key}" for key in new["train"]
                if key not in _RESUMABLE_CHANGES and old_train.get(key) != new["train"][key]]
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
    """Callbacks that keep `out/history.json`, epoch by epoch (metrics of resumed runs appended)."""
    import keras

    class EpochLogs(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            path = os.path.join(out, HISTORY_JSON)
            self.history = {"epoch": []}
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    self.history = json.load(f)

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

    return [EpochLogs()]


def logging_callbacks(out, samples):
    """`keras.callbacks.TensorBoard` (`out/logs`), a `CSVLogger` (`out/training.csv`) and, with `samples` (a
    dataset, or None), a `kerasmm.callbacks.SampleSummaries` of its first examples (`out/logs/samples`)."""
    import keras

    from kerasmm.callbacks import SampleSummaries

    callbacks = [keras.callbacks.TensorBoard(os.path.join(out, LOG_DIR), write_graph=False),
                 keras.callbacks.CSVLogger(os.path.join(out, CSV_FILE))]
    if samples is not None:
        dataset, name = samples
        callbacks.append(SampleSummaries.from_dataset(os.path.join(out, LOG_DIR, SAMPLES_RUN), dataset, name=name))
    return callbacks


def make_strategy(kind):
    """The `tf.distribute` strategy of `--strategy kind`; a ValueError in the command line's words."""
    from kerasmm import distribute

    try:
        return distribute.get_strategy(kind)
    except ValueError as error:
        if kind == "tpu":
            raise ValueError("--strategy tpu: no TPU is configured on this machine (set TPU_NAME to the TPU's name "
                             "or grpc:// address, or run where there is one).") from None
        raise ValueError(f"--strategy {kind}: {str(error).replace(f'kind={kind!r} ', '')}") from None


def run(args):
    """Run `kerasmm train` on parsed arguments; returns the exit status (0, or 1 when training diverged)."""
    from kerasmm.distribute.checkpointing import is_chief

    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder.")
    recipe = resolve_recipe(args, previous=run_settings(out))
    if recipe.train["val_fraction"] is not None and recipe.held_out is not None:
        raise ValueError("val_fraction holds out part of --data: give --data SPEC (and no --val-data).")
    if recipe.train["validate"] and recipe.held_out is None and recipe.train["val_fraction"] is None:
        raise ValueError("Validation needs held-out data, and --data leaves the recipe's out: give --val-data SPEC "
                         "or --val-fraction F.")
    check_same_run(out, recipe, ignore=DATA_FITTED)  # before reading the data: a quick refusal
    # Before any other TensorFlow work: a multi-worker strategy configures the runtime.
    strategy = make_strategy(recipe.train["strategy"])
    chief = is_chief(strategy)
    recipe, notes = recipe.fit_to_data(previous=run_settings(out))
    with locked(out) if chief else contextlib.nullcontext():
        check_same_run(out, recipe)
        for note in notes:
            print(note, flush=True)
        if not chief:  # a multi-worker run's other workers: the chief writes the run folder
            files = tempfile.mkdtemp(prefix="kerasmm-train-worker-")
            try:
                return train_run(recipe, out, args.verbose, strategy, files=files)
            finally:
                shutil.rmtree(files, ignore_errors=True)
        return train_run(recipe, out, args.verbose, strategy)


def _sample_source(recipe):
    """`(dataset, name)` whose first examples `SampleSummaries` shows: held-out data where there are some."""
    if recipe.held_out is not None or recipe.train["val_fraction"] is not None:
        return recipe.dataset("held_out"), "held_out"
    return recipe.dataset("data"), "train"


def train_run(recipe, out, verbose, strategy=None, files=None):
    """Train `recipe` into the run folder `out` (locked) under `strategy`; returns the exit status.

    `files`: where the run's files but the checkpoints go (default `out`;
    a multi-worker run's other workers write theirs to a folder of their own).
    """
    import keras
    import tensorflow as tf

    from kerasmm.distribute import NonFiniteLossError, fit_resumable

    files = files or out
    stopped = os.path.join(out, EARLY_STOPPING_JSON)  # the chief's: every worker of a cluster sees it
    if os.path.isfile(stopped) and os.path.isfile(os.path.join(out, MODEL_FILE)):
        with open(stopped, encoding="utf-8") as f:
            when = json.load(f)
        print(f"Training in {out} stopped early after epoch {when['stopped_epoch']} (best: epoch "
              f"{when['best_epoch']}, val_loss {when['best_val_loss']:.4g}); {os.path.join(out, MODEL_FILE)} holds "
              "the best weights. Give a new --out to train again.")
        return 0
    strategy = strategy or tf.distribute.get_strategy()
    write_json(os.path.join(files, RECIPE_JSON), recipe.to_dict())
    keras.utils.set_random_seed(recipe.train["seed"])
    with strategy.scope():
        model = recipe.build_model()
    dataset = recipe.dataset("data", shuffle=True)
    callbacks = [*epoch_callbacks(files), *logging_callbacks(files, _sample_source(recipe))]
    fit_kwargs = {}
    if recipe.train["validate"]:
        fit_kwargs["validation_data"] = recipe.dataset("held_out")
    early_stopping = None
    if recipe.train["patience"] is not None:
        early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.train["patience"],
                                                       restore_best_weights=True)
        callbacks.append(early_stopping)
    how = [f"{strategy.num_replicas_in_sync} replica{'s' if strategy.num_replicas_in_sync > 1 else ''} "
           f"({type(strategy).__name__})", f"precision {model.dtype_policy.name}"]
    print(f"Training {recipe.entry} ({model.count_params():,} parameters) from recipe {recipe.name} into {out}; "
          + ", ".join(how), flush=True)
    try:
        fit_resumable(model, dataset, recipe.train["epochs"], directory=os.path.join(out, "checkpoints"),
                      steps_per_epoch=recipe.train["steps_per_epoch"], save_every=recipe.train["save_every"],
                      callbacks=callbacks, verbose=verbose, **fit_kwargs)
    except NonFiniteLossError as error:
        print(f"kerasmm {NAME}: error: {error}", file=sys.stderr)
        return 1
    model.save(os.path.join(files, MODEL_FILE))
    with open(os.path.join(files, HISTORY_JSON), encoding="utf-8") as f:
        history = json.load(f)
    if early_stopping is not None and early_stopping.stopped_epoch > 0:
        write_json(os.path.join(files, EARLY_STOPPING_JSON), {"stopped_epoch": early_stopping.stopped_epoch + 1,
                             "best_epoch": early_stopping.best_epoch + 1,
                             "best_val_loss": float(early_stopping.best), "patience": recipe.train["patience"]})
        print(f"Stopped early after epoch {early_stopping.stopped_epoch + 1}: val_loss did not improve for "
              f"{recipe.train['patience']} epochs; saving the weights of epoch {early_stopping.best_epoch + 1}.")
    final = {k: v[-1] for k, v in history.items() if v}
    print(f"Saved {os.path.join(out, MODEL_FILE)}; after epoch {final.pop('epoch', '?')}: "
          + json.dumps({k: round(v, 4) for k, v in sorted(final.items()) if v is not None}))
    return 0
