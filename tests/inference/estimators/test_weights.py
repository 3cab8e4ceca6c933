"""The weights' diagnostics (pyro_vae/estimators/weights.py): today's log p̂ and ESS whatever the
chunking, and a Monte-Carlo error that holds, checked by replicate seeds.

Synthetic weights: z ~ N(0, 1), x | z ~ N(z, σ²) with the proposal N(μ + shift·s, (c·s)²) around
the exact posterior N(μ, s²); in standardised coordinates log w − log p(x) = −u²/2 +
(u − shift)²/(2c²) + log c, u the proposal's draw. c < 1/√2 gives weights of infinite variance.
"""

import math

import pytest
import torch
from ppca import ppca

import pyro_vae
from pyro_vae.inference.estimators.weights import WeightStats, effective_sample_size

R, N = 200, 50  # replicate seeds, points


def log_weights(gen, k, cols, c, shift, dtype=torch.float64):
    u = shift + c * torch.randn(k, cols, generator=gen, dtype=dtype)
    return -0.5 * u**2 + 0.5 * ((u - shift) / c) ** 2 + math.log(c)


def accumulate(log_w, chunk, blocks=20):
    stats = WeightStats(log_w.shape[1], log_w.shape[0], blocks=blocks, dtype=log_w.dtype)
    for start in range(0, len(log_w), chunk):
        stats.add(log_w[start : start + chunk], start)
    return stats


def delta_method(ess, k):
    """The error reported before: √((K / ESS − 1) / K)."""
    return ((k / ess - 1).clamp(min=0) / k).sqrt()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_any_chunking_gives_the_log_mean_weight_and_ess(dtype):
    gen = torch.Generator().manual_seed(1)
    k, b = 103, 6
    log_w = log_weights(gen, k, b, 0.6, 1.0).to(dtype) - 300  # far from 0: the sums stay in log space
    exact_lp = torch.logsumexp(log_w.double(), 0) - math.log(k)
    exact_ess = effective_sample_size(
        torch.logsumexp(log_w.double(), 0), torch.logsumexp(2 * log_w.double(), 0)
    )
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-3, "atol": 1e-4}
    results = [accumulate(log_w, chunk).finish() for chunk in (1, 7, k)]
    for log_px, ess, stderr in results:
        torch.testing.assert_close(log_px.double(), exact_lp, **tol)
        torch.testing.assert_close(ess.double(), exact_ess, **tol)
        torch.testing.assert_close(stderr, results[-1][2], equal_nan=True, **tol)


def test_block_sums_are_the_sums_of_their_samples():
    gen = torch.Generator().manual_seed(2)
    k, b, m = 50, 3, 7
    log_w = log_weights(gen, k, b, 0.8, 0.5)
    block = torch.arange(k) * m // k
    direct = torch.stack([log_w[block == i].logsumexp(0) for i in range(m)])
    torch.testing.assert_close(accumulate(log_w, 9, blocks=m).block_log_sum, direct)


def test_the_jackknife_is_the_spread_of_leave_one_block_out_estimates():
    gen = torch.Generator().manual_seed(3)
    k, m = 40, 5
    log_w = log_weights(gen, k, 4, 0.7, 0.5)
    block = torch.arange(k) * m // k
    theta = torch.stack([log_w[block != i].logsumexp(0) - math.log((block != i).sum()) for i in range(m)])
    expected = ((m - 1) / m * (theta - theta.mean(0)).pow(2).sum(0)).sqrt()
    torch.testing.assert_close(accumulate(log_w, k, blocks=m).finish()[2], expected)


def spread_ratio(c, shift, k, method, seed=0):
    """RMS of the reported error over the true sd of log p̂ over R seeds (RMS over N points), and
    the tolerance: the sampling error of an sd from R replicates, sd/√(2(R−1)), times 3."""
    gen = torch.Generator().manual_seed(seed)
    log_px, ess, stderr = accumulate(log_weights(gen, k, R * N, c, shift), chunk=k).finish()
    reported = stderr if method == "jackknife" else delta_method(ess, k)
    assert torch.isfinite(reported).all()
    true = log_px.view(R, N).std(0).pow(2).mean().sqrt()
    return (reported.pow(2).mean().sqrt() / true).item(), 3 / math.sqrt(2 * (R - 1))


@pytest.mark.parametrize(
    ("c", "shift", "k"),
    [(0.6, 1.0, 100), (0.8, 1.0, 100), (1.5, 0.0, 100)],
    ids=["infinite-variance", "heavy", "light"],
)
def test_the_reported_error_is_the_spread_over_seeds(c, shift, k):
    ratio, tol = spread_ratio(c, shift, k, "jackknife")
    assert abs(ratio - 1) < tol, (ratio, tol)


def test_the_delta_method_would_fail_the_same_check():
    ratio, tol = spread_ratio(0.6, 1.0, 100, "delta")  # about 0.65
    assert ratio < 1 - tol, (ratio, tol)


def test_importance_sampling_reports_the_spread_over_seeds_on_a_linear_gaussian_vae(f64):
    # a guide too narrow and shifted: heavy-tailed weights; replicate seeds give the true spread
    vae, x, _, _, _ = ppca("cpu", shift=0.5, scale_factor=0.6)
    runs = [pyro_vae.importance_sampling(vae.model, vae.guide, x, seed=s, samples=100) for s in range(60)]
    log_px = torch.stack([r.log_px for r in runs])  # (R, N)
    stderr = torch.stack([r.mc_stderr for r in runs])
    assert torch.isfinite(stderr).all()
    true = log_px.std(0).pow(2).mean().sqrt()
    ratio = (stderr.pow(2).mean().sqrt() / true).item()
    assert abs(ratio - 1) < 3 / math.sqrt(2 * (len(runs) - 1)), ratio


def test_one_dominant_weight_gives_a_large_error_and_none_only_where_it_cannot_be_computed():
    log_w = torch.tensor([[0.0, 0.0, 0.0], [-1e4, -1.0, -math.inf], [-1e4, -2.0, -math.inf]])
    _, ess, stderr = accumulate(log_w, 3, blocks=3).finish()
    assert ess[0] == pytest.approx(1.0) and stderr[0] > 1000  # one weight holds it all
    assert ess[1] > 1.5 and stderr[1] < 2
    assert math.isnan(stderr[2])  # leaving the one finite weight out leaves nothing
