"""siglip on shapes captions: fine-tune a whole pretrained SigLIP (keras-hub SigLIPBackbone) for image ↔ text retrieval.

Run (downloads keras-hub's siglip_base_patch16_224 once into ~/.cache/kagglehub; pass
--set model.preset=DIR for a local preset or a converted checkpoint instead):
    kerasmm train siglip --out runs/siglip
    kerasmm eval runs/siglip

Result: not measured on the development machine, which reaches no model hub. The tiny twin
(`tiny_siglip`, a small random SigLIP) trains, evaluates, exports and resumes in the test suite.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "siglip"
MODEL = {}
TRAIN = {"epochs": 1, "batch_size": 32}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 1000}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 200, "split": "test"}
