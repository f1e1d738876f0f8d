"""audio_text_dual_encoder on shapes captions with their tones: audio ↔ text retrieval.

Run:
    kerasmm train audio_text_dual_encoder --out runs/audio_text_dual_encoder
    kerasmm eval runs/audio_text_dual_encoder

Result (2026-11-25, 2 shared CPU cores, 39 s for the train command): after 6 epochs, training loss
3.234; held out (200 test-split examples): text→audio R@1 0.020, text→audio R@5 0.110, audio→text
R@1 0.010, audio→text R@5 0.085, text→audio median rank 25.5, loss 3.094.
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "audio_text_dual_encoder"
MODEL = {}
TRAIN = {"epochs": 6, "batch_size": 64}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 3000, "with_audio": True}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 200, "split": "test", "with_audio": True}
