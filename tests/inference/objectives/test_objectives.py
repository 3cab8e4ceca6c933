"""Our objectives against Pyro's own: the same estimates, with no host reads in a step."""

import contextlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_vae import VAE, ModelConfig, make_objective
from pyro_vae.training.step import declared_params, stepping

PYRO = {"elbo": pyro.infer.Trace_ELBO, "meanfield": pyro.infer.TraceMeanField_ELBO}


def small_vae(device="cpu"):
    config = ModelConfig(latent_dim=3, data_dim=8, encoder={"kind": "mlp", "hidden": [16]})
    return VAE(config).to(device)


def loss_and_grads(objective, model, guide, x, params):
    loss = objective.differentiable_loss(model, guide, x)
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), grads


@pytest.mark.parametrize("kind", ["elbo", "meanfield"])
@pytest.mark.parametrize("particles", [1, 4])
def test_same_value_and_gradient_as_pyro(kind, particles, device):
    vae = small_vae(device)
    x = torch.rand(10, 8, device=device)
    params = list(vae.parameters())
    ours = make_objective(kind, particles=particles)
    theirs = PYRO[kind](num_particles=particles, vectorize_particles=particles > 1)
    pyro.set_rng_seed(3)
    ours_loss, ours_grads = loss_and_grads(ours, vae.model, vae.guide, x, params)
    pyro.set_rng_seed(3)  # the same draws of z
    their_loss, their_grads = loss_and_grads(theirs, vae.model, vae.guide, x, params)
    torch.testing.assert_close(ours_loss, torch.as_tensor(their_loss, device=device), rtol=1e-5, atol=1e-4)
    for a, b in zip(ours_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_score_function_terms_match_pyro_for_a_discrete_latent():
    """A non-reparameterizable guide site: the surrogate's gradient must equal Pyro's."""
    data = torch.tensor([0.0, 1.0, 1.0, 3.0])

    def model(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(2.0 * c, 1.0), obs=x)

    def guide(x):
        w = pyro.param("w", torch.tensor(0.3))
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(logits=w * x))

    with poutine.trace(param_only=True) as capture:
        guide(data)
    w = capture.trace.nodes["w"]["value"].unconstrained()
    pyro.set_rng_seed(5)
    ours = loss_and_grads(make_objective("elbo", particles=7), model, guide, data, [w])
    pyro.set_rng_seed(5)
    pyro_elbo = pyro.infer.Trace_ELBO(num_particles=7, vectorize_particles=True)
    theirs = loss_and_grads(pyro_elbo, model, guide, data, [w])
    torch.testing.assert_close(ours[0], torch.as_tensor(theirs[0]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[1][0], theirs[1][0], rtol=1e-6, atol=1e-6)
    assert ours[1][0].abs() > 0  # the score-function term carries the whole gradient


@contextlib.contextmanager
def no_host_reads(monkeypatch):
    """Make every way of reading a tensor back to the host raise."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a host read in the training step")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    yield
    monkeypatch.undo()


@pytest.mark.parametrize("kind", ["elbo", "meanfield"])
@pytest.mark.parametrize("particles", [1, 3])
def test_the_loss_and_its_gradient_read_nothing_back_to_the_host(kind, particles, monkeypatch):
    """What a step computes on the device stays there (the optimizer's own step counter is a
    host scalar by torch's design, so the check covers the loss and its backward pass)."""
    vae = small_vae()
    x = torch.rand(10, 8)
    ours = make_objective(kind, particles=particles)
    theirs = PYRO[kind](num_particles=particles, vectorize_particles=particles > 1)
    for objective in (ours, theirs):  # first calls may set things up (plate nesting)
        declared_params(vae.model, vae.guide, objective, x)
    model, guide = vae.programs(param_sites=False)
    with stepping():
        with no_host_reads(monkeypatch):
            loss = ours.differentiable_loss(model, guide, x)
            loss.backward()
        assert torch.isfinite(loss)
        # Pyro's own estimator does read (so this check can fail)
        with no_host_reads(monkeypatch), pytest.raises(AssertionError, match="host read"):
            theirs.differentiable_loss(vae.model, vae.guide, x).backward()
