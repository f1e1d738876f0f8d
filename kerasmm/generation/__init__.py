"""In-graph text generation: samplers by name and the helpers every decoding loop shares.

The loops themselves are keras_hub's samplers (a `while_loop` over a
preallocated token buffer); a model supplies the `next(prompt, cache, index)`
step with its KV cache (see `kerasmm.models.captioner.captioner_task.Captioner.generate`).

Example:
```python
from kerasmm.generation import get_sampler
sampler = get_sampler("beam", num_beams=4)
sampler = resolve_sampler(top_p=0.9, temperature=0.7, seed=1)   # generate's keywords
```
"""

from kerasmm.generation.beam import BeamSampler  # noqa: F401
from kerasmm.generation.decoding import (  # noqa: F401
    forbid_padding,
    freeze_finished,
    initial_prompt,
    strip_after_end,
)
from kerasmm.generation.samplers import (  # noqa: F401
    RANDOM_SAMPLERS,
    SAMPLERS,
    get_sampler,
    resolve_sampler,
)
from kerasmm.generation.text import attach_punctuation  # noqa: F401
