"""Pareto-smoothed importance sampling's k̂ (pyro_vae/inference/estimators/pareto.py): the fit
against draws of a known generalized Pareto, a light tail, and a point-by-point transcription of
Zhang & Stephens' estimate as ``arviz`` writes it."""

import math

import numpy as np
import pytest
import torch

from pyro_vae.inference.estimators.pareto import gpd_fit, pareto_k, tail_length


def gpd_draws(xi: float, m: int, cols: int, seed: int = 0) -> torch.Tensor:
    """``(m, cols)`` draws of a generalized Pareto of shape ξ and scale 1, by inversion."""
    p = torch.rand(m, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return -torch.log1p(-p) if xi == 0 else torch.expm1(-xi * torch.log1p(-p)) / xi


def arviz_gpdfit(x: np.ndarray) -> tuple[float, float]:
    """arviz.stats._gpdfit for one sorted sample, line by line (the independent reference)."""
    n = len(x)
    m_est = 30 + int(n**0.5)
    b_ary = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1, dtype=float) - 0.5))
    b_ary /= 3 * x[int(n / 4 + 0.5) - 1]
    b_ary += 1 / x[-1]
    k_ary = np.log1p(-b_ary[:, None] * x).mean(axis=1)
    len_scale = n * (np.log(-(b_ary / k_ary)) - k_ary - 1)
    weights = 1 / np.exp(len_scale - len_scale[:, None]).sum(axis=1)
    real = weights >= 10 * np.finfo(float).eps
    weights, b_ary = weights[real] / weights[real].sum(), b_ary[real]
    b_post = np.sum(b_ary * weights)
    k_post = np.log1p(-b_post * x).mean()
    sigma = -k_post / b_post
    return (n * k_post + 10 * 0.5) / (n + 10), sigma


@pytest.mark.parametrize("xi", [-0.3, 0.0, 0.3, 0.5, 0.7, 1.0])
def test_the_fit_finds_the_shape_of_generalized_pareto_draws(xi):
    m, cols = 400, 25
    k, sigma = gpd_fit(gpd_draws(xi, m, cols).sort(0).values)
    # the estimate's sd is about (1 + ξ)/√M (the fit's asymptotic variance, Zhang & Stephens
    # 2009); the prior moves it toward 0.5 by at most |0.5 − ξ|·10/(M + 10)
    tol = 4 * (1 + xi) / math.sqrt(m) + abs(0.5 - xi) * 10 / (m + 10)
    assert (k - xi).abs().max() < tol, (k, tol)
    assert (k.mean() - xi).abs() < tol / math.sqrt(cols) + abs(0.5 - xi) * 10 / (m + 10)
    assert (sigma - 1).abs().max() < 8 * (1 + xi) / math.sqrt(m)


def test_light_tailed_weights_give_a_small_k():
    # log-normal weights of sd 0.5 have every moment; bounded (uniform) weights have ξ = −1
    gen = torch.Generator().manual_seed(1)
    k_total = 5000
    m = tail_length(k_total)
    lognormal = 0.5 * torch.randn(k_total, 20, generator=gen, dtype=torch.float64)
    uniform = torch.rand(k_total, 20, generator=gen, dtype=torch.float64).log()
    assert (pareto_k(lognormal.topk(m + 1, 0).values) < 0.3).all()
    assert (pareto_k(uniform.topk(m + 1, 0).values) < 0).all()


def test_the_vectorised_fit_is_zhang_and_stephens_for_each_point():
    x = torch.cat([gpd_draws(xi, 60, 4, seed=2) for xi in (-0.2, 0.4, 0.9)], 1).sort(0).values
    k, sigma = gpd_fit(x)
    for col in range(x.shape[1]):
        k_ref, sigma_ref = arviz_gpdfit(x[:, col].numpy())
        assert k[col].item() == pytest.approx(k_ref, rel=1e-10, abs=1e-12)
        assert sigma[col].item() == pytest.approx(sigma_ref, rel=1e-10)


def test_k_is_fitted_to_the_exceedances_of_the_largest_weights_in_any_order():
    gen = torch.Generator().manual_seed(3)
    log_w = 2 * torch.randn(100, 3, generator=gen, dtype=torch.float64) - 700  # far from 0: scaled first
    m = tail_length(100)
    top = log_w.topk(m + 1, 0).values
    w = (top - top[0]).exp()  # descending; the largest is 1
    expected, _ = gpd_fit((w[:m] - w[m]).flip(0))
    torch.testing.assert_close(pareto_k(top[torch.randperm(m + 1, generator=gen)]), expected)


def test_too_few_tail_weights_or_equal_weights_give_no_k():
    assert torch.isnan(pareto_k(torch.randn(5, 2))).all()  # 4 tail weights: no fit
    assert torch.isnan(pareto_k(torch.zeros(21, 2))).all()  # no tail above the threshold


@pytest.mark.parametrize(("samples", "m"), [(21, 5), (100, 20), (1000, 95), (5000, 213)])
def test_the_tail_is_the_smaller_of_a_fifth_and_three_root_k(samples, m):
    assert tail_length(samples) == m
