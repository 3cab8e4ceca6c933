"""IWAE with doubly-reparameterized gradients (DReG; Tucker, Lawson, Gu & Maddison 2019).

The bound is IWAE_K(x) = log (1/K) Σ_k w_k. Its usual reparameterized gradient for the
guide's parameters φ carries a score-function part, and its signal-to-noise ratio falls
as O(1/√K): the expected gradient shrinks faster than its noise, so the encoder's
gradient signal vanishes as K grows (Rainforth et al. 2018). DReG rewrites that part by
a second reparameterization (Tucker et al. 2019, eq. 7):

    ∇_φ IWAE_K = E[ Σ_k  w̃_k² · ∂ log w_k / ∂z_k · ∂z_k / ∂φ ],    w̃_k = w_k / Σ_j w_j,

with log q evaluated with its parameters held fixed, while the model's parameters θ keep
the IWAE gradient Σ_k w̃_k ∇_θ log p(x, z_k). Both come from one backward pass: the
surrogate is IWAE_K with log q's parameters cut from the graph (pyro_vae.inference.traces,
``stop_q_params``), whose gradient reaches φ only through z_k, as w̃_k ∂ log w_k/∂z_k;
a gradient hook on each z_k multiplies what passes through it by one more w̃_k.
With several latent sites (a hierarchical guide, z₂ drawn given z₁) the hooks sit on
views of the samples that only the densities see (:func:`pyro_vae.inference.traces.local_terms`),
so each density's gradient is weighted once and then flows back along the sampling
path z₁ → z₂ unweighted.
Pyro has no DReG estimator (Pyro issue 2598, draft PR 2605).
"""

import torch

from pyro_vae.core.numeric import log_mean_exp
from pyro_vae.inference.objectives.base import LocalBound, Particles, register_objective
from pyro_vae.inference.sites import to_site_layout


class IWAE_DReG(LocalBound):
    stop_q_params = True

    def bound(self, terms):
        log_w = terms.log_w  # (K, B)
        value = log_mean_exp(log_w)
        if log_w.requires_grad:
            w_tilde = torch.softmax(log_w, dim=0).detach()  # (K, B)
            for site in terms.latent_sites.values():
                if site["value"].requires_grad:
                    weight = to_site_layout(w_tilde, site, self.plate)
                    site["value"].register_hook(lambda grad, weight=weight: grad * weight)
        return value, value


@register_objective("iwae_dreg")
def iwae_dreg(*, particles: Particles = 5) -> IWAE_DReG:
    """IWAE_K with doubly-reparameterized gradients for the guide (Tucker et al. 2019)."""
    return IWAE_DReG(particles)
