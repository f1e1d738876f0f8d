"""Export for serving: SavedModels that TF Serving runs on raw JPEG/PNG bytes, WAV bytes and strings.

`saved_model(model, export_dir)` writes `export_dir/<version>/` with the
signatures its task declares (`serving_signatures`, one
`kerasmm/models/<family>/<family>_serving.py` per family; the generic part
is `kerasmm.export.signatures`), its
vocabulary and labels as assets, and warm-up requests; decoding, resizing,
tokenisation, the network, generation and detokenisation all run in the
graph. `verify` checks an export in a fresh process that cannot import
kerasmm or keras.

Example:
```python
import kerasmm
model = kerasmm.zoo.get("tiny_captioner")
path = kerasmm.export.saved_model(model, "out/captioner")
report = kerasmm.export.verify(path)          # loads it without kerasmm, replays the warm-up requests
```
"""

from kerasmm.export.saved_model import saved_model  # noqa: F401
from kerasmm.export.signatures import family  # noqa: F401
from kerasmm.export.verify import verify  # noqa: F401
from kerasmm.export.warmup import read_requests as read_warmup_requests  # noqa: F401
