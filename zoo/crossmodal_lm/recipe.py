"""crossmodal_lm on shapes captions, from the image, the tone or both.

Run:
    kerasmm train crossmodal_lm --out runs/crossmodal_lm
    kerasmm eval runs/crossmodal_lm

Result (2026-11-25, 2 shared CPU cores, 54 s for the train command): after 4 epochs, training loss
0.330, token_accuracy 0.680; held out (200 test-split examples): BLEU-4 0.375, CIDEr-D 4.732,
token_accuracy 0.751, loss 0.273.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "crossmodal_lm"
MODEL = {}
TRAIN = {"epochs": 4, "batch_size": 32}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 1500, "with_audio": True}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 200, "split": "test", "with_audio": True}
