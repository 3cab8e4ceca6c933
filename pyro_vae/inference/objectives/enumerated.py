"""The ELBO of a guide whose discrete latents are enumerated, their expectation taken exactly.

With the classes c of the enumerated latents y and the continuous latents z_c ~ q(z | x, c),

    ELBO(x) = Σ_c q(c | x) E_{q(z|x,c)}[log p(x, c, z) − log q(z | x, c) − log q(c | x)]

(Kingma et al. 2014, eq. 7), whose gradient in q(y | x) is exact: no score-function estimator,
no relaxation. Pyro's ``TraceEnum_ELBO`` computes the same sum; here it comes from the
per-data-point terms (:mod:`pyro_vae.inference.enumeration`), so the value, the closed-form KL
and the per-point bounds are those of every other objective. ``elbo`` and ``meanfield`` use it
whenever the guide enumerates a site (:class:`Enumerating`).
"""

import torch

from pyro_vae.inference.objectives.base import LocalBound
from pyro_vae.inference.sites import enumerated_sites


class EnumeratedELBO(LocalBound):
    """The ELBO above, ``analytic_kl``: with KL(q || p) in closed form where registered."""

    def __init__(self, particles: int = 1, *, analytic_kl: bool = False):
        super().__init__(particles)
        self.analytic_kl = analytic_kl

    def bound(self, terms):
        value = (terms.recon - terms.kl_term).mean(0) if self.analytic_kl else terms.elbo.mean(0)  # (B,)
        return value, value


class Enumerating:
    """Mixed into Pyro's ELBOs: a guide with enumerated sites is run by :class:`EnumeratedELBO`
    (Pyro's ``Trace_ELBO`` would draw them), found from one trace of the guide."""

    num_particles: int
    analytic_kl = False

    def enumerated(self, guide, *args) -> LocalBound | None:
        found = getattr(self, "_enumerated", None)
        if found is None or found[0] is not guide:
            bound = (
                EnumeratedELBO(self.num_particles, analytic_kl=self.analytic_kl)
                if enumerated_sites(guide, *args)
                else None
            )
            self._enumerated = found = (guide, bound)
        return found[1]

    def enumerated_loss(self, model, guide, *args) -> torch.Tensor | None:
        bound = self.enumerated(guide, *args)
        return None if bound is None else bound.differentiable_loss(model, guide, *args)
