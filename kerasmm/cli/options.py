"""Options that `kerasmm train` and `kerasmm eval` share: `--data` and `--set` (see `kerasmm.recipes`)."""

from kerasmm.recipes import DATA_FORMS

SET_HELP = (
    "a recipe setting, KEY=VALUE (a Python literal, else a string); repeatable. Keys: epochs, batch_size, "
    "seed, save_every, steps_per_epoch; examples, held_out_examples, learning_rate (short for "
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
