"""Annealed importance sampling (AIS) for log p(x), with Hamiltonian Monte Carlo transitions.

For each data point x, AIS moves from the guide to the posterior along the geometric path

    π_t(z) ∝ q(z|x)^{1−β_t} p(x, z)^{β_t},     0 = β_0 < β_1 < … < β_T = 1.

A chain starts at z_0 ~ q(z|x) and, for t = 1..T, first adds

    log w += (β_t − β_{t−1}) · [log p(x, z_{t−1}) − log q(z_{t−1}|x)]

then moves z by an HMC transition that leaves π_t invariant. Each w is an unbiased estimate
of p(x) (Neal 2001, "Annealed importance sampling"), so log (1/C) Σ_c w_c over C chains is a
stochastic lower bound on log p(x) which, with enough steps, is much tighter than importance
sampling with q at the same compute when q is poor (Wu et al. 2017, "On the quantitative
analysis of decoder-based generative models").

Run the same chain backwards, from β = 1 to 0, starting at an exact posterior sample, and
the weights estimate 1/p(x): −log (1/C) Σ_c w_c is then a stochastic *upper* bound. Exact
posterior samples exist for data simulated from the model itself (z ~ p(z), x ~ p(x|z)),
so on simulated data the two directions bracket the true value: bidirectional Monte Carlo
(Grosse, Ghahramani & Adams 2015; Grosse et al. 2016).

The C chains of B data points run as one ``(C, B, ...)`` tensor (a ``particles`` plate, as in
:mod:`pyro_vae.inference.traces`); the Python loop is over annealing and leapfrog steps only. HMC's
step size is adapted per data point toward an acceptance rate of 0.65 (× 1.02 above it,
× 0.98 below). Latent sites must have real support (unconstrained values).

The path starts at q and every weight holds log q, so a guide with no density (the point
mass ``delta``) is refused, as importance sampling refuses it.
"""

from dataclasses import dataclass
from typing import Annotated

import pyro
import torch
from pyro import poutine
from pyro.distributions import constraints

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveFloat, PositiveInt, Range
from pyro_vae.inference.estimators.base import MarginalLikelihood, register_estimator, require_density
from pyro_vae.inference.estimators.pooled_tail import TailFit
from pyro_vae.inference.estimators.weights import WeightStats
from pyro_vae.inference.noise import IndexedNoise, step_seed
from pyro_vae.inference.sites import (
    at_values,
    in_particle_plate,
    latent_sites,
    max_plate_nesting,
    per_particle_datum,
    sample_sites,
    to_site_layout,
)
from pyro_vae.inference.traces import local_terms

Acceptance = Annotated[float, Range(lo=0, hi=1, lo_open=True, hi_open=True)]


def sigmoid_schedule(steps: int, sharpness: float = 4.0) -> list[float]:
    """β_0..β_T: a sigmoid path, dense near 0 and 1 where the intermediate targets change fastest
    (Grosse, Maddison & Salakhutdinov 2013)."""
    s = torch.sigmoid(sharpness * torch.linspace(-1, 1, steps + 1, dtype=torch.float64))
    return ((s - s[0]) / (s[-1] - s[0])).tolist()


@dataclass
class AISEstimate(MarginalLikelihood):
    """log p̂(x) per data point from C chains (``num_samples``), with diagnostics.

    ``log_px`` is a stochastic lower bound (forward) or upper bound (reverse); ``ess``,
    ``mc_stderr`` and ``pareto_k`` are those of each point's C chain weights.
    """

    #: mean HMC acceptance rate over all transitions and chains
    acceptance: float = float("nan")
    steps: int = 0


def _initial_latents(guide, x, chains, nesting, seed, first_point, plate):
    """z ~ q(z|x) for every chain, keyed noise as importance sampling's, with the guide's sites
    (for their shapes and plates)."""
    with IndexedNoise(seed, first_point=first_point, first_sample=0, plate=plate):
        trace = poutine.trace(in_particle_plate(guide, chains, -(nesting + 1))).get_trace(x)
    sites = latent_sites(trace)
    for name, site in sites.items():
        support = site["fn"].support
        while isinstance(support, constraints.independent):
            support = support.base_constraint
        if support is not constraints.real:
            raise ConfigError(
                f"the estimator ais moves latents of real support by Hamiltonian Monte Carlo, and {name!r} "
                f"has {support}: use the estimator is (which sums a class exactly)"
            )
    return {name: site["value"].detach() for name, site in sites.items()}, sites


def _kinetic(momenta, sites, plate):
    """½ |p|² per chain and data point, ``(C, B)``."""
    total: torch.Tensor | float = 0.0
    for name, p in momenta.items():
        event_dims = tuple(range(-len(sites[name]["fn"].event_shape), 0))
        energy = 0.5 * (p.pow(2).sum(event_dims) if event_dims else p.pow(2))
        total = total + per_particle_datum(energy, sites[name], plate)
    return total


@dataclass(frozen=True)
class _Path:
    """The annealing path of one batch of B points, C chains each:
    π_β(z) ∝ q(z|x)^{1−β} p(x, z)^β."""

    model: object
    guide: object
    x: torch.Tensor  # (B, ...)
    chains: int
    nesting: int
    plate: str

    def densities(self, z):
        """log p(x, z) and log q(z|x) at the latent values ``z``, each ``(C, B)``: the densities
        training uses (:func:`pyro_vae.inference.traces.local_terms`), masks and all, with the
        guide run at ``z``."""
        guide = at_values(self.guide, z)
        terms = local_terms(
            self.model, guide, self.x, particles=self.chains, nesting=self.nesting, plate=self.plate
        )
        return terms.recon + terms.log_prior, terms.log_q

    def energy(self, z, beta):
        """U = −log π_β(z) up to a constant, its gradient, and log p, log q: each (C, B)."""
        with torch.enable_grad():
            z = {n: v.detach().requires_grad_() for n, v in z.items()}
            log_p, log_q = self.densities(z)
            u = -((1 - beta) * log_q + beta * log_p)
            grads = torch.autograd.grad(u.sum(), list(z.values()))  # chains and points independent
        return u.detach(), dict(zip(z, grads, strict=True)), log_p.detach(), log_q.detach()


@dataclass
class _Transitions:
    """HMC's settings, and its acceptance count over every batch."""

    leapfrog: int
    step_size: float
    adapt: bool
    target_acceptance: float
    accepted: torch.Tensor | float = 0.0
    moves: int = 0

    def count(self, accept: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Count the moves of one transition; the step sizes ``eps`` (C, B) for the next."""
        rate = accept.to(eps.dtype).mean(0, keepdim=True)  # (1, B): per data point, over chains
        self.accepted, self.moves = self.accepted + rate.sum(), self.moves + rate.numel()
        if self.adapt:
            eps = eps * torch.where(rate > self.target_acceptance, 1.02, 0.98)
        return eps


def _leapfrog(path: _Path, z, p, step, beta, leapfrog: int):
    """``leapfrog`` steps of Hamiltonian dynamics for U = −log π_β from (z, p), p's first half
    step taken: the end point, its momentum, and U, log p, log q there."""
    for leap in range(leapfrog):
        z = {n: z[n] + step[n] * p[n] for n in z}
        u, grad, log_p, log_q = path.energy(z, beta)
        half = 0.5 if leap == leapfrog - 1 else 1.0
        p = {n: p[n] - half * step[n] * grad[n] for n in z}
    return z, p, u, log_p, log_q


def _hmc(path: _Path, z, log_p, log_q, beta, eps, sites, leapfrog: int, rng):
    """One HMC transition that leaves π_β invariant, every chain and point at once: the new
    z, log p and log q, and which chains moved, (C, B)."""
    u, grad, _, _ = path.energy(z, beta)
    step = {n: to_site_layout(eps, sites[n], path.plate) for n in z}
    p0 = {n: torch.randn(v.shape, generator=rng, device=v.device, dtype=v.dtype) for n, v in z.items()}
    p = {n: p0[n] - 0.5 * step[n] * grad[n] for n in z}
    z_new, p, u_new, log_p_new, log_q_new = _leapfrog(path, z, p, step, beta, leapfrog)
    log_accept = u - u_new + _kinetic(p0, sites, path.plate) - _kinetic(p, sites, path.plate)  # (C, B)
    uniform = torch.rand(log_accept.shape, generator=rng, device=log_accept.device, dtype=log_accept.dtype)
    accept = (uniform.log() < log_accept) & torch.isfinite(log_accept)
    z = {n: torch.where(to_site_layout(accept, sites[n], path.plate), z_new[n], z[n]) for n in z}
    return z, torch.where(accept, log_p_new, log_p), torch.where(accept, log_q_new, log_q), accept


def _anneal(path: _Path, z, sites, betas: list[float], hmc: _Transitions, rng) -> torch.Tensor:
    """The log weights (C, B) of chains started at ``z`` and moved along ``betas``."""
    _, _, log_p, log_q = path.energy(z, betas[0])
    log_w = torch.zeros_like(log_p)  # (C, B)
    eps = torch.full(log_p.shape, hmc.step_size, dtype=path.x.dtype, device=path.x.device)  # (C, B)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * (log_p - log_q)  # log π̃_t(z) − log π̃_{t−1}(z)
        if t == len(betas) - 1:
            break  # the last weight is in; a final move would not change it
        z, log_p, log_q, accept = _hmc(path, z, log_p, log_q, betas[t], eps, sites, hmc.leapfrog, rng)
        eps = hmc.count(accept, eps)
    return log_w


def _point_estimates(log_w: torch.Tensor, reverse: bool):
    """log p̂(x), ESS, Monte-Carlo standard error, Pareto k̂ per point and the tail fit (or None)
    from the (C, B) log weights: forward, E[w] = p(x); reverse (β from 1 to 0), E[w] = 1 / p(x)."""
    chains, points = log_w.shape
    stats = WeightStats(points, chains, device=log_w.device, dtype=log_w.dtype)
    stats.add(log_w, 0)
    lme, ess, stderr, k = stats.finish()
    return -lme if reverse else lme, ess, stderr, k, stats.fit


@register_estimator("ais")
@torch.no_grad()
@pyro.validation_enabled(False)  # shapes were checked by max_plate_nesting's traces
def ais(
    model,
    guide,
    x: torch.Tensor,
    /,
    *,
    seed: int | None = None,
    batch_size: int = 100,
    device=None,
    progress=None,
    plate: str = "data",
    first_point: int = 0,
    chains: PositiveInt = 16,
    steps: PositiveInt = 500,
    leapfrog: PositiveInt = 10,
    step_size: PositiveFloat = 0.05,
    adapt: bool = True,
    target_acceptance: Acceptance = 0.65,
    reverse_from: dict | None = None,
) -> AISEstimate:
    """Annealed importance sampling from the guide to the posterior with HMC moves (Neal 2001): a
    stochastic lower bound on log p(x_n) for each row of ``x``, or, run in reverse from exact
    posterior samples (``reverse_from``, Python only), an upper bound; see the module docstring.

    :param chains: C, independent chains per data point.
    :param steps: T, intermediate distributions.
    :param leapfrog: leapfrog steps per HMC transition.
    :param step_size: the initial HMC step size (adapted per data point when ``adapt``).
    :param reverse_from: run from β = 1 to 0 starting at these latent values, ``{site: (C, N, ...)}``
        (exact posterior samples of simulated data, as :func:`simulate` gives): the result is then a
        stochastic upper bound.
    :param seed: fixes the initial draws (keyed by point and chain, as importance sampling's),
        the momenta and the accept decisions; a draw from torch's global generator when unset.
    :param progress: optional callable called with the number of data points done.
    :param first_point: the index of ``x[0]`` among the points measured (its share of them, when
        several processes share the work): each batch's momenta and accept decisions come from
        a generator keyed by the seed and its first point, as its initial draws.
    """
    device = device or x.device
    require_density(guide, x[:1].to(device), "ais")  # the path starts at q and weighs by log q
    nesting = max_plate_nesting(model, guide, x[:1].to(device))
    seed = int(torch.randint(2**62, ())) if seed is None else seed
    betas = sigmoid_schedule(steps)[:: -1 if reverse_from is not None else 1]
    hmc = _Transitions(leapfrog, step_size, adapt, target_acceptance)
    batches = []
    for i in range(0, len(x), batch_size):
        xb, first = x[i : i + batch_size].to(device), first_point + i
        rng = torch.Generator(device=device).manual_seed(step_seed(seed, first) % 2**63)
        z, sites = _initial_latents(guide, xb, chains, nesting, seed, first, plate)
        if reverse_from is not None:
            z = {name: reverse_from[name][:, first : first + len(xb)].to(device).clone() for name in z}
        log_w = _anneal(_Path(model, guide, xb, chains, nesting, plate), z, sites, betas, hmc, rng)
        batches.append(_point_estimates(log_w, reverse=reverse_from is not None))
        if progress is not None:
            progress(len(xb))
    *parts, fits = zip(*batches, strict=True)
    log_px, ess, stderr, k = (torch.cat(part) for part in parts)
    tail = TailFit.cat(list(fits))
    acceptance = float(hmc.accepted / max(hmc.moves, 1))
    result = AISEstimate(
        log_px, ess, stderr, num_samples=chains, pareto_k=k, tail=tail, acceptance=acceptance, steps=steps
    )
    return result.pooled()


@torch.no_grad()
def simulate(model, guide, x_like: torch.Tensor, *, chains: int = 1, plate: str = "data"):
    """Data from the model itself and the latents that made it: exact posterior samples.

    Returns ``(x, latents)`` with x shaped like ``x_like`` and, for :func:`ais`'s ``reverse_from``,
    each latent repeated for ``chains`` chains: ``{site: (C, N, ...)}``.
    """
    trace = poutine.trace(poutine.uncondition(model)).get_trace(x_like)
    observed = [
        name
        for name, site in sample_sites(poutine.trace(model).get_trace(x_like)).items()
        if site["is_observed"]
    ]
    if len(observed) != 1:
        raise NotImplementedError(f"simulate needs one observed site, found {observed}")
    x = trace.nodes[observed[0]]["value"]
    latents = {
        name: site["value"].expand(chains, *site["value"].shape).clone()
        for name, site in sample_sites(trace).items()
        if name not in observed
    }
    return x, latents
