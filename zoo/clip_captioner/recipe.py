"""clip_captioner on shapes captions: a frozen pretrained CLIP vision tower's patch tokens → causal decoder.

Run (downloads keras-hub's clip_vit_base_patch16 once into ~/.cache/kagglehub; pass
--set model.image_preset=DIR for a local preset instead, --set model.unfreeze_last=2 to fine-tune
the tower's top two blocks):
    kerasmm train clip_captioner --out runs/clip_captioner
    kerasmm eval runs/clip_captioner

Result: not measured on the development machine, which reaches no model hub. The tiny twin
(`tiny_clip_captioner`, a small random CLIP vision tower) trains, evaluates (BLEU-4, CIDEr-D),
generates, exports for raw JPEG bytes and round trips in the test suite.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "clip_captioner"
MODEL = {}
TRAIN = {"epochs": 2, "batch_size": 32}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 2000}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 300, "split": "test"}
