"""The importance-weighted bound (IWAE) and the Rényi α bound, per data point.

For weights w_k = p(x, z_k) / q(z_k | x), z_k ~ q(z | x), k = 1..K:

    IWAE_K(x) = log (1/K) Σ_k w_k                               (Burda et al. 2016, eq. 8)
    L_α(x)    = 1/(1−α) · log (1/K) Σ_k w_k^{1−α},  α ≥ 0, α ≠ 1   (Li & Turner 2016, eq. 11)

L_0 is IWAE_K; as α → 1, L_α tends to the ELBO; both rise with K toward log p(x).
The batch objective is Σ_n L_α(x_n): the log-mean-exp is taken over the K weights of
each data point and only then summed over data points. Pyro's ``RenyiELBO`` sums the
log-weights over the whole batch before its log-mean-exp, which couples the particles
of different data points and is a much looser bound for a VAE (Pyro issue 3104).
"""

from typing import Annotated

from ..config import Range
from ..errors import ConfigError
from .base import LocalBound, Particles, log_mean_exp, register_objective


class RenyiBound(LocalBound):
    """Σ_n L_α(x_n) with reparameterized gradients; α = 0 is the IWAE bound."""

    def __init__(self, alpha: float = 0.0, particles: int = 5, **kwargs):
        if alpha < 0 or alpha == 1:
            raise ValueError(f"alpha must be >= 0 and != 1, got {alpha}")
        super().__init__(particles, **kwargs)
        self.alpha = alpha

    def bound(self, terms):
        log_w = terms.log_w  # (K, B)
        value = log_mean_exp((1 - self.alpha) * log_w) / (1 - self.alpha)
        return value, value


@register_objective("iwae")
def iwae(*, particles: Particles = 5) -> RenyiBound:
    """The importance-weighted bound IWAE_K with K = ``particles`` (Burda et al. 2016)."""
    return RenyiBound(0.0, particles)


Alpha = Annotated[float, Range(lo=0)]


@register_objective("renyi")
def renyi(*, alpha: Alpha = 0.5, particles: Particles = 5) -> RenyiBound:
    """The Rényi α bound L_α (Li & Turner 2016); α = 0 is IWAE, α → 1 the ELBO."""
    if alpha == 1:
        raise ConfigError("objective.alpha = 1.0 is not allowed: the Rényi bound needs alpha != 1 (use elbo)")
    return RenyiBound(alpha, particles)
