"""The tail of importance weights: Pareto-smoothed importance sampling's k̂, for many points at once.

Above a high threshold u the weights' distribution is close to a generalized Pareto,

    P(w − u > t | w > u) = (1 + ξ t / σ)^(−1/ξ),

whose shape ξ says how many moments the weights have: E[w^r] is finite for r < 1/ξ. For
each point, the M = ⌈min(K/5, 3√K)⌉ largest of its K weights are fitted, their exceedances
over the (M+1)-th largest, and the estimate k̂ of ξ reads (Vehtari, Simpson, Gelman, Yao &
Gabry, "Pareto smoothed importance sampling", JMLR 2024, arXiv 1507.02646, §3):

* k̂ < 0.5: the weights have a variance; the central limit theorem, and an error bar from
  the weights' spread, hold;
* 0.5 ≤ k̂ ≤ 0.7: infinite variance, but the estimate still converges at a usable rate
  (their §3.2); the error bar is an approximation;
* k̂ > 0.7: the tail is so heavy that the estimate is unreliable at any practical K, and so
  is any error bar computed from the draws (they miss the weights that would move it). Such
  a point's error is not reported (:data:`UNTRUSTED_K`). The paper's threshold for small K
  is lower still, 1 − 1/log₁₀ K (0.5 for K = 100).

The fit is Zhang & Stephens' (2009, "A new and efficient estimation method for the
generalized Pareto distribution", Technometrics 51) empirical-Bayes estimate, as in the
paper, ``loo`` and ``arviz``: with b = −ξ/σ and exceedances x_1 ≤ … ≤ x_M, the profile
log-likelihood of b is

    ℓ(b) = M [log(−b / k(b)) − k(b) − 1],       k(b) = (1/M) Σ_i log(1 − b x_i),

evaluated on a grid of G = 30 + ⌊√M⌋ values b_j = 1/x_M + (1 − √(G / (j − ½))) / (3 x_⌊M/4+½⌋);
with π_j ∝ exp ℓ(b_j) (a posterior over the grid), b̂ = Σ_j π_j b_j, k̂ = k(b̂), σ̂ = −k̂ / b̂,
and k̂ is shrunk to 0.5 by a weakly informative prior worth 10 observations:
k̂ ← (M k̂ + 5) / (M + 10).

Here the fit is one ``(G, M, B)`` tensor computation for B points (no loop over points or
samples), in float64.
"""

import math
from typing import NamedTuple

import torch

#: k̂ above which a point's weights are too heavy-tailed for its error to be reported
UNTRUSTED_K = 0.7
#: the fewest tail weights a fit takes (``arviz``'s: 5, so K ≥ 21)
MIN_TAIL = 5


class Grid(NamedTuple):
    """Zhang & Stephens' grid for B points: the b_j, their shapes ξ_j = k(b_j) and scales
    σ_j = −ξ_j / b_j (before the prior on ξ), and their posterior weights π_j, each ``(G, B)``."""

    b: torch.Tensor
    shape: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor


def tail_length(samples: int) -> int:
    """M, the number of largest weights fitted: ⌈min(K/5, 3√K)⌉."""
    return math.ceil(min(0.2 * samples, 3 * math.sqrt(samples)))


def gpd_grid(x: torch.Tensor) -> Grid:
    """The grid of the module docstring for each column of ``x``, ``(M, B)``: positive
    exceedances sorted ascending along dim 0. Weights too small to count (< 10 ε) are 0."""
    x = x.double()
    m = x.shape[0]
    g = 30 + int(math.sqrt(m))
    j = torch.arange(1, g + 1, dtype=x.dtype, device=x.device)
    quartile = x[int(m / 4 + 0.5) - 1]  # (B,)
    b = 1 / x[-1] + (1 - torch.sqrt(g / (j - 0.5)))[:, None] / (3 * quartile)  # (G, B)
    k = torch.log1p(-b[:, None, :] * x).mean(1)  # (G, B)
    weight = torch.softmax(m * (torch.log(-b / k) - k - 1), 0)  # π_j ∝ exp ℓ(b_j)
    weight = torch.where(weight >= 10 * torch.finfo(x.dtype).eps, weight, torch.zeros_like(weight))
    return Grid(b, k, -k / b, weight / weight.sum(0))


def gpd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang & Stephens' estimate for each column of ``x`` (as :func:`gpd_grid` takes it):
    ``(k̂, σ̂)``, each ``(B,)``, k̂ with the weak prior; NaN where a column cannot be fitted."""
    grid = gpd_grid(x)
    b_hat = (grid.weight * grid.b).sum(0)
    k_hat = torch.log1p(-b_hat * x.double()).mean(0)
    m = x.shape[0]
    return (m * k_hat + 10 * 0.5) / (m + 10), -k_hat / b_hat


def exceedances(top_log_w: torch.Tensor) -> torch.Tensor:
    """The M largest weights' exceedances over the (M+1)-th, sorted ascending, ``(M, B)``, from
    the M + 1 largest log weights ``(M + 1, B)`` in any order, scaled so that the largest
    weight is 1."""
    top = top_log_w.double().sort(0).values
    top = top - top[-1:]  # no overflow
    return top[1:].exp() - top[:1].exp()


def pareto_k(top_log_w: torch.Tensor) -> torch.Tensor:
    """k̂ for each point from its M + 1 largest log weights, ``(M + 1, B)`` in any order.
    ``(B,)``; NaN where there are fewer than :data:`MIN_TAIL` tail weights or where the fit
    fails (the largest weights are equal, or underflow)."""
    if top_log_w.shape[0] - 1 < MIN_TAIL:
        return torch.full(top_log_w.shape[1:], math.nan, dtype=torch.float64, device=top_log_w.device)
    k, _ = gpd_fit(exceedances(top_log_w))
    return torch.where(torch.isfinite(k), k, torch.full_like(k, math.nan))
