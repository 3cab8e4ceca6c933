"""LocalBound, the base of pyro-vae's own objectives: the loss is −Σ_n value_n with the gradient
of −Σ_n surrogate_n, the same through loss, differentiable_loss and loss_and_grads (for SVI), and
a guide site without rsample is refused in one line."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.inference.objectives import LocalBound
from tests.inference.objectives.by_hand import (
    K,
    Recorder,
    by_hand,
    encoder_and_decoder_params,
    exact,
    noise,
    small_vae,
)


class ValueAndSurrogate(LocalBound):
    """A bound whose value and surrogate differ: the mean log w, and the mean of log w²."""

    def bound(self, terms):
        return terms.log_w.mean(0), (terms.log_w**2).mean(0)


def test_the_loss_is_the_value_and_its_gradient_the_surrogates(f64):
    vae, x = small_vae()
    phi, theta = encoder_and_decoder_params(vae)
    guide = Recorder(vae.guide)
    loss = ValueAndSurrogate(K).differentiable_loss(vae.model, guide, x)
    t = by_hand(vae, x, noise(vae, x, guide.z()))
    exact(loss.detach(), -t["log_w"].mean(0).sum())
    for ours, theirs in zip(
        torch.autograd.grad(loss, phi + theta),
        torch.autograd.grad(-(t["log_w"] ** 2).mean(0).sum(), phi + theta),
        strict=True,
    ):
        exact(ours, theirs)


def test_loss_and_loss_and_grads_report_the_same_number_for_svi(f64):
    vae, x = small_vae()
    objective = ValueAndSurrogate(K)
    objective.differentiable_loss(vae.model, vae.guide, x)  # finds the plate nesting with one draw
    pyro.set_rng_seed(4)
    value = objective.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(4)
    reported = objective.loss_and_grads(vae.model, vae.guide, x)
    pyro.set_rng_seed(4)
    loss = objective.differentiable_loss(vae.model, vae.guide, x)
    assert value == reported == loss.item()
    for p, g in zip(vae.parameters(), torch.autograd.grad(loss, list(vae.parameters())), strict=True):
        exact(p.grad, g)  # loss_and_grads left the gradient of the same draws


def test_a_guide_site_without_rsample_is_refused():
    def model(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(0.3))

    with pytest.raises(
        NotImplementedError,
        match="ValueAndSurrogate needs reparameterizable guide sites, but 'c' is Bernoulli",
    ):
        ValueAndSurrogate(2).differentiable_loss(model, guide, torch.zeros(3))
