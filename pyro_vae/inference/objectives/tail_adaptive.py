"""Tail-adaptive f-divergence gradients (Wang, Liu & Liu 2018), per data point.

With K particles and log weights log w_k, each particle's gradient is weighted by
γ_k ∝ F̂(w_k)^β, β ∈ [−1, 0), where F̂(t) = (1/K) Σ_j 1[w_j ≥ t] is the empirical tail
probability (Wang et al. 2018, algorithm 1): the heaviest weight gets the largest γ, and
the weighting adapts to the tail of the weights instead of a Rényi bound's fixed power:

    surrogate(x) = Σ_k γ_k log w_k / Σ_k γ_k.

Pyro's ``TraceTailAdaptive_ELBO`` ranks the particles by their log weight summed over
the whole batch; here each data point ranks its own K particles, as the estimator is
defined for a local-latent model. The divergence itself is not estimated (nor is it in
Pyro); the value reported is the ELBO of the same particles.
"""

from typing import Annotated

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import Range
from pyro_vae.inference.objectives.base import LocalBound, Particles, register_objective


class TailAdaptive(LocalBound):
    def __init__(self, beta: float = -1.0, particles: int = 5, **kwargs):
        super().__init__(particles, **kwargs)
        self.beta = beta

    def bound(self, terms):
        log_w = terms.log_w  # (K, B)
        k = log_w.shape[0]
        rank = log_w.detach().argsort(0).argsort(0).to(log_w.dtype) + 1  # 1 = smallest weight
        gamma = ((k + 1 - rank) / k).pow(self.beta)  # F̂(w_k)^β; F̂ = 1/K for the largest weight
        surrogate = (gamma * log_w).sum(0) / gamma.sum(0)
        return log_w.mean(0), surrogate


TailBeta = Annotated[float, Range(lo=-1, hi=0, hi_open=True)]


@register_objective("tail_adaptive")
def tail_adaptive(*, beta: TailBeta = -1.0, particles: Particles = 5) -> TailAdaptive:
    """Tail-adaptive f-divergence gradients (Wang et al. 2018), ranked per data point."""
    if particles < 2:
        raise ConfigError(
            "objective.particles = 1 is not allowed for tail_adaptive: it ranks K >= 2 particles"
        )
    return TailAdaptive(beta, particles)
