"""clip_classifier on shapes classification: a frozen pretrained CLIP vision tower + caption, weighted sum.

Run (downloads keras-hub's clip_vit_base_patch16 once into ~/.cache/kagglehub; pass
--set model.image_preset=DIR for a local preset instead, --set model.unfreeze_last=2 to fine-tune
the tower's top two blocks):
    kerasmm train clip_classifier --out runs/clip_classifier
    kerasmm eval runs/clip_classifier

Result: not measured on the development machine, which reaches no model hub. The tiny twin
(`tiny_clip_classifier`, a small random CLIP vision tower) trains, evaluates and round trips in
the test suite.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "clip_classifier"
MODEL = {}
TRAIN = {"epochs": 2, "batch_size": 32}
DATA = {"reader": "shapes", "task": "classification", "num_examples": 2000}
HELD_OUT = {"reader": "shapes", "task": "classification", "num_examples": 500, "split": "test"}
