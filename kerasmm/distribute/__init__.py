"""tf.distribute for kerasmm: pick a strategy from the hardware and the cluster spec.

Models never import this package: strategies are applied from outside
(`with strategy.scope(): model = kerasmm.zoo.get(...)`).

Example:
```python
import kerasmm
strategy = kerasmm.distribute.get_strategy()          # "auto"
with strategy.scope():
    model = kerasmm.zoo.get("tiny_dual_encoder")
```
"""

from kerasmm.distribute.strategy import KINDS, cluster_spec, get_strategy  # noqa: F401
from kerasmm.distribute import data_service  # noqa: F401
from kerasmm.distribute.data_service import LocalDataService, distribute_on_service  # noqa: F401
from kerasmm.distribute.multi_worker import (  # noqa: F401
    distribute_dataset,
    in_multi_worker_mode,
    per_replica_batch_size,
    scaled_learning_rate,
)
from kerasmm.distribute.resume import NonFiniteLossError, fit_resumable  # noqa: F401
