"""Pyro's own ELBO estimators, computed on the device.

Pyro's ``Trace_ELBO``, ``TraceMeanField_ELBO`` and ``TraceGraph_ELBO`` compute the right
estimates, but their ``differentiable_loss`` (where it exists) reads every site's
log-density back to the host (``torch_item``) and checks the loss for NaN there,
forward and backward: on a GPU, several device synchronisations per training step.
The subclasses below compute the same estimates as tensors; ``loss`` and
``loss_and_grads`` (what ``SVI.step`` calls) stay Pyro's.
"""

from collections.abc import Callable, Iterator

import pyro.infer
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer.trace_elbo import _compute_log_r
from pyro.infer.util import check_fully_reparametrized, is_identically_zero, is_validation_enabled
from pyro.poutine import Trace

from pyro_vae.inference.objectives.base import Particles, register_objective
from pyro_vae.inference.objectives.enumerated import Enumerating
from pyro_vae.inference.traces import closed_form_sites
from pyro_vae.models.kl import site_kl


def _is_sample(site) -> bool:
    return site["type"] == "sample"


class _OnDeviceLoss(Enumerating):
    """``differentiable_loss`` that averages tensor-valued particle losses, never reading them;
    a guide that enumerates its discrete sites is summed over them (:class:`Enumerating`)."""

    # from the Pyro ELBO this is mixed into, and (``_particle``) from each subclass
    num_particles: int
    _get_traces: Callable[..., Iterator[tuple[Trace, Trace]]]
    _particle: Callable[[Trace, Trace], tuple[torch.Tensor, torch.Tensor]]

    def differentiable_loss(self, model, guide, *args, **kwargs):
        enumerated = self.enumerated_loss(model, guide, *args)
        if enumerated is not None:
            return enumerated
        loss: torch.Tensor | float = 0.0
        surrogate: torch.Tensor | float = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, particle_surrogate = self._particle(model_trace, guide_trace)
            loss = loss + particle_loss / self.num_particles
            surrogate = surrogate + particle_surrogate / self.num_particles
        assert isinstance(loss, torch.Tensor) and isinstance(surrogate, torch.Tensor)  # particles >= 1
        # the value of the bound, the gradient of the surrogate
        return loss.detach() + (surrogate - surrogate.detach())


class DeviceTraceELBO(_OnDeviceLoss, pyro.infer.Trace_ELBO):
    """Pyro's ``Trace_ELBO`` estimator, computed on the device.

    ELBO = Σ_model log p − Σ_guide log q at z ~ q; the surrogate adds the score-function
    term log r · ∇ log q for guide sites that are not reparameterizable (Ranganath et
    al. 2014, "Black Box Variational Inference"; Schulman et al. 2015).
    """

    def _particle(self, model_trace, guide_trace):
        elbo = surrogate = 0.0
        for site in filter(_is_sample, model_trace.nodes.values()):
            elbo = elbo + site["log_prob_sum"]
            surrogate = surrogate + site["log_prob_sum"]
        log_r = None
        for site in filter(_is_sample, guide_trace.nodes.values()):
            _, score_function_term, entropy_term = site["score_parts"]
            elbo = elbo - site["log_prob_sum"]
            if not is_identically_zero(entropy_term):
                surrogate = surrogate - entropy_term.sum()
            if not is_identically_zero(score_function_term):
                log_r = _compute_log_r(model_trace, guide_trace) if log_r is None else log_r
                surrogate = surrogate + (log_r.sum_to(site["cond_indep_stack"]) * score_function_term).sum()
        return -elbo, -surrogate


class DeviceMeanFieldELBO(_OnDeviceLoss, pyro.infer.TraceMeanField_ELBO):
    """Pyro's ``TraceMeanField_ELBO`` estimator, computed on the device.

    ELBO = Σ_observed log p(x|z) − Σ_latent KL(q || p), with each KL in closed form
    where one is registered and log q − log p at z ~ q otherwise (as Pyro does), and
    also where the closed form would be biased (:func:`pyro_vae.inference.traces.closed_form_sites`:
    the lower layer of a hierarchical model).
    Needs reparameterizable guide sites.
    """

    analytic_kl = True

    def _get_trace(self, model, guide, args, kwargs):
        # Pyro warns unless model and guide draw their sites in the same order; closed_form_sites
        # checks what that warning stands for, and falls back to Monte Carlo where it fails
        return pyro.infer.Trace_ELBO._get_trace(self, model, guide, args, kwargs)

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        # what Pyro's loss and loss_and_grads (SVI.step) call: the same estimate as ours
        loss, surrogate = self._particle(model_trace, guide_trace)
        return float(loss.detach()), surrogate

    def _particle(self, model_trace, guide_trace):
        elbo = 0.0
        closed = closed_form_sites(model_trace, guide_trace)
        for name, site in model_trace.nodes.items():
            if not _is_sample(site):
                continue
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if is_validation_enabled():
                check_fully_reparametrized(guide_site)
            densities = (guide_site["unscaled_log_prob"], site["unscaled_log_prob"])
            kl, _ = site_kl(guide_site["fn"], site["fn"], guide_site["value"], name in closed, densities)
            elbo = elbo - scale_and_mask(kl, guide_site["scale"], guide_site["mask"]).sum()
        for name, site in guide_trace.nodes.items():  # auxiliary guide sites, as Pyro allows
            if _is_sample(site) and name not in model_trace.nodes:
                elbo = elbo - site["score_parts"].entropy_term.sum()
        return -elbo, -elbo


@register_objective("elbo")
def elbo(*, particles: Particles = 1) -> pyro.infer.ELBO:
    """The evidence lower bound with a Monte-Carlo KL term (Pyro's ``Trace_ELBO``)::

        ELBO(x) = E_{q(z|x)}[log p(x|z) + log p(z) − log q(z|x)] ≤ log p(x),

    estimated with ``particles`` reparameterized draws z ~ q(z|x) per data point
    (Kingma & Welling 2014, eq. 6).
    """
    return DeviceTraceELBO(num_particles=particles, vectorize_particles=particles > 1)


@register_objective("meanfield")
def meanfield(*, particles: Particles = 1) -> pyro.infer.ELBO:
    """The ELBO with the KL term in closed form where one exists (Pyro's ``TraceMeanField_ELBO``)::

        ELBO(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) || p(z)),

    which for a Gaussian guide and N(0, I) prior is
    KL = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) (Kingma & Welling 2014, appendix B).
    Pairs with no registered closed form fall back to a Monte-Carlo estimate.
    """
    return DeviceMeanFieldELBO(num_particles=particles, vectorize_particles=particles > 1)


class DeviceTraceGraphELBO(pyro.infer.TraceGraph_ELBO):
    """Pyro's ``TraceGraph_ELBO`` (Schulman et al. 2015), with a ``differentiable_loss``.

    For guides with non-reparameterizable sites, the score-function term of each such
    site is multiplied only by the costs downstream of it in the dependency graph, which
    cuts its variance (Pyro's "Rao-Blackwellization"), with optional baselines.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return -elbo.detach() + (surrogate - surrogate.detach())


@register_objective("tracegraph")
def tracegraph(*, particles: Particles = 1) -> pyro.infer.ELBO:
    """The ELBO with dependency-aware score-function gradients (Pyro's ``TraceGraph_ELBO``)."""
    return DeviceTraceGraphELBO(num_particles=particles, vectorize_particles=particles > 1)
