"""The line ``pyro-vae evaluate`` prints for the record :func:`~pyro_vae.evaluation.evaluate.evaluate_run`
writes: log p(x) with its errors, the weights' diagnostics, and only the errors that exist.

* The error across points (± after log p(x) and the ELBO) needs two points or more.
* The Monte-Carlo error of the mean needs two samples per point or more; it sums the trusted
  points' errors (a lower bound where some are unknown), and the points left out are counted
  with the reason
  (:meth:`~pyro_vae.inference.estimators.base.MarginalLikelihood.why_untrusted`).
* Pareto k̂ (:mod:`pyro_vae.inference.estimators.pareto`): its largest value and the share
  of points above 0.7, where the estimator fits one.
"""

import math

from pyro_vae.inference.estimators.pareto import UNTRUSTED_K


def summary(r: dict) -> str:
    """``log p(x) = … ± … nats per point (…)`` for the record ``r``."""
    parts = [
        r["method"],
        f"{r['points']} {r['split']} point{'s' if r['points'] != 1 else ''}",
        monte_carlo_words(r),
        *([pareto_words(r)] if _number(r.get("pareto_k_max")) else []),
        f"ELBO {r['elbo']:.2f}{_plus_minus(r['elbo_stderr'])}",
        f"ESS mean {r['ess_mean']:.1f}, min {r['ess_min']:.1f}",
        f"{r['seconds']:.1f} s",
    ]
    spread = _plus_minus(r["log_px_stderr"])
    per_point = " nats per point" if r["points"] != 1 else " nats (one point: no spread across points)"
    return f"{r.get('measures', 'log p(x)')} = {r['log_px']:.2f}{spread}{per_point} ({'; '.join(parts)})"


def monte_carlo_words(r: dict) -> str:
    """The Monte-Carlo error of the mean, which points it leaves out and why, or why there is none."""
    if r.get("mc_error_unavailable"):
        return f"Monte-Carlo error unavailable: {r['mc_error_unavailable']}"
    left_out = r.get("untrusted") or []
    if not _number(r["log_px_mc_stderr"]):
        return f"Monte-Carlo error unknown: no point's error can be trusted ({_reasons(left_out)})"
    if not left_out:
        return f"Monte-Carlo error of the mean {r['log_px_mc_stderr']:.2f}"
    trusted = r["points"] - len(left_out)
    whose = "points'" if trusted != 1 else "point's"
    return (
        f"Monte-Carlo error of the mean at least {r['log_px_mc_stderr']:.2f}, from {trusted} {whose} "
        f"errors; {len(left_out)} unknown ({_reasons(left_out)})"
    )


def pareto_words(r: dict) -> str:
    share = r["heavy_tail_points"] / r["points"]
    return f"Pareto k̂ max {r['pareto_k_max']:.2f}, {share:.0%} of points above {UNTRUSTED_K}"


def _reasons(left_out: list[dict]) -> str:
    """``12 with too heavy a tail (k̂ > 0.7), 1 whose weights underflow``."""
    heavy = sum(1 for u in left_out if u["why"].startswith("its weights' tail"))
    words = [f"{heavy} whose weights' tail is too heavy, k̂ > {UNTRUSTED_K}"] if heavy else []
    if len(left_out) > heavy:
        words.append(f"{len(left_out) - heavy} whose weights underflow")
    return ", ".join(words)


def _plus_minus(value) -> str:
    return f" ± {value:.2f}" if _number(value) else ""


def _number(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
