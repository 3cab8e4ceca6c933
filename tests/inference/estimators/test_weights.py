"""The weights' diagnostics (pyro_vae/inference/estimators/weights.py): log p̂, ESS, k̂ and the
error, the same whatever the chunking; which points are left untrusted, and why.

Synthetic weights: z ~ N(0, 1), x | z ~ N(z, σ²) with the proposal N(μ + shift·s, (c·s)²) around
the exact posterior N(μ, s²); in standardised coordinates log w − log p(x) = −u²/2 +
(u − shift)²/(2c²) + log c, u the proposal's draw. c < 1/√2 gives weights of infinite variance.
"""

import math

import pytest
import torch

from pyro_vae.inference.estimators.pareto import pareto_k, tail_length
from pyro_vae.inference.estimators.tail_error import jackknife_stderr, tail_stderr
from pyro_vae.inference.estimators.weights import WeightStats, effective_sample_size


def log_weights(gen, k, cols, c, shift, dtype=torch.float64):
    u = shift + c * torch.randn(k, cols, generator=gen, dtype=dtype)
    return -0.5 * u**2 + 0.5 * ((u - shift) / c) ** 2 + math.log(c)


def accumulate(log_w, chunk):
    stats = WeightStats(log_w.shape[1], log_w.shape[0], dtype=log_w.dtype)
    for start in range(0, len(log_w), chunk):
        stats.add(log_w[start : start + chunk], start)
    return stats


@pytest.mark.parametrize("k", [10, 103])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_any_chunking_gives_the_log_mean_weight_ess_k_and_error(dtype, k):
    gen = torch.Generator().manual_seed(1)
    log_w = log_weights(gen, k, 6, 0.6, 1.0).to(dtype) - 300  # far from 0: the sums stay in log space
    exact_lp = torch.logsumexp(log_w.double(), 0) - math.log(k)
    exact_ess = effective_sample_size(
        torch.logsumexp(log_w.double(), 0), torch.logsumexp(2 * log_w.double(), 0)
    )
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-3, "atol": 1e-4}
    results = [accumulate(log_w, chunk).finish() for chunk in (1, 7, k)]
    for log_px, ess, stderr, k_hat in results:
        torch.testing.assert_close(log_px.double(), exact_lp, **tol)
        torch.testing.assert_close(ess.double(), exact_ess, **tol)
        torch.testing.assert_close(stderr, results[-1][2], equal_nan=True, **tol)
        torch.testing.assert_close(k_hat, results[-1][3], equal_nan=True, **tol)


def test_the_error_is_the_tail_fits_over_the_largest_weights_kept():
    gen = torch.Generator().manual_seed(2)
    log_w = log_weights(gen, 200, 5, 0.9, 0.5)
    stats = accumulate(log_w, 13)
    top = log_w.topk(tail_length(200) + 1, 0).values
    torch.testing.assert_close(stats.top, top)
    _, _, stderr, k = stats.finish()
    torch.testing.assert_close(k, pareto_k(top))
    expected = tail_stderr(log_w.logsumexp(0), (2 * log_w).logsumexp(0), top, 200)
    torch.testing.assert_close(stderr, torch.where(k > 0.7, math.nan, expected), equal_nan=True)


def test_few_samples_keep_every_weight_and_report_their_jackknife():
    gen = torch.Generator().manual_seed(3)
    log_w = log_weights(gen, 12, 4, 0.7, 0.5)
    _, _, stderr, k = accumulate(log_w, 5).finish()
    assert torch.isnan(k).all()  # 12 samples: 3 tail weights, too few for a fit
    theta = torch.stack([log_w[torch.arange(12) != i].logsumexp(0) - math.log(11) for i in range(12)])
    expected = (11 / 12 * (theta - theta.mean(0)).square().sum(0)).sqrt()
    torch.testing.assert_close(stderr, expected)
    torch.testing.assert_close(jackknife_stderr(log_w), expected)


def test_a_heavy_tail_leaves_the_error_unreported_and_underflow_too():
    gen = torch.Generator().manual_seed(4)
    heavy = log_weights(gen, 1000, 1, 0.45, 1.5)  # ξ well above 0.7
    log_w = torch.cat([heavy, torch.full((1000, 1), -math.inf), torch.zeros(1000, 1)], 1)
    _, ess, stderr, k = accumulate(log_w, 100).finish()
    assert k[0] > 0.7 and math.isnan(stderr[0])
    assert math.isnan(stderr[1])  # every weight 0
    assert stderr[2] == 0 and math.isnan(k[2]) and ess[2] == pytest.approx(1000)  # equal weights


def test_one_sample_has_no_error():
    stats = accumulate(torch.tensor([[0.5, -1.0]]), 1)
    assert not stats.error_available
    log_px, ess, stderr, k = stats.finish()
    assert log_px.tolist() == [0.5, -1.0] and ess.tolist() == [1.0, 1.0]
    assert torch.isnan(stderr).all() and torch.isnan(k).all()
