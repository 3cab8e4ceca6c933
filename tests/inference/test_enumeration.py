"""Discrete latents summed exactly: the enumerated ELBO and weight against brute-force sums over
the classes, importance sampling against the exact log p(x) of a mixture of linear-Gaussian
models, and estimates that do not depend on the chunking."""

import math

import pyro.distributions as dist
import pytest
import torch

from pyro_vae.config.run_config import Config
from pyro_vae.core.numeric import softplus_inverse
from pyro_vae.inference.estimators.importance import importance_sampling
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.traces import local_terms
from pyro_vae.models.graph.program import GraphProgram

C, Z, D, B = 3, 2, 5, 6


def program(x_family: str = "bernoulli", estimator: str = "enumerate", hidden=(8,)) -> GraphProgram:
    """M2 without labels: y ~ Cat(1/C), z ~ N(0, I), x | y, z; q(y | x) q(z | x, y)."""
    net = {"kind": "mlp", "hidden": list(hidden), "activation": "tanh"}
    config = Config.from_dict(
        {
            "model": {
                "data_dim": D,
                "variables": {
                    "y": {"family": "categorical", "classes": C},
                    "z": {"family": "normal", "size": Z},
                    "x": {"family": x_family, "given": ["y", "z"], "data": "x", "network": net},
                },
            },
            "guide": {
                "y": {
                    "given": ["x"],
                    "network": net,
                    "family": {"kind": "categorical", "estimator": estimator},
                },
                "z": {"given": ["x", "y"], "network": net},
            },
        }
    )
    return GraphProgram.from_config(config.model, config.guide)


def normal(out: torch.Tensor) -> dist.Distribution:
    loc, raw = out.chunk(2, -1)
    return dist.Normal(loc, torch.nn.functional.softplus(raw) + 1e-4).to_event(1)


def test_the_enumerated_elbo_and_weight_are_the_sums_over_classes():
    p = program()
    x = torch.bernoulli(torch.full((B, D), 0.5))
    terms = local_terms(p.model, p.guide, x, particles=1, nesting=1)
    z = terms.latent_sites["z"]["value"]  # (C, 1, B, Z): one draw per class
    assert z.shape == (C, 1, B, Z)
    log_q_y = torch.log_softmax(p.q_nets["y"](x), -1)  # (B, C)
    elbo, weights = 0.0, []
    for c in range(C):
        y = torch.nn.functional.one_hot(torch.tensor(c), C).float().expand(B, C)
        zc = z[c, 0]
        log_joint = (
            math.log(1 / C)
            + dist.Normal(0.0, 1.0).log_prob(zc).sum(-1)
            + dist.Bernoulli(logits=p.nets["x"](torch.cat([y, zc], -1))).log_prob(x).sum(-1)
        )
        log_w = log_joint - normal(p.q_nets["z"](torch.cat([x, y], -1))).log_prob(zc)
        elbo = elbo + log_q_y[:, c].exp() * (log_w - log_q_y[:, c])
        weights.append(log_w)
    torch.testing.assert_close(terms.elbo[0], elbo, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.log_w[0], torch.stack(weights).logsumexp(0), rtol=1e-5, atol=1e-5)


def test_elbo_and_meanfield_sum_the_classes_and_their_gradients_reach_q_y():
    p = program()
    x = torch.bernoulli(torch.full((B, D), 0.5))
    for kind in ("elbo", "meanfield"):
        objective = make_objective(kind)
        torch.manual_seed(0)
        loss = objective.differentiable_loss(p.model, p.guide, x)
        torch.manual_seed(0)
        terms = local_terms(p.model, p.guide, x, particles=1, nesting=1, analytic_kl=kind == "meanfield")
        expected = -(terms.recon - terms.kl_term).sum() if kind == "meanfield" else -terms.elbo.sum()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
        p.zero_grad()
        loss.backward()
        assert p.q_nets["y"][0].weight.grad.abs().sum() > 0  # exact in y: no score function needed


def linear_gaussian_mixture() -> tuple[GraphProgram, torch.Tensor, torch.Tensor]:
    """x | y, z ~ N(W z + m_y, diag σ_y²): the network's weights set by hand. Returns the program,
    points x and their exact log p(x) = log Σ_y (1/C) N(x; m_y, W Wᵀ + diag σ_y²)."""
    torch.manual_seed(1)
    p = program("normal", hidden=())
    means, w, raw = 2 * torch.randn(D, C), 0.7 * torch.randn(D, Z), torch.randn(D).abs()
    sigma = (torch.nn.functional.softplus(raw) + 1e-4).unsqueeze(1).expand(D, C)  # (D, C), shared
    with torch.no_grad():
        linear = p.nets["x"][0]
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[:D, :C] = means  # loc = m_y + W z (the one-hot of y picks its mean)
        linear.weight[:D, C:] = w
        linear.bias[D:] = raw
        # the guide: q(z | x, y) centred on the exact posterior mean S Wᵀ Σ⁻¹ (x − m_y), its
        # scale 1.5 times the posterior's marginal ones (a proposal with heavier tails)
        s = torch.linalg.inv(torch.eye(Z) + w.T @ torch.diag(sigma[:, 0] ** -2) @ w)
        gain = s @ w.T @ torch.diag(sigma[:, 0] ** -2)  # (Z, D)
        q = p.q_nets["z"][0]
        q.weight.zero_()
        q.bias.zero_()
        q.weight[:Z, :D] = gain
        q.weight[:Z, D:] = -gain @ means
        q.bias[Z:] = softplus_inverse(1.5 * s.diagonal().sqrt() - 1e-4)
    y = torch.randint(0, C, (40,))
    x = means.T[y] + torch.randn(40, Z) @ w.T + sigma.T[y] * torch.randn(40, D)
    exact = torch.stack(
        [
            dist.MultivariateNormal(means[:, c], w @ w.T + torch.diag(sigma[:, c] ** 2)).log_prob(x)
            for c in range(C)
        ]
    ).logsumexp(0) - math.log(C)
    return p, x, exact


def test_importance_sampling_sums_the_classes_to_the_exact_log_px():
    p, x, exact = linear_gaussian_mixture()
    ml = importance_sampling(p.model, p.guide, x, seed=0, samples=2000, compile=False)
    trusted = torch.isfinite(ml.mc_stderr)
    assert trusted.sum() >= 30
    error = (ml.log_px - exact)[trusted]
    stderr = ml.mc_stderr[trusted]
    # every trusted point within 5 of its own standard errors, and the mean within 4 of its
    assert (error.abs() <= 5 * stderr + 1e-3).all(), (error, stderr)
    assert error.mean().abs() <= 4 * stderr.pow(2).sum().sqrt() / len(stderr) + 1e-3


@pytest.mark.parametrize("estimator", ["enumerate", "score", "relaxed"])
def test_a_discrete_latent_gives_the_same_estimate_at_every_chunk_size(estimator):
    """The same draws whatever the chunking, to floating point (in float64; only the order of the
    sums changes): the classes a score or relaxed guide draws are keyed by (seed, point, sample)."""
    p = program(estimator=estimator).double()
    x = torch.bernoulli(torch.full((B, D), 0.5, dtype=torch.float64))
    estimates = [
        importance_sampling(
            p.model, p.guide, x, seed=3, samples=60, chunk_size=chunk, batch_size=batch, compile=False
        )
        for chunk, batch in ((60, 6), (7, 6), (13, 6))
    ]
    for other in estimates[1:]:
        torch.testing.assert_close(other.log_px, estimates[0].log_px, rtol=0, atol=1e-10)
    # a sampled class is drawn from the keyed noise, not torch's stream: another seed differs
    again = importance_sampling(p.model, p.guide, x, seed=4, samples=60, compile=False)
    assert (again.log_px - estimates[0].log_px).abs().max() > 1e-3
