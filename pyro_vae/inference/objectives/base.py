"""What every objective shares: its registration and the per-data-point bound base class."""

import math

import pyro.infer
import torch

from pyro_vae.core.options import PositiveInt
from pyro_vae.core.registry import OBJECTIVES
from pyro_vae.inference.sites import max_plate_nesting
from pyro_vae.inference.traces import LocalTerms, local_terms

register_objective = OBJECTIVES.register

Particles = PositiveInt


class LocalBound(pyro.infer.ELBO):
    """A bound built from the ``(k, B)`` log-densities of :func:`pyro_vae.inference.traces.local_terms`.

    A subclass implements :meth:`bound`, returning per-data-point tensors ``(value,
    surrogate)`` of shape ``(B,)``: the bound's estimate, and a tensor whose gradient is
    the estimator's gradient. The loss is

        loss = −scale · Σ_n value_n        with the gradient of −scale · Σ_n surrogate_n,

    the scale (dataset size / batch size, ``poutine.scale``) applied outside the
    per-data-point bound. ``differentiable_loss`` reads nothing back to the host;
    ``loss`` and ``loss_and_grads`` make these objectives usable with ``pyro.infer.SVI``.
    Guide sites must be reparameterizable.
    """

    stop_q_params = False
    analytic_kl = False

    def __init__(self, particles: int = 1, *, plate: str = "data"):
        super().__init__(num_particles=particles, vectorize_particles=True)
        self.plate = plate

    def terms(self, model, guide, x: torch.Tensor) -> LocalTerms:
        if self.max_plate_nesting == math.inf:  # found once, as Pyro's ELBOs do
            self.max_plate_nesting = max_plate_nesting(model, guide, x)
        return local_terms(
            model,
            guide,
            x,
            particles=self.num_particles,
            nesting=self.max_plate_nesting,
            plate=self.plate,
            stop_q_params=self.stop_q_params,
            analytic_kl=self.analytic_kl,
        )

    def bound(self, terms: LocalTerms) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("a LocalBound runs its particles through pyro_vae.inference.traces")

    def differentiable_loss(self, model, guide, x: torch.Tensor) -> torch.Tensor:
        terms = self.terms(model, guide, x)
        for name, site in terms.latent_sites.items():
            if not site["fn"].has_rsample and site["infer"].get("enumerate") != "parallel":
                raise NotImplementedError(
                    f"{type(self).__name__} needs reparameterizable guide sites, but {name!r} is "
                    f"{type(site['fn']).__name__}; use tracegraph or elbo for such guides"
                )
        value, surrogate = self.bound(terms)
        value, surrogate = value.sum(), surrogate.sum()
        return -terms.scale * (value.detach() + (surrogate - surrogate.detach()))

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return loss.item()
