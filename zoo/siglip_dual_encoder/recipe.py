"""siglip_dual_encoder on shapes captions: SigLIP-style image ↔ text retrieval.

Run:
    kerasmm train siglip_dual_encoder --out runs/siglip_dual_encoder
    kerasmm eval runs/siglip_dual_encoder

Result (2026-11-25, 2 shared CPU cores, 70 s for the train command): after 8 epochs, training loss
2.804; held out (200 test-split examples): text→image R@1 0.120, text→image R@5 0.530, image→text
R@1 0.130, image→text R@5 0.560, text→image median rank 5.0, loss 2.714.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "siglip_dual_encoder"
MODEL = {}
TRAIN = {"epochs": 8, "batch_size": 64}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 3000}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 200, "split": "test"}
