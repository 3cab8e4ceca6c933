"""The β-VAE bound (:mod:`pyro_vae.inference.objectives.beta`): E_q[log p(x|z)] − β KL, its
loss and gradient against the definition on the same draws."""

from pyro_vae import make_objective
from tests.inference.objectives.by_hand import (
    K,
    Recorder,
    by_hand,
    cases,
    check_against_the_definition,
    exact,
    noise,
    small_vae,
)


@cases("beta")
def test_loss_and_gradient_equal_the_definition_by_hand(f64, name, options):
    check_against_the_definition(name, options)


def test_beta_one_is_the_meanfield_elbo_on_the_same_draws(f64):
    vae, x = small_vae()
    guide = Recorder(vae.guide)
    loss = make_objective("beta", beta=1.0, particles=K).differentiable_loss(vae.model, guide, x)
    t = by_hand(vae, x, noise(vae, x, guide.z()))
    exact(loss.detach(), -(t["recon"].mean(0) - t["kl"]).sum())
