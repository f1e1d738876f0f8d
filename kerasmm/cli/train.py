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

Example:
```python
from kerasmm.cli import main
main(["train", "tiny_captioner", "--out", "runs/tiny_captioner", "--set", "epochs=2"])
```
"""

import json
import os
import sys

from kerasmm.cli.options import RECIPE_HELP, add_recipe_options

NAME = "train"
RECIPE_JSON = "recipe.json"
HISTORY_JSON = "history.json"
MODEL_FILE = "model.keras"
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
    add_recipe_options(parser, "train on this data instead of the recipe's (then eval needs --data too)")
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


def check_same_run(out, recipe):
    """ValueError if `out` holds a run of other settings (only `_RESUMABLE_CHANGES` may differ)."""
    path = os.path.join(out, RECIPE_JSON)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        old = json.load(f)
    new = recipe.to_dict()
    differs = [key for key in ("entry", "model", "data") if old.get(key) != new[key]]
    differs += [f"train.{key}" for key in new["train"]
                if key not in _RESUMABLE_CHANGES and old.get("train", {}).get(key) != new["train"][key]]
    if differs:
        raise ValueError(f"{out} holds a run with other settings ({', '.join(differs)} differ): resume it with "
                         "the same recipe and settings, or give a new --out.")


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
    check_same_run(out, recipe)

    import keras

    from kerasmm.distribute import NonFiniteLossError, fit_resumable

    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, RECIPE_JSON), recipe.to_dict())
    keras.utils.set_random_seed(recipe.train["seed"])
    model = recipe.build_model()
    dataset = recipe.dataset("data", shuffle=True)
    print(f"Training {recipe.entry} ({model.count_params():,} parameters) from recipe {recipe.name} into {out}",
          flush=True)
    try:
        fit_resumable(model, dataset, recipe.train["epochs"], directory=os.path.join(out, "checkpoints"),
                      steps_per_epoch=recipe.train["steps_per_epoch"], save_every=recipe.train["save_every"],
                      callbacks=epoch_callbacks(out), verbose=args.verbose)
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
