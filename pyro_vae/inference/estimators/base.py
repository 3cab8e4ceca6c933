"""What every estimator of log p(x) shares: the registry, the result, and how one is chosen.

An estimator is a function registered by the name ``pyro-vae evaluate --estimator`` takes::

    @register_estimator("my_estimator")
    def my_estimator(model, guide, x, /, *, seed, batch_size, device, progress, plate="data",
                     samples: PositiveInt = 1000) -> MarginalLikelihood: ...

``x`` is ``(N, D)``; ``seed``, ``batch_size`` (points per pass), ``device``, ``progress`` (a
callable given the number of points done, or None), ``plate`` (the data plate's name) and,
where the estimator takes it, ``first_point`` (the index of ``x[0]`` among the points
measured, to key its noise by) are given by the caller; the keyword-only arguments after
them are the estimator's options, typed and defaulted like a part's. They are checked in one
place, :func:`check_estimator`, in the estimator's own terms (the command line sets them as
``--NAME VALUE`` or ``--option NAME=VALUE``, and names its flags in a refusal). It returns
log p̂(x_n) for every point with its diagnostics (:class:`MarginalLikelihood`).

With several processes (:mod:`pyro_vae.core.distributed`), :func:`estimate` gives each a block of
whole batches and gathers the per-point results: an estimator whose draws are keyed by point
(``first_point``) then gives each point the estimate one process gives it. One that does not
take ``first_point`` runs on every point in every process.

An estimator that uses q(z|x)'s density (as a proposal, or along an annealing path from it)
calls :func:`require_density` first: a point-mass guide (``delta``) has none, and log p(x)
is then refused with :class:`~pyro_vae.core.errors.NotDefined` rather than computed from Pyro's
log δ = 0, which is no density.
"""

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Self

import torch

from pyro_vae.core.distributed import world
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import check_value, describe, plain, show
from pyro_vae.core.registry import ESTIMATORS
from pyro_vae.inference.estimators.pareto import UNTRUSTED_K
from pyro_vae.inference.estimators.pooled_tail import TailFit, pooled
from pyro_vae.inference.sites import not_defined, point_mass_sites

register_estimator = ESTIMATORS.register


@dataclass
class MarginalLikelihood:
    """An estimate of log p(x_n) for each data point, with diagnostics of its weights."""

    #: log p̂(x_n), shape (N,)
    log_px: torch.Tensor
    #: effective sample size of each data point's K weights, (Σ w)² / Σ w², shape (N,)
    ess: torch.Tensor
    #: Monte-Carlo standard error of each log p̂(x_n) (:mod:`pyro_vae.inference.estimators.weights`);
    #: NaN where it is not reported: the point is untrusted (:meth:`why_untrusted`), or K = 1
    #: gives no error at all (:attr:`no_error`), shape (N,)
    mc_stderr: torch.Tensor
    num_samples: int
    #: Pareto k̂ of each point's weights (:mod:`pyro_vae.inference.estimators.pareto`), NaN where
    #: there are too few weights for a fit; None for an estimator that does not fit one, (N,)
    pareto_k: torch.Tensor | None = None
    #: each point's tail fit, from which :meth:`pooled` learns the shape from all points; None
    #: where there is none (K ≤ 20, or an estimator without a fit)
    tail: TailFit | None = field(default=None, repr=False)

    def pooled(self) -> Self:
        """This result with k̂ and the errors of the fitted points pooled over all of them
        (:mod:`pyro_vae.inference.estimators.pooled_tail`)."""
        if self.tail is None or self.pareto_k is None:
            return self
        k, stderr = pooled(self.pareto_k, self.mc_stderr, self.tail)
        return dataclasses.replace(self, pareto_k=k, mc_stderr=stderr)

    @property
    def mean(self) -> float:
        """The average log p̂(x) per data point."""
        return self.log_px.mean().item()

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over data points (the points' spread, Monte-Carlo
        noise included); NaN for one point, which has no spread."""
        n = self.log_px.numel()
        return (self.log_px.std() / math.sqrt(n)).item() if n > 1 else float("nan")

    @property
    def mc_stderr_of_mean(self) -> float:
        """The Monte-Carlo standard error of :attr:`mean`, √(Σ_n mc_stderr_n²) / N: how much the
        mean would move with another seed on the same points. Untrusted points (NaN) are left
        out of the sum, :attr:`trusted` says which they are; NaN where no point has an error."""
        if not self.trusted.any():
            return float("nan")
        return (self.mc_stderr.square().nansum().sqrt() / self.mc_stderr.numel()).item()

    @property
    def trusted(self) -> torch.Tensor:
        """Points whose Monte-Carlo error is reported, (N,) bool."""
        return torch.isfinite(self.mc_stderr)

    @property
    def no_error(self) -> str | None:
        """Why no point has an error at all, where that is so by design (K = 1), else None."""
        if self.num_samples < 2:
            return f"{self.num_samples} sample per point has no spread to estimate an error from"
        return None

    def why_untrusted(self) -> dict[int, str]:
        """Each untrusted point's index and why its error is not reported (none with K = 1)."""
        if self.no_error is not None:
            return {}
        k = (self.pareto_k if self.pareto_k is not None else torch.full_like(self.log_px, math.nan)).tolist()
        return {
            n: f"its weights' tail is too heavy: k̂ = {k[n]:.2f} > {UNTRUSTED_K}"
            if k[n] > UNTRUSTED_K
            else "its weights underflow: no error can be computed from them"
            for n in (~self.trusted).nonzero().flatten().tolist()
        }


def require_density(guide, x: torch.Tensor, estimator: str) -> None:
    """Refuse a guide with a point-mass site: ``estimator`` needs q(z|x)'s density.

    :raises NotDefined: naming the estimator, the site and why (one trace of the guide on a point).
    """
    sites = point_mass_sites(guide, x[:1])
    if sites:
        why = (
            f"; {estimator} weighs its samples by q's density, and an autoencoder's decoder was "
            "never fitted as a generative model p(z) p(x|z)"
        )
        raise not_defined(f"log p(x) by the estimator {estimator!r}", sites, why)


class EstimatorOptionError(ConfigError):
    """An estimator's option refused by :func:`check_estimator`, its parts kept so that a caller
    can name the option in its own words (the command line names the flag that set it):
    ``estimator``, ``option``, whether the estimator has no such option (``unknown``), and
    ``words(name)``, the refusal with the option called ``name``."""

    def __init__(self, estimator: str, option: str, problem: str, *, unknown: bool = False):
        self.estimator, self.option, self.problem, self.unknown = estimator, option, problem, unknown
        super().__init__(f"estimator {show(estimator)}: {self.words(f'option {option}')}")

    def words(self, name: str) -> str:
        return f"{name}{self.problem}"


def check_estimator(name: str, options: dict | None = None, *, defaults: dict | None = None) -> dict:
    """Every option of the estimator registered as ``name``: those in ``options`` checked against
    its keyword-only parameters' annotations (as a config file's values are), the others at its
    defaults, or at ``defaults``' for the options it names that the estimator has (a caller's
    own default: compare's ``eval_samples`` for ``samples``). The one check of an estimator's
    options, for :func:`estimate`, ``evaluate_run``, ``compare`` and the command line.

    :returns: the options in the estimator's own order, as TOML and JSON load them (lists, not
        tuples); checking them again returns them unchanged.
    :raises ConfigError: for a name no estimator is registered by; :class:`EstimatorOptionError`
        (a ConfigError) for an option, e.g. ``estimator "is": option samples = 0 is not allowed:
        expected an integer >= 1``.
    """
    ESTIMATORS.get(name, key="estimator")
    allowed = ESTIMATORS.options(name)
    given = {**{k: v for k, v in (defaults or {}).items() if k in allowed}, **(options or {})}
    for option in given:
        if option not in allowed:
            known = ", ".join(allowed) or "none"
            raise EstimatorOptionError(name, option, f" is unknown; allowed: {known}", unknown=True)
    full = {}
    for option, param in allowed.items():
        if option in given:
            try:
                full[option] = plain(check_value(option, given[option], param.annotation))
            except ConfigError:
                why = f" = {show(given[option])} is not allowed: expected {describe(param.annotation)}"
                raise EstimatorOptionError(name, option, why) from None
        elif param.default is param.empty:
            raise EstimatorOptionError(name, option, " must be given")
        else:
            full[option] = plain(param.default)
    return full


def estimate(
    name: str,
    model,
    guide,
    x: torch.Tensor,
    *,
    seed: int,
    batch_size: int = 100,
    device=None,
    progress=None,
    plate: str = "data",
    **options,
) -> MarginalLikelihood:
    """Run the estimator registered as ``name`` with ``options`` (:func:`check_estimator`).

    :raises ConfigError: naming the estimator, the option and what it allows.
    """
    given = check_estimator(name, options)
    entry = ESTIMATORS.get(name)
    w = world()
    shared = w.size > 1 and "first_point" in inspect.signature(entry).parameters
    lo, hi = w.block(len(x), batch_size) if shared else (0, len(x))
    if shared:
        given["first_point"] = lo
    result = entry(
        model,
        guide,
        x[lo:hi] if hi > lo else x[:1],  # a process with no points measures one, for the shapes
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=progress,
        plate=plate,
        **given,
    )
    return _gathered(result, len(x), batch_size, hi - lo) if shared else result


def _gathered(result: MarginalLikelihood, n: int, batch_size: int, mine: int) -> MarginalLikelihood:
    """The whole result from each process's: per-point tensors gathered in order, other
    numbers averaged over the processes weighted by their points (equal ones stay equal)."""
    w = world()
    counts = w.objects(mine)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if torch.is_tensor(value) and value.dim() >= 1 and len(value) == max(mine, 1):
            values[f.name] = w.gather(value[:mine], n, batch_size)
        elif isinstance(value, TailFit):
            values[f.name] = TailFit(*(w.gather(t[:mine], n, batch_size) for t in value))
        elif isinstance(value, float):
            shares = w.objects(value)
            values[f.name] = sum(v * c for v, c in zip(shares, counts, strict=True) if c) / n
    return dataclasses.replace(result, **values).pooled()  # the shape learnt from every process's points
