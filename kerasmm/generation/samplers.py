"""Sampler names → keras_hub samplers, with clear errors for unknown names."""

import keras_hub

from kerasmm import validation
from kerasmm.generation.beam import BeamSampler

# name → (keras_hub class, the keyword its width/threshold argument maps to)
SAMPLERS = {
    "greedy": keras_hub.samplers.GreedySampler,
    "beam": BeamSampler,  # keras_hub's, with a cheaper cache reorder
    "top_k": keras_hub.samplers.TopKSampler,
    "top_p": keras_hub.samplers.TopPSampler,
}


def get_sampler(sampler="greedy", num_beams=4, k=5, p=0.9, temperature=1.0, seed=None):
    """A keras_hub `Sampler` from a name in `SAMPLERS` or a sampler instance.

    `num_beams` sets the beam width of "beam", `k` and `p` the cut-offs of
    "top_k" and "top_p" (the random samplers take `seed`).

    Example:
    ```python
    from kerasmm.generation import get_sampler
    get_sampler("top_k", k=10, seed=1)
    ```
    """
    if isinstance(sampler, keras_hub.samplers.Sampler):
        return sampler
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; valid samplers: {sorted(SAMPLERS)} or a keras_hub Sampler.")
    if sampler == "greedy":
        return keras_hub.samplers.GreedySampler(temperature=temperature)
    if sampler == "beam":
        num_beams = validation.positive_int("num_beams", num_beams)
        return BeamSampler(num_beams=num_beams, temperature=temperature)
    if sampler == "top_k":
        k = validation.positive_int("k", k)
        return keras_hub.samplers.TopKSampler(k=k, seed=seed, temperature=temperature)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p!r}.")
    return keras_hub.samplers.TopPSampler(p=p, seed=seed, temperature=temperature)
