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

A guide site that is a point mass (the ``delta`` guide, :func:`pyro_vae.models.kl.is_point_mass`)
has no density: its ``log_q`` is Pyro's 0 at its own value, which is no log-density, so
``log_w`` and the KL are not defined there (they raise :class:`~pyro_vae.core.errors.NotDefined`),
while ``recon`` is log p(x_n | z_n) as for any guide.
"""

from dataclasses import dataclass, field

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.numeric import masked
from pyro_vae.inference.enumeration import enumerated_dims, per_config
from pyro_vae.inference.enumeration import reduce as reduce_enumerated
from pyro_vae.inference.sites import (
    in_particle_plate,
    latent_sites,
    not_defined,
    per_particle_datum,
    sample_sites,
)
from pyro_vae.models.kl import is_point_mass, site_kl


@dataclass
class LocalTerms:
    """The ``(k, B)`` log-densities of one vectorized run; see the module docstring."""

    recon: torch.Tensor
    log_prior: torch.Tensor
    log_q: torch.Tensor
    #: Σ_latent KL(q(z|x_n) || p(z)), (k, B), when asked for (``analytic_kl``): in closed form when
    #: every latent site has one registered and unbiased (:func:`site_kl`), else the Monte-Carlo
    #: estimate log q − log p at the same draws
    kl: torch.Tensor | None
    #: the common scale of the sites (dataset size / batch size, poutine.scale), outside the bound
    scale: float
    #: the guide's latent sites (name -> site), for estimators that act on the samples
    latent_sites: dict = field(default_factory=dict)
    #: "analytic" or "monte_carlo": how ``kl`` was computed (None when it was not)
    kl_estimator: str | None = None
    #: the latent sites whose q is a point mass: ``log_q`` is then no density, and ``log_w``,
    #: ``kl`` and ``kl_term`` are not defined
    point_masses: tuple[str, ...] = ()
    #: where discrete latents are enumerated, the log importance weight with their classes
    #: summed inside it (:mod:`pyro_vae.inference.enumeration`); recon, log_prior and log_q are
    #: then expectations over them, so that ``elbo`` is still recon + log_prior − log_q
    summed_log_w: torch.Tensor | None = None

    @property
    def log_w(self) -> torch.Tensor:
        """The log importance weight log p(x, z) − log q(z|x), ``(k, B)``."""
        if self.point_masses:
            raise not_defined("the importance weight p(x, z) / q(z|x)", self.point_masses)
        if self.summed_log_w is not None:
            return self.summed_log_w
        return self.recon + self.log_prior - self.log_q

    @property
    def elbo(self) -> torch.Tensor:
        """The ELBO's integrand recon + log p(z) − log q(z|x) at the draws, ``(k, B)``: ``log_w``
        where nothing is enumerated."""
        if self.point_masses:
            raise not_defined("the ELBO", self.point_masses)
        return self.recon + self.log_prior - self.log_q

    @property
    def kl_term(self) -> torch.Tensor:
        """``kl`` where computed, else its Monte-Carlo estimate log q − log p at the same draws."""
        if self.point_masses:
            raise not_defined("KL(q(z|x) || p(z))", self.point_masses)
        return self.kl if self.kl is not None else self.log_q - self.log_prior


def site_scale(sites) -> float:
    scales = {float(s["scale"]) if not torch.is_tensor(s["scale"]) else None for s in sites}
    if None in scales:
        raise NotImplementedError("per-data-point bounds need a scalar scale at every site")
    floats = {s for s in scales if s is not None}  # all of them, after the check above
    if len(floats) > 1:
        raise ConfigError(
            f"per-data-point bounds need one scale for all sites, got {sorted(floats)} (poutine.scale): a "
            "term that only trains, such as a classifier's α log q(y|x), is a factor of value 0, "
            "pyro.factor(name, a * (t - t.detach()), has_rsample=True); see docs/models.md"
        )
    return floats.pop() if floats else 1.0


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
    :param analytic_kl: also give ``kl``: in closed form where every latent site has one
        registered and unbiased (:func:`closed_form_sites`), estimated at the draw otherwise;
        None where a site is a point mass (``point_masses``), whose KL is not defined.

    A guide run at given latent values (:class:`at_values`) gives the densities at those
    values: what annealed importance sampling moves along.
    """
    dim = -(nesting + 1)
    enumerating = poutine.enum(in_particle_plate(guide, particles, dim), first_available_dim=dim - 1)
    guide_trace = poutine.trace(enumerating).get_trace(x)
    enum_dims = enumerated_dims(guide_trace)
    stopped = None
    if stop_q_params and len(sample_sites(guide_trace)) > 1:
        guide_trace, stopped = _stopped_guide(guide, guide_trace, particles, dim, x)
    model_trace = poutine.trace(
        poutine.replay(in_particle_plate(model, particles, dim), trace=guide_trace)
    ).get_trace(x)

    zero = x.new_zeros(particles, x.shape[0])
    recon, log_prior, log_q, kl, log_q_enum, log_p_enum = zero, zero, zero, zero, zero, zero
    closed = closed_form_sites(model_trace, guide_trace) if analytic_kl else set()
    used, latents, how, points = [], {}, set(), []
    rank = max((-d for d in enum_dims.values()), default=0)

    def per_datum(value, site):
        if enum_dims:  # (E…, k, B)
            return per_config(value, site, plate=plate, particle_dim=dim, rank=rank)
        return per_particle_datum(masked(value, site["mask"]), site, plate)  # (k, B)

    for name, site in sample_sites(model_trace).items():
        used.append(site)
        lp_raw = site["fn"].log_prob(site["value"])
        lp = per_datum(lp_raw, site)
        if site["is_observed"]:
            recon = recon + lp
            continue
        q_site = guide_trace.nodes[name]
        used.append(q_site)
        latents[name] = q_site
        log_prior = log_prior + lp
        if name in enum_dims:  # summed over its classes below, not drawn
            log_p_enum = log_p_enum + lp
            log_q_enum = log_q_enum + per_datum(q_site["fn"].log_prob(q_site["value"]), q_site)
            continue
        z = q_site["value"]
        if stopped is not None:
            lq = stopped.nodes[name]["fn"].log_prob(z)
        else:
            lq = q_site["fn"].log_prob(z)
        if stop_q_params and stopped is None:
            z_bar = z.detach()
            lq_bar = q_site["fn"].log_prob(z_bar)
            lq = lq - (lq_bar - lq_bar.detach())
        log_q = log_q + per_datum(lq, q_site)
        if is_point_mass(q_site["fn"]):
            points.append(name)
        elif analytic_kl:
            site_value, exact = site_kl(q_site["fn"], site["fn"], z, name in closed, (lq, lp_raw))
            kl = kl + per_datum(site_value, q_site)
            how.add(exact)
    estimator = None
    if analytic_kl and not points:
        # all sites in closed form, or none: a sum of closed forms and draws is no longer exact
        # at the posterior for every draw, which the Monte-Carlo ELBO is
        estimator = "analytic" if how == {True} else "monte_carlo"
        kl = kl if estimator == "analytic" else log_q - log_prior
    summed = None
    if enum_dims:
        parts = {"recon": recon, "log_prior": log_prior, "log_q": log_q, "kl": kl, "log_p_enum": log_p_enum}
        reduced = reduce_enumerated(parts, log_q_enum, rank + dim)
        recon, log_prior, log_q, summed = (reduced[n] for n in ("recon", "log_prior", "log_q", "log_w"))
        kl = reduced["kl"] if estimator == "analytic" else log_q - log_prior
    return LocalTerms(
        recon=recon,
        log_prior=log_prior,
        log_q=log_q,
        kl=kl if analytic_kl and not points else None,
        scale=site_scale(used),
        latent_sites=latents,
        kl_estimator=estimator,
        point_masses=tuple(points),
        summed_log_w=summed,
    )


def closed_form_sites(model_trace, guide_trace) -> set[str]:
    """The latent sites whose KL(q || p) may be taken in closed form inside an ELBO.

    Replacing log q(z_s|·) − log p(z_s|·) at a draw by its expectation over z_s is unbiased
    when the model's conditioning values of z_s are fixed while z_s varies: none of them may
    be drawn after z_s in the guide. In a hierarchical model, p(z₁|z₂) depends on z₂, which
    the guide draws given z₁, so z₁'s KL is estimated by Monte Carlo while the top layer's,
    KL(q(z₂|z₁) || p(z₂)), is exact. (Pyro's ``TraceMeanField_ELBO`` assumes a mean-field
    guide instead.) Order stands for dependence: a site is closed-form when every latent the
    model draws before it, the guide draws before it too.
    """
    position = {name: i for i, name in enumerate(sample_sites(guide_trace))}
    seen: list[str] = []
    ok = set()
    for name in latent_sites(model_trace):
        if name in position and all(position.get(m, -1) < position[name] for m in seen):
            ok.add(name)
        seen.append(name)
    return ok


def _stopped_guide(guide, guide_trace, particles: int, dim: int, x: torch.Tensor):
    """The guide's densities with its parameters held fixed but its latent values live.

    With several latent sites, q(z₂|z₁) depends on z₁ through its parameters, a pathwise
    dependence that "stop q's parameters" must keep while cutting φ (Roeder et al. 2017;
    Tucker et al. 2019, for hierarchical guides). So the guide is run again at the sampled
    values with its parameters detached: ``torch.func.functional_call`` for a guide that is
    a method of a ``torch.nn.Module`` (our VAE, a ``PyroModule``), and detached values of
    Pyro ``param`` sites for guides that use the parameter store.

    Returns a copy of ``guide_trace`` whose latent values are fresh views of the samples
    (so a gradient hook on them, as DReG's, acts on the densities' use of z and not on the
    sampling path from z₁ to z₂), and the stopped guide's trace at those views.
    """
    views = guide_trace.copy()
    for name, site in sample_sites(guide_trace).items():
        views.nodes[name] = {**site, "value": site["value"].view_as(site["value"])}
    fn, owner = guide, getattr(guide, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        method = _Method(owner, guide.__name__)
        detached = {f"owner.{name}": p.detach() for name, p in owner.named_parameters()}

        def fn(*args):
            return torch.func.functional_call(method, detached, args)

    run = in_particle_plate(fn, particles, dim)
    with _DetachParams():
        stopped = poutine.trace(poutine.replay(run, trace=views)).get_trace(x)
    return views, stopped


class _Method(torch.nn.Module):
    """A module whose forward is one method of ``owner`` (for ``torch.func.functional_call``)."""

    def __init__(self, owner: torch.nn.Module, name: str):
        super().__init__()
        self.owner, self.name = owner, name

    def forward(self, *args):
        return getattr(self.owner, self.name)(*args)


class _DetachParams(Messenger):
    """Pyro ``param`` sites give detached values (the guide's parameters held fixed)."""

    def _pyro_post_param(self, msg):
        msg["value"] = msg["value"].detach()
