"""weighted_sum_classifier on shapes classification: image + caption, weighted sum.

Run:
    kerasmm train weighted_sum_classifier --out runs/weighted_sum_classifier
    kerasmm eval runs/weighted_sum_classifier

Result (2026-11-25, 2 shared CPU cores, 90 s for the train command): after 6 epochs, training
accuracy 0.744, loss 0.525; held out (1000 test-split examples): accuracy 0.735, loss 0.561.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "weighted_sum_classifier"
MODEL = {}
TRAIN = {"epochs": 6, "batch_size": 32}
DATA = {"reader": "shapes", "task": "classification", "num_examples": 3000}
HELD_OUT = {"reader": "shapes", "task": "classification", "num_examples": 1000, "split": "test"}
