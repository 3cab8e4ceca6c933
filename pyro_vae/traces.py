"""Per-particle, per-data-point log densities of a model/guide pair.

For a model whose latent and observed sites sit under one plate over data points,
one vectorized run with k particles draws z_{kn} ~ q(z | x_n) for every particle k
and data point n and returns, as ``(k, B)`` tensors,

    recon[k, n]     = Σ_observed log p(x_n | z_{kn})
    log_prior[k, n] = Σ_latent   log p(z_{kn})
    log_q[k, n]     = Σ_latent   log q(z_{kn} | x_n)
    log_w[k, n]     = recon + log_prior − log_q        (the log importance weight)

Everything an objective or an estimator needs is a reduction of these along k for
each n, then a sum over n. Log-densities are *unscaled*: a dataset-size factor
(a subsampled plate) or ``poutine.scale`` is returned separately as ``scale`` and
belongs outside any log-mean-exp over particles, since
Σ_n log (1/k) Σ_k w_{kn} is a bound on Σ_n log p(x_n), while scaling inside the
log-mean-exp would change the bound (Burda et al. 2016; Pyro issue 3104).

Particles are vectorized with a plate named ``"particles"`` to the left of the
model's plates, as Pyro's ``vectorize_particles`` does: one pass, no Python loop.
"""

from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

PARTICLES = "particles"


def max_plate_nesting(model, guide, *args, **kwargs) -> int:
    """How many plates deep the pair's sites sit (one trace of each, without gradients)."""
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    depth = 0
    for trace in (guide_trace, model_trace):
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                frames = [f.dim for f in site["cond_indep_stack"] if f.vectorized]
                depth = max(depth, len(site["fn"].batch_shape), *(-d for d in frames))
    return depth


def in_particle_plate(fn, particles: int, dim: int):
    """``fn`` run inside ``pyro.plate("particles", particles, dim=dim)``."""

    def wrapped(*args, **kwargs):
        with pyro.plate(PARTICLES, particles, dim=dim):
            return fn(*args, **kwargs)

    return wrapped


def per_particle_datum(log_prob: torch.Tensor, site: dict, plate: str) -> torch.Tensor:
    """Reduce a site's log-density (or KL) to shape ``(k, B)``: sum over all other dimensions."""
    frames = {f.name: f for f in site["cond_indep_stack"] if f.vectorized}
    if plate not in frames:
        raise ValueError(
            f"site {site['name']!r} is not inside the plate {plate!r}: per-data-point bounds "
            "need every latent and observed site under the data plate"
        )
    shape = [1] * max(-f.dim for f in frames.values())
    for f in frames.values():
        shape[f.dim] = f.size
    log_prob = log_prob.expand(torch.broadcast_shapes(log_prob.shape, tuple(shape)))
    data_dim = frames[plate].dim
    if PARTICLES in frames:
        out = log_prob.movedim((frames[PARTICLES].dim, data_dim), (0, 1))
    else:
        out = log_prob.movedim(data_dim, 0).unsqueeze(0)
    return out.reshape(out.shape[0], out.shape[1], -1).sum(-1)  # (k, B)


def to_site_layout(t: torch.Tensor, site: dict, plate: str) -> torch.Tensor:
    """A ``(k, B)`` tensor shaped to broadcast against a site's value (batch, then event dims)."""
    frames = {f.name: f.dim for f in site["cond_indep_stack"] if f.vectorized}
    shape = [1] * len(site["fn"].batch_shape)
    shape[frames[PARTICLES]] = t.shape[0]
    shape[frames[plate]] = t.shape[1]
    ordered = t if frames[PARTICLES] < frames[plate] else t.T
    return ordered.reshape(shape + [1] * len(site["fn"].event_shape))


@dataclass
class LocalTerms:
    """The ``(k, B)`` log-densities of one vectorized run; see the module docstring."""

    recon: torch.Tensor
    log_prior: torch.Tensor
    log_q: torch.Tensor
    #: Σ_latent KL(q(z|x_n) || p(z)) in closed form, (1, B), when every latent site has one
    kl: torch.Tensor | None
    #: the common scale of the sites (dataset size / batch size, poutine.scale), outside the bound
    scale: float
    #: the guide's latent sites (name -> site), for estimators that act on the samples
    latent_sites: dict = field(default_factory=dict)

    @property
    def log_w(self) -> torch.Tensor:
        return self.recon + self.log_prior - self.log_q


def _site_scale(sites) -> float:
    scales = {float(s["scale"]) if not torch.is_tensor(s["scale"]) else None for s in sites}
    if None in scales:
        raise NotImplementedError("per-data-point bounds need a scalar scale at every site")
    if len(scales) > 1:
        raise NotImplementedError(f"per-data-point bounds need one scale for all sites, got {sorted(scales)}")
    return scales.pop() if scales else 1.0


def local_terms(
    model,
    guide,
    x: torch.Tensor,
    *,
    particles: int = 1,
    nesting: int,
    plate: str = "data",
    stop_q_params: bool = False,
    analytic_kl: bool = False,
) -> LocalTerms:
    """Run ``guide`` then ``model`` on ``x`` with ``particles`` vectorized particles.

    :param nesting: the pair's :func:`max_plate_nesting`.
    :param stop_q_params: evaluate log q with the guide's distribution parameters cut from
        the graph, so that its gradient reaches the guide only through the samples z (the
        "sticking the landing" construction; Roeder et al. 2017). Done without rebuilding
        the distribution: log q(z) − log q(z̄) + stop(log q(z̄)) with z̄ = stop(z) has the
        value of log q(z) and only the pathwise gradient.
    :param analytic_kl: also compute the closed-form KL of each latent site where one is
        registered (``kl`` is None if any site lacks one).
    """
    dim = -(nesting + 1)
    guide_trace = poutine.trace(in_particle_plate(guide, particles, dim)).get_trace(x)
    model_trace = poutine.trace(
        poutine.replay(in_particle_plate(model, particles, dim), trace=guide_trace)
    ).get_trace(x)

    zero = x.new_zeros(particles, x.shape[0])
    recon, log_prior, log_q, kl = zero, zero, zero, zero
    used, latents = [], {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        used.append(site)
        lp = per_particle_datum(_masked(site["fn"].log_prob(site["value"]), site), site, plate)
        if site["is_observed"]:
            recon = recon + lp
            continue
        q_site = guide_trace.nodes[name]
        used.append(q_site)
        latents[name] = q_site
        log_prior = log_prior + lp
        z = q_site["value"]
        lq = q_site["fn"].log_prob(z)
        if stop_q_params:
            z_bar = z.detach()
            lq_bar = q_site["fn"].log_prob(z_bar)
            lq = lq - (lq_bar - lq_bar.detach())
        log_q = log_q + per_particle_datum(_masked(lq, q_site), q_site, plate)
        if analytic_kl and kl is not None:
            try:
                site_kl = kl_divergence(q_site["fn"], site["fn"])
                kl = kl + per_particle_datum(_masked(site_kl, q_site), q_site, plate)[:1]
            except NotImplementedError:
                kl = None
    return LocalTerms(
        recon=recon,
        log_prior=log_prior,
        log_q=log_q,
        kl=kl if analytic_kl else None,
        scale=_site_scale(used),
        latent_sites=latents,
    )


def _masked(log_prob: torch.Tensor, site: dict) -> torch.Tensor:
    mask = site["mask"]
    if mask is None or mask is True:
        return log_prob
    if mask is False:
        return torch.zeros_like(log_prob)
    return torch.where(mask, log_prob, torch.zeros_like(log_prob))
