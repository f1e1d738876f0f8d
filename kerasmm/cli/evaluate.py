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

A captioner is scored against every reference caption of an image (the COCO
protocol) where the held-out reader groups them (`from_coco`, `from_tfds`:
`captions="references"` unless `--set held_out.captions=...` says otherwise).
When pycocoevalcap is installed (the `eval` extra), the same greedy captions
are also scored by its `Bleu(4)`, `Cider` (CIDEr-D) and `Rouge` scorers, one
line each before the JSON: on kerasmm's own tokenisation (the model's
WordPiece tokens, as its metrics count them: the two agree), and, when Java
runs, on the raw captions through its PTB tokenizer (the published COCO
figures' tokenisation).

Example:
```python
from kerasmm.cli import main
main(["eval", "runs/captioner"])   # {"bleu_1": ..., "bleu_4": ..., "cider_d": ..., "loss": ..., "rouge_l": ...}
```
"""

import contextlib
import dataclasses
import json
import os
import shutil
import sys

import numpy as np

from kerasmm.cli.options import RECIPE_HELP, add_recipe_options
from kerasmm.validation import preview

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
    parser.add_argument("--quiet", action="store_true", help="no progress bar (on stderr) while scoring")
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
    raise ValueError(f"The held-out data's classes ({preview(data_names)}) are not those of the model in {path} "
                     f"({preview(model_names)}): label i would be scored as another class. Give data of the "
                     "model's classes.")


def is_captioner(model):
    """Whether `model` writes captions (a question answerer's answers are scored by its own vqa_accuracy)."""
    return getattr(model, "serving_family", None) == "captioner" and not hasattr(model, "answer")


def with_every_reference(recipe):
    """`recipe` whose held-out reader gives every caption of an image (where it can and is not told otherwise)."""
    from kerasmm import recipes

    spec = recipe.held_out
    if not spec or "captions" in spec or "captions" not in recipes.reader_arguments(spec["reader"]):
        return recipe
    return dataclasses.replace(recipe, held_out={**spec, "captions": "references"})


def caption_pairs(model, dataset):
    """`(hypotheses, references)` of `dataset`: greedy token ids as `evaluate` makes them, reference strings."""
    hypotheses, references = [], []
    for features, targets in dataset:
        targets = np.asarray(targets)
        hypotheses.extend(model.generate(features, sampler="greedy", batch_size=max(1, len(targets)),
                                         return_tokens=True))
        for row in targets.reshape(len(targets), -1):
            references.append([t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in row])
    return hypotheses, [[t for t in row if t] for row in references]


def _words(ids, model):
    """Caption ids as kerasmm's metrics count them: cut at the end token, special and padding ids dropped."""
    words = []
    for token in ids:
        if token == model.end_id:
            break
        if token not in (0, model.start_id):
            words.append(model.preprocessor.tokenizer.id_to_token(int(token)))
    return " ".join(words)


def coco_scorers(gts, res):
    """pycocoevalcap's BLEU-1..4, CIDEr-D and ROUGE-L of `{id: [caption]}` dicts."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["cider_d"] = float(Cider().compute_score(gts, res)[0])
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    return scores


def coco_scores(model, hypotheses, references):
    """`{tokenisation: scores}` from pycocoevalcap: "kerasmm" always, "PTB" when Java runs its tokenizer."""
    caption_ids = model.preprocessor.caption_ids
    kept = [i for i, refs in enumerate(references) if refs]
    gts, res = {}, {}
    for i in kept:  # references cut to the model's length, as evaluate tokenises them
        refs = [_words(ids, model) for ids in np.asarray(caption_ids(np.array(references[i], dtype=object)))]
        if any(refs):
            gts[i], res[i] = [r for r in refs if r], [_words(hypotheses[i], model)]
    results = {"kerasmm": coco_scorers(gts, res)} if gts else {}
    if shutil.which("java") and kept:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        texts = model.detokenize(np.stack([hypotheses[i] for i in kept]))
        try:
            gts = PTBTokenizer().tokenize({i: [{"caption": r} for r in references[i]] for i in kept})
            res = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in zip(kept, texts)})
        except Exception as error:  # noqa: BLE001 - a Java that cannot run the tokenizer: report and go on
            results["PTB"] = f"PTB tokenizer failed: {error}"
        else:
            results["PTB"] = coco_scorers(gts, res)
    return results


def run(args):
    """Run `kerasmm eval` on parsed arguments; returns the exit status (0)."""
    from kerasmm.cli.export import load_model

    recipe, path = resolve(args)
    model = load_model(path)
    if is_captioner(model):
        recipe = with_every_reference(recipe)
    held_out = recipe.dataset("held_out")
    check_classes(model, held_out, path)
    with contextlib.redirect_stdout(sys.stderr):  # Keras' progress bar on stderr: stdout has the JSON
        metrics = model.evaluate(held_out, verbose=0 if args.quiet else 1, return_dict=True)
    if is_captioner(model) and model.preprocessor is not None:
        try:
            import pycocoevalcap  # noqa: F401
        except ImportError:
            pass
        else:
            for tokenisation, scores in coco_scores(model, *caption_pairs(model, held_out)).items():
                print(f"pycocoevalcap, {tokenisation} tokenisation: "
                      f"{scores if isinstance(scores, str) else json.dumps(scores)}")
    print(json.dumps({k: float(v) for k, v in sorted(metrics.items())}))
    return 0
