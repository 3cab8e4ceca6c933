"""The tail's shape learnt from all points (pyro_vae/inference/estimators/pooled_tail.py): only
ever more cautious than each point's own fit, and errors that hold where the own fits' do not.

Synthetic weights with a known tail: target N(0, 1), proposal N(0, c²) for point n, so that
log w = −u²/2 + u²/(2c²) + log c with u ~ N(0, c²), E[w] = 1 (log p(x) = 0) and the weights'
tail shape is ξ = 1 − c².
"""

import math

import torch

from pyro_vae.inference.estimators.pooled_tail import MIN_POINTS, TailFit, pooled
from pyro_vae.inference.estimators.weights import WeightStats


def replicates(shapes: torch.Tensor, samples: int, seeds: int):
    """log p̂, each point's own (k̂, σ) and the pooled ones, each ``(S, N)``, over ``seeds``
    replicate draws of K = ``samples`` weights for points of tail shapes ``shapes``."""
    gen = torch.Generator().manual_seed(0)
    c = (1 - shapes).sqrt()
    out = []
    for _ in range(seeds):
        u = c * torch.randn(samples, len(c), generator=gen, dtype=torch.float64)
        stats = WeightStats(len(c), samples, dtype=torch.float64)
        stats.add(-0.5 * u**2 + 0.5 * (u / c) ** 2 + c.log())
        log_px, _, stderr, k = stats.finish()
        out.append((log_px, k, stderr, *pooled(k, stderr, stats.fit)))
    return [torch.stack(t) for t in zip(*out, strict=True)]


def covered(log_px: torch.Tensor, stderr: torch.Tensor) -> float:
    """The share of the trusted (seed, point) pairs whose ±2σ covers the mean over seeds."""
    ok = torch.isfinite(stderr)
    return ((log_px - log_px.mean(0)).abs() <= 2 * stderr)[ok].double().mean().item()


def test_heavy_tails_that_look_light_are_caught_and_pooling_never_trusts_more():
    shapes = torch.linspace(0.7, 0.99, 200, dtype=torch.float64)  # every tail heavy: k > 0.7
    log_px, k, stderr, k_pooled, stderr_pooled = replicates(shapes, 100, 10)
    trusted, trusted_pooled = torch.isfinite(stderr), torch.isfinite(stderr_pooled)
    assert not (trusted_pooled & ~trusted).any()  # never trusts what a point's own fit does not
    assert (k_pooled >= k).all()
    both = trusted_pooled
    assert (stderr_pooled[both] >= stderr[both] * (1 - 1e-12)).all()  # nor narrows an error
    assert covered(log_px, stderr) < 0.90  # the own fits' errors of these heavy tails fail...
    assert covered(log_px, stderr_pooled) >= 0.93  # ...and pooled ones hold


def test_light_tails_stay_trusted_with_errors_that_hold():
    shapes = torch.linspace(0.05, 0.4, 200, dtype=torch.float64)
    log_px, _, _, _, stderr_pooled = replicates(shapes, 100, 10)
    assert torch.isfinite(stderr_pooled).double().mean() >= 0.95
    assert covered(log_px, stderr_pooled) >= 0.93


def test_too_few_points_keep_their_own_fit():
    shapes = torch.full((MIN_POINTS - 1,), 0.9, dtype=torch.float64)
    _, k, stderr, k_pooled, stderr_pooled = replicates(shapes, 100, 1)
    torch.testing.assert_close(k_pooled, k, equal_nan=True)
    torch.testing.assert_close(stderr_pooled, stderr, equal_nan=True)


def test_the_order_of_the_points_does_not_matter():
    gen = torch.Generator().manual_seed(3)
    c = torch.rand(60, generator=gen, dtype=torch.float64) * 0.9 + 0.1
    u = c * torch.randn(200, 60, generator=gen, dtype=torch.float64)
    log_w = -0.5 * u**2 + 0.5 * (u / c) ** 2 + c.log()
    order = torch.randperm(60, generator=gen)
    results = []
    for w in (log_w, log_w[:, order]):
        stats = WeightStats(60, 200, dtype=torch.float64)
        stats.add(w)
        _, _, stderr, k = stats.finish()
        results.append(pooled(k, stderr, stats.fit))
    torch.testing.assert_close(results[1][0], results[0][0][order], equal_nan=True)
    torch.testing.assert_close(results[1][1], results[0][1][order], equal_nan=True)
    assert not math.isnan(results[0][0].nanmean().item())


def test_shares_pooled_then_their_whole_pooled_are_the_whole_pooled_once():
    """A torchrun evaluation pools each process's share, then the gathered whole: pooling reads
    only each point's own fit, so the whole's numbers are those of pooling it once."""
    gen = torch.Generator().manual_seed(5)
    c = torch.rand(80, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    u = c * torch.randn(100, 80, generator=gen, dtype=torch.float64)
    log_w = -0.5 * u**2 + 0.5 * (u / c) ** 2 + c.log()
    parts = []
    for cols in (slice(0, 40), slice(40, 80), slice(0, 80)):
        stats = WeightStats(log_w[:, cols].shape[1], 100, dtype=torch.float64)
        stats.add(log_w[:, cols])
        _, _, stderr, k = stats.finish()
        parts.append((*pooled(k, stderr, stats.fit), stats.fit))
    (k_a, s_a, fit_a), (k_b, s_b, fit_b), (k_whole, s_whole, _) = parts
    fit = TailFit.cat([fit_a, fit_b])
    k, stderr = pooled(torch.cat([k_a, k_b]), torch.cat([s_a, s_b]), fit)
    torch.testing.assert_close(k, k_whole, equal_nan=True)
    torch.testing.assert_close(stderr, s_whole, equal_nan=True)
    assert not torch.equal(torch.cat([k_a, k_b]), k_whole)  # each share alone pooled otherwise
