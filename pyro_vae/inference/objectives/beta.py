"""The β-VAE objective (Higgins et al. 2017, eq. 4):

    L_β(x) = E_{q(z|x)}[log p(x|z)] − β · KL(q(z|x) || p(z)),   β > 0,

with the KL in closed form where one is registered (a Monte-Carlo estimate otherwise).
β = 1 is the ELBO; β > 1 presses the code toward the prior (disentanglement at the cost
of reconstruction), β < 1 the other way. β multiplies the per-data-point KL; the
dataset-size scale multiplies the whole per-data-point objective, outside.
"""

from pyro_vae.core.options import PositiveFloat
from pyro_vae.inference.objectives.base import LocalBound, Particles, register_objective


class BetaBound(LocalBound):
    analytic_kl = True

    def __init__(self, beta: float = 1.0, particles: int = 1, **kwargs):
        super().__init__(particles, **kwargs)
        self.beta = beta

    @property
    def kl_scale(self) -> float:
        """The weight of the KL in this bound, which KL warm-up and free bits act on."""
        return self.beta

    def bound(self, terms):
        kl = terms.kl_term  # (K, B)
        value = terms.recon.mean(0) - self.beta * kl.mean(0)
        return value, value


@register_objective("beta")
def beta(*, beta: PositiveFloat = 4.0, particles: Particles = 1) -> BetaBound:
    """recon − β·KL (Higgins et al. 2017)."""
    return BetaBound(beta, particles)
