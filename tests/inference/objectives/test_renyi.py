"""The Rényi bound and IWAE (:mod:`pyro_vae.inference.objectives.renyi`): loss and gradient
against the definition on the same draws, the per-point log-mean-exp, the limit α → 1, and
IWAE's rise with k towards log p(x)."""

import math

import pyro
import pytest
import torch
from ppca import ppca

from pyro_vae import make_objective
from tests.inference.objectives.by_hand import (
    K,
    Recorder,
    by_hand,
    cases,
    check_against_the_definition,
    lme,
    loss_and_grads,
    noise,
    small_vae,
    warmed,
)


@cases("renyi", "iwae")
def test_loss_and_gradient_equal_the_definition_by_hand(f64, name, options):
    check_against_the_definition(name, options)


def test_iwae_takes_the_log_mean_exp_of_each_data_points_weights(f64):
    vae, x = small_vae()
    guide = Recorder(vae.guide)
    loss = make_objective("iwae", particles=K).loss(vae.model, guide, x)
    log_w = by_hand(vae, x, noise(vae, x, guide.z()))["log_w"].detach()  # (K, B)
    per_point, over_batch = lme(log_w).sum().item(), lme(log_w.sum(1)).item()
    assert loss == pytest.approx(-per_point, rel=1e-10)
    # the two readings differ on these draws by far more than the tolerance above
    assert abs(per_point - over_batch) > 0.1


def test_renyi_tends_to_the_elbo_as_alpha_tends_to_one(f64):
    """(1/t) log mean_k e^{t log w_k} = mean_k log w_k + (t/2) var_k log w_k + O(t²), t = 1 − α:
    the second-order term is predicted from the draws, so the check is to 1 % of a 1e-4 effect."""
    vae, x = small_vae()
    params = list(vae.parameters())
    elbo = warmed("elbo", vae, x, particles=K)
    pyro.set_rng_seed(11)
    guide = Recorder(vae.guide)
    elbo_loss, elbo_grads = loss_and_grads(elbo, vae.model, guide, x, params)
    elbo_z = guide.z()
    log_w = by_hand(vae, x, noise(vae, x, elbo_z))["log_w"].detach()
    for alpha in (1 - 1e-4, 1 + 1e-4):
        renyi = warmed("renyi", vae, x, alpha=alpha, particles=K)
        pyro.set_rng_seed(11)
        loss, grads = loss_and_grads(renyi, vae.model, guide, x, params)
        assert torch.equal(guide.z().flatten(), elbo_z.flatten())  # the same draws
        t = 1 - alpha
        predicted = t / 2 * log_w.var(0, unbiased=False).sum()
        difference = elbo_loss - loss  # = value − ELBO
        assert abs(difference - predicted) < 1e-2 * abs(predicted)
        assert abs(difference) < 1e-3  # |t| · Σ var ≈ 1e-4 · O(1)
        for a, b in zip(grads, elbo_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def iwae_per_point(vae, x, k, *, calls=40, copies=10):
    """E[IWAE_k] averaged over the points of x: the mean and standard error of ``calls``
    values, each the objective's bound on ``copies`` independent copies of x, per point."""
    objective = make_objective("iwae", particles=k)
    batch = x.repeat(copies, 1)
    values = torch.tensor([-objective.loss(vae.model, vae.guide, batch) for _ in range(calls)])
    values = values / len(batch)
    return values.mean().item(), values.std().item() / math.sqrt(calls)


def test_iwae_rises_with_k_and_stays_below_log_px(f64):
    vae, x, log_px, _, _ = ppca("cpu", shift=0.3, scale_factor=1.5)  # a mismatched guide
    (m1, s1), (m5, s5), (m50, s50) = (iwae_per_point(vae, x, k) for k in (1, 5, 50))
    # measured: −8.73 ± 0.02, −7.259 ± 0.007, −7.005 ± 0.002 against log p(x) = −6.980 per point
    assert m5 - m1 > 4 * math.hypot(s1, s5)
    assert m50 - m5 > 4 * math.hypot(s5, s50)
    assert log_px.mean().item() - m50 > 4 * s50
