"""Measuring a model/guide pair on data points: the one path that ``evaluate``, ``compare`` and
the per-epoch metrics of training all take.

ELBO and its parts, for each data point x_n with one draw z ~ q(z|x_n)::

    ELBO(x_n) = recon(x_n) − KL(x_n)
    recon(x_n) = log p(x_n | z)
    KL(x_n)    = KL(q(z|x_n) || p(z))            in closed form where one is registered,
               = log q(z|x_n) − log p(z)          its one-sample Monte-Carlo estimate otherwise.

Both are unbiased estimates of the same bound (Kingma & Welling 2014, eqs. 6–7); the closed
form only has less variance. Which one was used is reported (:func:`pyro_vae.models.kl.site_kl`).

For a guide with no density (the point mass ``delta``, an autoencoder) only recon(x_n) =
log p(x_n | f(x_n)) is defined: KL(δ ‖ p) is infinite, and Pyro's log δ = 0 would turn
log p(x|z) + log p(z) into a number that looks like an ELBO and bounds nothing. The ELBO and
KL are then None, and so is log p(x), with the reason in ``log_px_absent`` (the estimators
refuse such a guide, :func:`pyro_vae.inference.estimators.base.require_density`).
log p(x) is estimated by a registered estimator (:mod:`pyro_vae.inference.estimators`), and active
units are counted as Burda et al. (2016) count them. :func:`measure` returns all of it as one
:class:`Measurement`.

Two standard errors mean two things, everywhere in pyro-vae:

* ``*_stderr``: the standard error of a mean over the N points, sd_n / √N: how much the mean
  would move on other points from the same distribution (Monte-Carlo noise included);
* ``log_px_mc_stderr``: the Monte-Carlo standard error of the mean log p̂ on *these* points,
  √(Σ_n σ_n²) / N from each point's error σ_n: how much it would move with another seed.

All of this works for any Pyro model/guide pair whose sites live under one plate over data
points (named ``"data"`` by default); see :mod:`pyro_vae.inference.traces`.
"""

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyro
import torch

from pyro_vae.core.distributed import world
from pyro_vae.core.errors import NotDefined
from pyro_vae.inference.estimators import IndexedNoise, MarginalLikelihood, estimate
from pyro_vae.inference.sites import max_plate_nesting
from pyro_vae.inference.traces import local_terms


@torch.no_grad()
def elbo_parts(
    model,
    guide,
    x: torch.Tensor,
    *,
    plate: str = "data",
    analytic_kl: bool = True,
    nesting: int | None = None,
) -> dict:
    """ELBO, reconstruction and KL per data point of one batch ``x``, shape ``(B,)`` each.

    With ``analytic_kl=False`` the KL is always the Monte-Carlo estimate, so that the
    ELBO is log p(x, z) − log q(z|x) at one z (exact at the true posterior, whatever z).
    Also returns ``"kl_estimator"``: ``"analytic"`` or ``"monte_carlo"``. For a point-mass
    guide the ELBO, the KL and their estimator are None (the module docstring).
    """
    nesting = max_plate_nesting(model, guide, x) if nesting is None else nesting
    t = local_terms(model, guide, x, nesting=nesting, plate=plate, analytic_kl=analytic_kl)
    if t.point_masses:
        return {"elbo": None, "recon": t.recon[0], "kl": None, "kl_estimator": None}
    kl, recon = t.kl_term[0], t.recon[0]
    return {"elbo": recon - kl, "recon": recon, "kl": kl, "kl_estimator": t.kl_estimator or "monte_carlo"}


@torch.no_grad()
def evaluate_elbo(
    model,
    guide,
    data: torch.Tensor,
    *,
    batch_size: int = 1000,
    plate: str = "data",
    analytic_kl: bool = True,
    device=None,
    seed: int | None = None,
) -> dict:
    """:func:`elbo_parts` over a whole dataset in batches; tensors of shape ``(N,)``.

    Batches are moved to ``device`` when given (data too large to hold there whole). With a
    ``seed`` each point's draw is keyed by (seed, point) (:mod:`pyro_vae.inference.noise`):
    the same whatever the batch size, and torch's global generator is left alone (training's
    per-epoch metrics do not move its draws); without one the global generator draws. With a
    seed, several processes (:mod:`pyro_vae.core.distributed`) share the batches and gather the
    results, which are those of one process.
    """
    device = device or data.device
    nesting = max_plate_nesting(model, guide, data[:1].to(device))
    options: dict[str, Any] = {"plate": plate, "analytic_kl": analytic_kl, "nesting": nesting}
    w = world()  # several processes: each measures its block of whole batches
    lo, hi = w.block(len(data), batch_size) if seed is not None else (0, len(data))
    chunks = []
    with pyro.validation_enabled(False):  # shapes were checked by max_plate_nesting's traces
        for i in range(lo, max(hi, lo + 1), batch_size):  # a process with no points measures one
            keyed = (
                IndexedNoise(seed, first_point=i, first_sample=0, plate=plate) if seed is not None else None
            )
            with keyed or contextlib.nullcontext():
                xb = data[i : min(i + batch_size, hi)] if hi > lo else data[:1]
                chunks.append(elbo_parts(model, guide, xb.to(device), **options))
    keys = [key for key in ("elbo", "recon", "kl") if chunks[0][key] is not None]  # recon alone: no density
    out = {key: torch.cat([c[key] for c in chunks])[: hi - lo] for key in keys}
    if seed is not None:
        out = {key: w.gather(value, len(data), batch_size) for key, value in out.items()}
    return {"elbo": None, "kl": None, **out, "kl_estimator": chunks[0]["kl_estimator"]}


@torch.no_grad()
def active_units(encode, data: torch.Tensor, *, threshold: float = 0.01, batch_size: int = 1000) -> int:
    """How many latent dimensions the encoder uses (Burda et al. 2016, section 5.2).

    A dimension u is active when A_u = Cov_x(E_{q(z|x)}[z_u]) > ``threshold``: its
    posterior mean moves with the data point. ``encode`` maps a batch to posterior means.
    """
    means = torch.cat([encode(data[i : i + batch_size]) for i in range(0, len(data), batch_size)])
    return int((means.var(0) > threshold).sum().item())


@dataclass
class Measurement:
    """What :func:`measure` found on ``points`` data points, in nats per data point."""

    points: int
    #: the ELBO, its standard error, the KL and how it was estimated: None for a guide with no
    #: density (the delta guide), where only the reconstruction term is defined
    elbo: float | None
    elbo_stderr: float | None
    recon: float
    kl: float | None
    kl_estimator: str | None
    #: the log p(x) estimator's name and options, None when log p(x) was not estimated
    estimator: str | None = None
    options: dict = field(default_factory=dict)
    log_px: float | None = None
    log_px_stderr: float | None = None
    log_px_mc_stderr: float | None = None
    #: why log p(x) is not defined when the estimator refused the guide (a point mass), else None
    log_px_absent: str | None = None
    ess_mean: float | None = None
    ess_min: float | None = None
    #: points whose Monte-Carlo error is not reported (NaN): their weights' tail is too heavy
    #: (Pareto k̂ > 0.7) or they underflow; None where no point has one (one sample per point)
    untrusted_points: int | None = None
    active_units: int | None = None
    #: seconds the log p(x) estimate took
    seconds: float | None = None
    #: the per-point estimate, kept in memory only
    marginal: MarginalLikelihood | None = field(default=None, repr=False, compare=False)

    def to_dict(self, prefix: str = "") -> dict:
        """The numbers as plain values (no tensors), keys prefixed with ``prefix``."""
        values = asdict(self)
        values.pop("marginal")
        return {f"{prefix}{k}": v for k, v in values.items()}


def measure(
    model,
    guide,
    x: torch.Tensor,
    *,
    estimator: str | None = None,
    options: dict | None = None,
    encode=None,
    seed: int = 0,
    batch_size: int = 100,
    elbo_batch_size: int = 1000,
    device=None,
    progress=None,
    plate: str = "data",
) -> Measurement:
    """Measure ``model``/``guide`` on the points ``x``: the ELBO and its parts, log p(x) by the
    registered ``estimator`` with ``options`` (none when unset), active units when ``encode``
    (x → posterior means) is given.

    The ELBO's draws, like the estimator's, are keyed by ``seed``: torch's global generator is
    not used (for guides that :class:`~pyro_vae.inference.estimators.IndexedNoise` covers). For a guide
    with no density the ELBO and KL are None, and log p(x) is None with the estimator's reason
    in ``log_px_absent``.
    """
    device = device or x.device
    parts = evaluate_elbo(model, guide, x, batch_size=elbo_batch_size, plate=plate, device=device, seed=seed)
    n = parts["recon"].numel()
    if parts["elbo"] is None:
        result = Measurement(n, None, None, parts["recon"].mean().item(), None, kl_estimator=None)
    else:
        spread = parts["elbo"].std() / n**0.5 if n > 1 else parts["elbo"][0] * math.nan  # one point: none
        elbo, elbo_stderr, recon, kl = torch.stack(
            [parts["elbo"].mean(), spread, parts["recon"].mean(), parts["kl"].mean()]
        ).tolist()  # one host read
        result = Measurement(n, elbo, elbo_stderr, recon, kl, kl_estimator=parts["kl_estimator"])
    if estimator is not None:
        start = time.perf_counter()
        result.estimator, result.options = estimator, dict(options or {})
        try:
            ml = estimate(
                estimator,
                model,
                guide,
                x,
                seed=seed,
                batch_size=batch_size,
                device=device,
                progress=progress,
                plate=plate,
                **(options or {}),
            )
        except NotDefined as e:  # a guide with no density: there is no log p(x) to report
            result.log_px_absent = e.reason
            return _with_active_units(result, encode, x, device)
        ess = ml.ess
        result.marginal = ml
        result.log_px, result.log_px_stderr, result.log_px_mc_stderr = (
            ml.mean,
            ml.stderr,
            ml.mc_stderr_of_mean,
        )
        result.ess_mean, result.ess_min = ess.mean().item(), ess.min().item()
        result.untrusted_points = None if ml.no_error else int((~ml.trusted).sum())
        result.seconds = time.perf_counter() - start
    return _with_active_units(result, encode, x, device)


def _with_active_units(result: Measurement, encode, x: torch.Tensor, device) -> Measurement:
    if encode is not None and len(x) > 1:  # one point has no covariance across points
        result.active_units = active_units(encode, x.to(device))
    return result


@torch.no_grad()
def accuracy(classifier, x: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000) -> float:
    """The fraction of points whose most probable class under ``classifier(x)`` (logits ``(B, C)``,
    q(y|x) of a semi-supervised graph) is their label; one host read."""
    correct = labels.new_zeros(())
    for start in range(0, len(x), batch_size):
        logits = classifier(x[start : start + batch_size])
        correct += (logits.argmax(-1) == labels[start : start + batch_size].to(logits.device)).sum()
    return correct.item() / len(x)
