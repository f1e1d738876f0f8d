"""Evaluation metrics: `kerasmm.metrics.RetrievalMetrics` and friends.

Example:
```python
import numpy as np
from kerasmm.metrics import retrieval_scores
scores = retrieval_scores(np.eye(4, dtype="float32"), np.eye(4, dtype="float32"))
scores["recall@1"]   # 1.0
```
"""

from kerasmm.metrics.answer import VQAAccuracy, answer_normalisation  # noqa: F401
from kerasmm.metrics.caption import (  # noqa: F401
    Bleu,
    CiderD,
    RougeL,
    caption_scores,
)
from kerasmm.metrics.retrieval import (  # noqa: F401
    RetrievalMetrics,
    paired_retrieval_scores,
    reranked_retrieval_scores,
    retrieval_scores,
)
