"""dual_encoder on shapes captions: CLIP-style image ↔ text retrieval.

Run:
    kerasmm train dual_encoder --out runs/dual_encoder
    kerasmm eval runs/dual_encoder

Result (2026-11-25, 2 shared CPU cores, 47 s for the train command): after 5 epochs, training loss
0.824; held out (200 test-split examples): text→image R@1 0.485, text→image R@5 0.955, image→text
R@1 0.470, image→text R@5 0.920, text→image median rank 2.0, loss 0.711.

Small real data (benchmarks/real_data.py, `zoo.get("dual_encoder", data=train)`, 90 s of fit, 2026-12-05):
held-out recall@5 ÷ chance, text→image / image→text: Open Clip Art 6.1× / 5.6×, application icons
1.4× / 2.0× (benchmarks/README.md).
"""

# Format and --set keys: kerasmm/recipes.py. Here MODEL = {} is the zoo entry as registered.
ENTRY = "dual_encoder"
MODEL = {}
TRAIN = {"epochs": 5, "batch_size": 64}
DATA = {"reader": "shapes", "task": "captioning", "num_examples": 3000}
HELD_OUT = {"reader": "shapes", "task": "captioning", "num_examples": 200, "split": "test"}
