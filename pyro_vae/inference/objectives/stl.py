"""The ELBO with the "sticking the landing" gradient (STL; Roeder, Wu & Duvenaud 2017).

The reparameterized ELBO gradient for the guide's parameters φ,

    ∇_φ E_ε[log p(x, z) − log q_φ(z|x)],   z = g_φ(ε, x),

contains the score term −∇_φ log q_φ(z|x) at fixed z, whose expectation is zero but
whose variance does not vanish even when q equals the posterior. STL drops it: log q is
evaluated with its parameters held fixed, so its gradient reaches φ only through z
(Roeder et al. 2017, eq. 5). The estimate is unbiased; its variance goes to zero as q
approaches the exact posterior. The value is the ELBO, averaged over the particles.
"""

from pyro_vae.inference.objectives.base import LocalBound, Particles, register_objective


class ELBO_STL(LocalBound):
    stop_q_params = True

    def bound(self, terms):
        value = terms.elbo.mean(0)  # (B,)
        return value, value


@register_objective("elbo_stl")
def elbo_stl(*, particles: Particles = 1) -> ELBO_STL:
    """The ELBO with the sticking-the-landing gradient estimator (Roeder et al. 2017)."""
    return ELBO_STL(particles)
