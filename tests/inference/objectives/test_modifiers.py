"""KL warm-up and free bits (:mod:`pyro_vae.inference.objectives.modifiers`): the per-dimension
KL, the warmed-up loss on fixed draws and in expectation, and free bits' constant below λ."""

import math

import pytest
import torch
from ppca import ppca

from pyro_vae import make_objective
from pyro_vae.inference.objectives.modifiers import kl_by_dimension
from tests.inference.objectives.by_hand import (
    B,
    K,
    Recorder,
    by_hand,
    closed_form_kl,
    encoder_and_decoder_params,
    exact,
    expected_recon,
    noise,
    small_vae,
)


def test_kl_by_dimension_is_the_closed_form(f64):
    vae, x = small_vae()
    kl, scale = kl_by_dimension(vae.model, vae.guide, x)
    exact(kl, closed_form_kl(vae, x))
    assert scale == 1.0


@pytest.mark.parametrize(
    ("unit", "epoch", "step", "weight"),
    [("epochs", 5, 999, 0.5), ("steps", 0.9, 3, 0.3), ("epochs", 12, 0, 1.0)],
    ids=["half-way-epochs", "steps", "done"],
)
@pytest.mark.parametrize(("name", "options"), [("elbo", {}), ("beta", {"beta": 4.0})], ids=["elbo", "beta"])
def test_kl_warmup_weighs_the_kl_on_fixed_draws(f64, name, options, unit, epoch, step, weight):
    """The schedule moves the bound's own KL weight b (1, or β for the β-VAE) to β_t · b:

    elbo: −loss = Σ_n [log w_n + (1 − β_t) KL_n], in expectation Σ_n [E_q log p(x_n|z) − β_t KL_n];
    beta: −loss = Σ_n [recon_n − β_t β KL_n], with the closed-form KL in both passes.
    """
    vae, x = small_vae()
    phi, theta = encoder_and_decoder_params(vae)
    objective = make_objective(name, kl_warmup=10, kl_warmup_unit=unit, **options)
    objective.set_progress(epoch=epoch, step=step)
    assert objective.kl_weight == pytest.approx(weight, rel=1e-12)
    guide = Recorder(vae.guide)
    loss = objective.differentiable_loss(vae.model, guide, x)
    grads = torch.autograd.grad(loss, phi + theta)
    # the base objective's draws; the last run is the modifier's KL pass
    t = by_hand(vae, x, noise(vae, x, guide.z(run=-2)))
    if name == "elbo":
        hand = (t["log_w"].mean(0) + (1 - weight) * t["kl"]).sum()
    else:
        hand = (t["recon"].mean(0) - weight * options["beta"] * t["kl"]).sum()
    exact(loss.detach(), -hand)
    for ours, theirs in zip(grads, torch.autograd.grad(-hand, phi + theta), strict=True):
        exact(ours, theirs)


def test_kl_warmup_loss_is_recon_minus_weighted_kl_in_expectation(f64):
    vae, x, _, post_loc, post_sd = ppca("cpu", shift=0.3, scale_factor=1.5)
    loc, sd = post_loc + 0.3, (1.5 * post_sd).expand_as(post_loc)
    recon = expected_recon(vae, x, loc, sd)
    kl = (0.5 * (loc**2 + sd**2 - 2 * sd.log() - 1)).sum(-1)
    objective = make_objective("elbo", particles=10, kl_warmup=10)
    objective.set_progress(epoch=5, step=0)  # β_t = 0.5
    R = 200
    losses = torch.tensor([objective.loss(vae.model, vae.guide, x) for _ in range(R)])
    mean, se = losses.mean(), losses.std() / math.sqrt(R)
    # measured 309.63 ± 0.38 against 309.86; the ELBO's 348.7 (β_t = 1) is 100 SE away
    assert abs(mean + (recon - 0.5 * kl).sum()) < 4 * se
    assert abs(mean + (recon - kl).sum()) > 20 * se


@pytest.mark.parametrize("where", ["above", "between", "below"])
@pytest.mark.parametrize(("name", "b"), [("meanfield", 1.0), ("beta", 4.0)])
def test_free_bits_replace_the_kl_below_lambda_by_a_constant(f64, name, b, where):
    """With a closed-form KL in the bound the modified loss is exactly
    −Σ_n recon_n + b · B Σ_j max(λ, KL̄_j), b the bound's own KL weight (β for the β-VAE)."""
    vae, x = small_vae()
    phi, theta = encoder_and_decoder_params(vae)
    kl_bar = closed_form_kl(vae, x).mean(0).detach()  # (Z,): the batch mean of each dimension's KL
    assert kl_bar.max() > 1.5 * kl_bar.min()  # two distinct dimensions, so "between" is between
    lam = {"above": 2 * kl_bar.max(), "between": kl_bar.mean(), "below": 0.5 * kl_bar.min()}[where]
    options = {"beta": b} if name == "beta" else {}
    objective = make_objective(name, particles=K, free_bits=float(lam), **options)
    guide = Recorder(vae.guide)
    loss = objective.differentiable_loss(vae.model, guide, x)
    grads = torch.autograd.grad(loss, phi + theta)

    t = by_hand(vae, x, noise(vae, x, guide.z(run=-2)))
    free = B * closed_form_kl(vae, x).mean(0).clamp(min=float(lam)).sum()
    hand = -t["recon"].mean(0).sum() + b * free
    exact(loss.detach(), hand)
    for ours, theirs in zip(grads, torch.autograd.grad(hand, phi + theta, retain_graph=True), strict=True):
        exact(ours, theirs)
    if where == "above":  # the KL term is the constant b·B·J·λ: no gradient pushes the KL anywhere
        exact(free, B * 2 * lam)
        recon_only = torch.autograd.grad(-t["recon"].mean(0).sum(), phi + theta)
        for ours, theirs in zip(grads, recon_only, strict=True):
            exact(ours, theirs)
    if where == "below":  # free bits do not bind: the bound itself
        exact(loss.detach(), -(t["recon"].mean(0) - b * t["kl"]).sum())
