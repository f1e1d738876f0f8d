"""Options of `kerasmm train` and `kerasmm eval`: shared `--data` and `--set` (see `kerasmm.recipes`); train's own."""

from kerasmm.recipes import DATA_FORMS

SET_HELP = (
    "a recipe setting, KEY=VALUE (a Python literal, else a string); repeatable. Keys: epochs, batch_size, "
    "seed, save_every, steps_per_epoch, precision, jit_compile, strategy, validate, val_fraction, "
    "patience; examples, held_out_examples, learning_rate (short for "
    "data.num_examples, held_out.num_examples, model.learning_rate); model.KEY[.SUBKEY] (architecture: "
    "model.hidden_dim=64, model.encoders.text=None); data.KEY, held_out.KEY (reader arguments: "
    "data.captions=all, data.on_error=skip)"
)
RECIPE_HELP = ("a zoo recipe name (zoo/<name>/recipe.py; tiny_<name>: the same recipe on the tiny twin, with a "
               "few examples) or the path of a recipe .py file")


def add_recipe_options(parser, data_help):
    """Add `--data SPEC` and `--set KEY=VALUE` (repeatable) to `parser`."""
    parser.add_argument("--data", metavar="SPEC", help=f"{data_help}; SPEC is one of {DATA_FORMS}")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help=SET_HELP)


PRECISION_CHOICES = ("float32", "mixed_float16", "mixed_bfloat16")  # kerasmm.models.precision.PRECISIONS
STRATEGY_CHOICES = ("auto", "default", "mirrored", "multi_worker", "tpu")  # kerasmm.distribute.KINDS


def add_training_options(parser):
    """Add `kerasmm train`'s validation, precision, XLA and strategy options to `parser`.

    Each is a `TRAIN` setting of the recipe (see `kerasmm.recipes`), kept in the
    run's `recipe.json`; the values are checked there, so a bad one is a one-line error.
    """
    import argparse

    parser.add_argument("--val-data", metavar="SPEC",
                        help="validate on this data after every epoch (it becomes the run's held-out data, which "
                             "kerasmm eval DIR scores); SPEC as for --data")
    parser.add_argument("--val-fraction", type=float, metavar="F",
                        help="hold out this fraction (0 < F < 1) of --data, the same examples every time, to "
                             "validate on after every epoch (and for kerasmm eval DIR); trains on the rest")
    parser.add_argument("--patience", type=int, metavar="N",
                        help="with a validation set: stop when val_loss has not improved for N epochs, keeping "
                             "the best epoch's weights in model.keras")
    parser.add_argument("--precision", metavar="{" + ",".join(PRECISION_CHOICES) + "}",
                        help="the model's dtype policy (default: the global Keras policy, float32); a resumed "
                             "run keeps its own")
    parser.add_argument("--jit", dest="jit_compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the train step with XLA (--jit) or not (--no-jit); default Keras' choice "
                             "(XLA on GPUs and TPUs without a distribution strategy)")
    parser.add_argument("--strategy", metavar="{" + ",".join(STRATEGY_CHOICES) + "}",
                        help="tf.distribute strategy the model is built and trained under: auto (a TPU, else a "
                             "TF_CONFIG cluster, else all GPUs when several, else one device; the default), "
                             "default (one device), mirrored (all GPUs of this machine), multi_worker (run the same "
                             "command on every worker, each with its TF_CONFIG; --out on shared storage) or tpu")
