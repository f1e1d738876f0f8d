"""Sampler names → keras_hub samplers, with clear errors for unknown names and bad options."""

import math
import numbers

import keras_hub

from kerasmm import validation
from kerasmm.generation.beam import BeamSampler

# name → keras_hub class
SAMPLERS = {
    "greedy": keras_hub.samplers.GreedySampler,
    "beam": BeamSampler,  # keras_hub's, with a cheaper cache reorder
    "random": keras_hub.samplers.RandomSampler,
    "top_k": keras_hub.samplers.TopKSampler,
    "top_p": keras_hub.samplers.TopPSampler,
}
# The samplers that draw tokens at random (and so take a `seed`).
RANDOM_SAMPLERS = ("random", "top_k", "top_p")


def get_sampler(sampler="greedy", num_beams=4, k=None, p=0.9, temperature=1.0, seed=None):
    """A keras_hub `Sampler` from a name in `SAMPLERS` or a sampler instance.

    `num_beams` sets the beam width of "beam", `k` (default 5) the cut-off
    of "top_k", `p` that of "top_p" (with `k`, top-p keeps at most `k`
    tokens); `temperature` (> 0) divides the logits of every sampler; the
    random samplers ("random", "top_k", "top_p") take `seed`. See
    `resolve_sampler` for `generate`'s keyword arguments.

    Example:
    ```python
    from kerasmm.generation import get_sampler
    get_sampler("top_k", k=10, seed=1)
    ```
    """
    if isinstance(sampler, keras_hub.samplers.Sampler):
        return sampler
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; valid samplers: {sorted(SAMPLERS)} or a keras_hub Sampler.")
    temperature = check_temperature(temperature)
    seed = validation.non_negative_int("seed", seed, allow_none=True)
    if sampler == "greedy":
        return keras_hub.samplers.GreedySampler(temperature=temperature)
    if sampler == "beam":
        num_beams = validation.positive_int("num_beams", num_beams)
        return BeamSampler(num_beams=num_beams, temperature=temperature)
    if sampler == "random":
        return keras_hub.samplers.RandomSampler(seed=seed, temperature=temperature)
    if sampler == "top_k":
        k = validation.positive_int("k", 5 if k is None else k)
        return keras_hub.samplers.TopKSampler(k=k, seed=seed, temperature=temperature)
    k = validation.positive_int("k", k, allow_none=True)
    return keras_hub.samplers.TopPSampler(p=check_top_p("p", p), k=k, seed=seed, temperature=temperature)


def check_temperature(temperature, name="temperature"):
    """`temperature` as a float if it is a finite number > 0 (the logits are divided by it)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {temperature!r}.")
    return float(temperature)


def check_top_p(name, p):
    """`p` as a float if it is in (0, 1] (the probability mass top-p sampling keeps)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 < p <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {p!r}.")
    return float(p)


def resolve_sampler(sampler=None, default="greedy", *, num_beams=4, temperature=None, top_k=None, top_p=None,
                    seed=None):
    """The keras_hub `Sampler` that `generate`'s options describe (one-line ValueErrors for bad combinations).

    `sampler` (a name in `SAMPLERS` or a keras_hub `Sampler`) wins; without
    it `top_p` picks "top_p", else `top_k` picks "top_k", else `default`
    (the model's sampler) is used. `temperature` (> 0) applies to every
    named sampler; `top_k` to "top_k" (its k) and "top_p" (a cut-off
    before the nucleus); `top_p` to "top_p" only; `seed` to the random
    samplers ("random", "top_k", "top_p"). None of them can be combined
    with a sampler object: set those on the object itself.

    Example:
    ```python
    from kerasmm.generation import resolve_sampler
    resolve_sampler(top_p=0.9, temperature=0.7, seed=1)   # keras_hub TopPSampler(p=0.9, temperature=0.7, seed=1)
    ```
    """
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
    given = [name for name, value in options.items() if value is not None]
    explicit = sampler is not None
    if sampler is None:
        sampler = "top_p" if top_p is not None else "top_k" if top_k is not None else default
    if isinstance(sampler, keras_hub.samplers.Sampler):
        if given:
            whose = "the sampler object" if explicit else "the model's default sampler object"
            raise ValueError(f"{', '.join(given)} cannot be combined with {whose} ({type(sampler).__name__}); "
                             "set them on the sampler itself or pass a sampler name.")
        return sampler
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; valid samplers: {sorted(SAMPLERS)} or a keras_hub Sampler.")
    which = repr(sampler) if explicit else f"{sampler!r} (the model's default sampler)"
    if top_p is not None and sampler != "top_p":
        raise ValueError(f"top_p applies to sampler='top_p' only, not {which}.")
    if top_k is not None and sampler not in ("top_k", "top_p"):
        raise ValueError(f"top_k applies to sampler='top_k' or 'top_p' only, not {which}.")
    if seed is not None and sampler not in RANDOM_SAMPLERS:
        raise ValueError(f"seed applies to the random samplers {RANDOM_SAMPLERS} only; {which} is deterministic.")
    kwargs = {"num_beams": num_beams, "seed": seed, "temperature": 1.0 if temperature is None else temperature}
    if top_p is not None:
        kwargs["p"] = check_top_p("top_p", top_p)
    if top_k is not None:
        kwargs["k"] = validation.positive_int("top_k", top_k)
    return get_sampler(sampler, **kwargs)
