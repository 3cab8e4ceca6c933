"""Importance weights, accumulated chunk by chunk: the estimate, its ESS, the tail's k̂ and an
error that holds.

For one data point's K weights w_k (arriving as log w_k, any number at a time):

    log p̂ = log (1/K) Σ_k w_k,           ESS = (Σ_k w_k)² / Σ_k w_k²      (Kong 1992),

k̂, the shape of a generalized Pareto fitted to the M largest weights
(:mod:`pyro_vae.inference.estimators.pareto`), and the Monte-Carlo error σ of log p̂
(:mod:`pyro_vae.inference.estimators.tail_error`). All of them need only log Σ w, log Σ w² and
the M + 1 largest log weights, kept as running log-sum-exps and a running top-(M + 1), so
memory does not grow with K.

σ is NaN, and the point "untrusted", where it cannot be reported:

* k̂ > 0.7 (:data:`~pyro_vae.inference.estimators.pareto.UNTRUSTED_K`): the weights' tail is
  too heavy for any error computed from them to hold;
* the weights underflow (every weight 0, or too few nonzero ones for a fit);
* K = 1: one draw says nothing of its spread (the error is unavailable, not untrusted:
  :attr:`WeightStats.error_available`).

For K ≤ 20 there are fewer than five tail weights to fit: k̂ is NaN, all K weights are kept and
σ is their leave-one-out jackknife's, unchecked.
"""

import math

import torch

from pyro_vae.inference.estimators.pareto import MIN_TAIL, UNTRUSTED_K, pareto_k, tail_length
from pyro_vae.inference.estimators.pooled_tail import TailFit
from pyro_vae.inference.estimators.tail_error import delta_stderr, jackknife_stderr, tail_mse


def effective_sample_size(log_sum_w: torch.Tensor, log_sum_w2: torch.Tensor) -> torch.Tensor:
    """(Σ w)² / Σ w² from log Σ w and log Σ w² (Kong 1992)."""
    return torch.exp(2 * log_sum_w - log_sum_w2)


class WeightStats:
    """Running log Σ w and log Σ w², ``(B,)``, and the M + 1 largest log weights, ``(M + 1, B)``
    (all K of them for K ≤ 20), over the K weights of B data points; see the module docstring.

    :param points: B.
    :param total: K, the number of samples that will be added.
    """

    def __init__(self, points: int, total: int, *, device=None, dtype=torch.float32):
        self.total = total
        #: whether there are tail weights enough for a fit; all K weights are kept where not
        self.fitted = tail_length(total) >= MIN_TAIL
        self.kept = tail_length(total) + 1 if self.fitted else total
        self.log_sum = torch.full((points,), -math.inf, device=device, dtype=dtype)
        self.log_sum2 = torch.full((points,), -math.inf, device=device, dtype=dtype)
        self.top = torch.full((0, points), -math.inf, device=device, dtype=dtype)
        #: each point's tail fit, set by :meth:`finish` where there is one, for
        #: :func:`~pyro_vae.inference.estimators.pooled_tail.pooled`
        self.fit: TailFit | None = None

    @property
    def error_available(self) -> bool:
        """Whether K ≥ 2: one weight has no spread to estimate an error from."""
        return self.total >= 2

    def add(self, log_w: torch.Tensor, start: int = 0) -> None:
        """Add the weights of samples ``start … start + k − 1``, ``log_w`` of shape (k, B)
        (the order does not matter: ``start`` is kept for the callers' bookkeeping)."""
        log_w = log_w.to(self.log_sum.dtype)
        self.log_sum = torch.logaddexp(self.log_sum, torch.logsumexp(log_w, 0))
        self.log_sum2 = torch.logaddexp(self.log_sum2, torch.logsumexp(2 * log_w, 0))
        both = torch.cat([self.top, log_w])
        self.top = both.topk(min(self.kept, len(both)), dim=0).values  # (≤ M + 1, B)

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log p̂, ESS, σ, k̂)``, each ``(B,)``; σ is NaN where it is not reported (module
        docstring), k̂ (float64) NaN for K ≤ 20 or where the fit fails."""
        log_px = self.log_sum - math.log(self.total)
        ess = effective_sample_size(self.log_sum, self.log_sum2)
        if not self.fitted:
            k = torch.full(log_px.shape, math.nan, dtype=torch.float64, device=log_px.device)
            stderr = jackknife_stderr(self.top)
        else:
            k, stderr = self._tail()
        heavy = k > UNTRUSTED_K
        ok = torch.isfinite(stderr) & ~heavy.to(stderr.device)
        return log_px, ess, torch.where(ok, stderr, torch.full_like(stderr, math.nan)), k

    def _tail(self) -> tuple[torch.Tensor, torch.Tensor]:
        """k̂ and σ from the tail fit; where the largest weights are equal to round-off (a guide
        at the exact posterior) or tie so that no tail can be fitted, k̂ is NaN and σ the delta
        method's, √((K/ESS − 1)/K), as small as the weights' spread."""
        k = pareto_k(self.top)
        grid, mse = tail_mse(self.log_sum, self.log_sum2, self.top, self.total)
        stderr = (grid.weight * mse).sum(0).sqrt().to(self.log_sum.dtype)
        spread = self.top[0] - self.top[-1]  # log of the largest over the (M+1)-th largest weight
        noise = 1000 * torch.finfo(self.top.dtype).eps * self.top[0].abs().clamp(min=1)
        flat = (spread <= noise).to(k.device)
        k = torch.where(flat, torch.full_like(k, math.nan), k)
        tied = torch.isnan(k).to(stderr.device) & torch.isfinite(self.log_sum)
        fitted = (torch.isfinite(k) & torch.isfinite(stderr).to(k.device)).to(grid.weight.device)
        log_weight = torch.where(fitted & (grid.weight > 0), grid.weight.log(), -math.inf)
        self.fit = TailFit(grid.shape.T, log_weight.T, mse.T, k.to(grid.shape))
        return k, torch.where(tied, delta_stderr(self.log_sum, self.log_sum2, self.total), stderr)
