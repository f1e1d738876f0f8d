"""`kerasmm eval`: score a trained model on its recipe's held-out data; prints the metrics as JSON.

Usage:
    kerasmm eval DIR [--data SPEC] [--set KEY=VALUE ...]
    kerasmm eval RECIPE --model PATH [--data SPEC] [--set KEY=VALUE ...]

DIR is a `kerasmm train` folder: its `model.keras` is scored on the held-out
data of its `recipe.json`. Or name a recipe (as for `train`) and the model
with `--model` (a `.keras` file or a folder holding `model.keras`).
`--data` scores other data instead; `--set held_out.KEY=VALUE`,
`--set held_out_examples=N` or `--set batch_size=N` change the held-out
reader. The last line printed is the JSON of the metrics (`model.evaluate`).
Held-out data whose class names differ from the model's (other folders,
another order) are refused: their labels would count against other classes.

Example:
```python
from kerasmm.cli import main
main(["eval", "runs/captioner"])   # {"bleu_4": ..., "cider_d": ..., "loss": ..., "token_accuracy": ...}
```
"""

import json
import os

from kerasmm.cli.options import RECIPE_HELP, add_recipe_options

NAME = "eval"


def add_parser(subparsers):
    """Register `eval` on an argparse subparsers object; returns its parser."""
    summary = __doc__.splitlines()[0].split(": ", 1)[1]
    parser = subparsers.add_parser(
        NAME, help=summary, description=summary[0].upper() + summary[1:],
        epilog="Examples: kerasmm eval runs/captioner; kerasmm eval captioner --model runs/captioner/model.keras",
    )
    parser.add_argument("target", metavar="RECIPE_OR_DIR",
                        help=f"a kerasmm train folder (recipe.json + model.keras), or {RECIPE_HELP}")
    parser.add_argument("--model", metavar="PATH",
                        help="a .keras file or a folder holding model.keras (default: RECIPE_OR_DIR/model.keras)")
    add_recipe_options(parser, "score this data instead of the recipe's held-out data")
    return parser


def resolve(args):
    """`(recipe, model path)` of the parsed arguments, held-out data and settings applied."""
    from kerasmm import recipes
    from kerasmm.cli.train import RECIPE_JSON

    run_settings = os.path.join(args.target, RECIPE_JSON)
    if os.path.isdir(args.target):
        if not os.path.isfile(run_settings):
            raise FileNotFoundError(f"{args.target} holds no {RECIPE_JSON}: give a kerasmm train folder, "
                                    "or a recipe and --model.")
        with open(run_settings, encoding="utf-8") as f:
            recipe = recipes.Recipe.from_dict(json.load(f))
        model = args.model or args.target
    else:
        recipe = recipes.load(args.target)
        if not args.model:
            raise ValueError(f"Give the model to score with --model (a .keras file or a kerasmm train folder); "
                             f"{args.target} is a recipe, not a run folder.")
        model = args.model
    if args.data:
        recipe = recipe.with_data(args.data, section="held_out")
    return recipe.with_settings(args.settings), model


def check_classes(model, held_out, path):
    """ValueError unless the held-out data's class names (where they have them) are the model's, in order."""
    data_names = getattr(held_out, "class_names", None)
    model_names = getattr(model, "class_names", None)
    if data_names is None or model_names is None or [str(n) for n in data_names] == list(model_names):
        return
    from kerasmm.recipes import preview_names

    raise ValueError(f"The held-out data's classes ({preview_names(data_names)}) are not those of the model in {path} "
                     f"({preview_names(model_names)}): label i would be scored as another class. Give data of the "
                     "model's classes.")


def run(args):
    """Run `kerasmm eval` on parsed arguments; returns the exit status (0)."""
    from kerasmm.cli.export import load_model

    recipe, path = resolve(args)
    held_out = recipe.dataset("held_out")
    model = load_model(path)
    check_classes(model, held_out, path)
    metrics = model.evaluate(held_out, verbose=0, return_dict=True)
    print(json.dumps({k: float(v) for k, v in sorted(metrics.items())}))
    return 0
