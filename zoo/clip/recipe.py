"""clip on shapes captions: fine-tune a whole pretrained CLIP (keras-hub CLIPBackbone) for image ↔ text retrieval.

Run (downloads keras-hub's clip_vit_base_patch16 once into ~/.cache/kagglehub; pass
--set model.preset=DIR for a local preset or a converted checkpoint instead):
    kerasmm train clip --out runs/clip
    kerasmm eval runs/clip

Result: not measured on the development machine, which reaches no model hub. The tiny twin
(`tiny_clip`, a small random CLIP) trains, evaluates, exports and resumes in the test suite.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "clip"
MODEL = {}
TRAIN = {"epochs": 1, "batch_size": 32}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 1000}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 200, "split": "test"}
