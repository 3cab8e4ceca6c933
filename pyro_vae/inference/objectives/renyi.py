"""The importance-weighted bound (IWAE) and the Rényi α bound, per data point.

For weights w_k = p(x, z_k) / q(z_k | x), z_k ~ q(z | x), k = 1..K:

    IWAE_K(x) = log (1/K) Σ_k w_k                               (Burda et al. 2016, eq. 8)
    L_α(x)    = 1/(1−α) · log (1/K) Σ_k w_k^{1−α},  α ≥ 0, α ≠ 1   (Li & Turner 2016, eq. 11)

L_0 is IWAE_K; as α → 1, L_α tends to the ELBO, and with K = 1 it is log w_1 for every α.
As K grows, E[L_α] rises toward the Rényi bound 1/(1−α) log E_q[w^{1−α}] when α < 1 and
falls toward it when α > 1; that bound is ≤ log p(x) for α ≥ 0, with equality at α = 0
(or when q is the posterior), so only IWAE rises toward log p(x) (Li & Turner 2016).
The batch objective is Σ_n L_α(x_n): the log-mean-exp is taken over the K weights of
each data point and only then summed over data points, the scale outside. Pyro's
``RenyiELBO`` multiplies the log-weights by the sites' scale inside its log-mean-exp,
which changes the bound under subsampling, and sums them over the data plate before it
as soon as one sample site lies outside that plate (Pyro issue 3104).
"""

from typing import Annotated

from pyro_vae.core.numeric import log_mean_exp
from pyro_vae.core.options import Range
from pyro_vae.inference.objectives.base import LocalBound, Particles, register_objective


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


Alpha = Annotated[float, Range(lo=0, excluded=(1.0,))]


@register_objective("renyi")
def renyi(*, alpha: Alpha = 0.5, particles: Particles = 5) -> RenyiBound:
    """The Rényi α bound L_α (Li & Turner 2016); α = 0 is IWAE, α → 1 the ELBO."""
    return RenyiBound(alpha, particles)
