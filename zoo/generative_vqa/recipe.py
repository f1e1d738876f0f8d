"""generative_vqa on shapes questions: the question is the decoder's prompt, the answer is generated.

Run:
    kerasmm train generative_vqa --out runs/generative_vqa
    kerasmm eval runs/generative_vqa

Result (2026-12-05, 2 shared CPU cores, 97 s for the train command): after 8 epochs, training
token_accuracy 0.845 (answer tokens and the end token), loss 0.0386; held out (500 test-split
questions): vqa_accuracy 0.708, token_accuracy 0.854 (always giving each question type's most
common answer: 0.316; zoo/generative_vqa/README.md).
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "generative_vqa"
MODEL = {}
TRAIN = {"epochs": 8, "batch_size": 64}
DATA = {"reader": "shapes", "task": "vqa", "answers": "text", "num_examples": 4000}
HELD_OUT = {"reader": "shapes", "task": "vqa", "answers": "text", "num_examples": 500, "split": "test"}
