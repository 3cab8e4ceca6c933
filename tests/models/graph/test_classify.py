"""Kingma's classification term trains q(y|x) and is never part of a bound."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_vae.config.run_config import Config
from pyro_vae.core.errors import ConfigError
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.traces import local_terms
from pyro_vae.models.graph.program import GraphProgram
from pyro_vae.training.step import Loss

C, D, B = 4, 6, 8


def m2() -> GraphProgram:
    net = {"kind": "mlp", "hidden": [8]}
    config = Config.from_dict(
        {
            "model": {
                "data_dim": D,
                "variables": {
                    "y": {"family": "categorical", "data": "label", "classes": C},
                    "z": {"family": "normal", "size": 2},
                    "x": {"family": "bernoulli", "given": ["y", "z"], "data": "x", "network": net},
                },
            },
            "guide": {"y": {"given": ["x"], "network": net}, "z": {"given": ["x", "y"], "network": net}},
        }
    )
    return GraphProgram.from_config(config.model, config.guide)


@pytest.mark.parametrize("kind", ["elbo", "iwae"])
def test_the_term_adds_alpha_times_its_gradient_and_nothing_to_the_value(kind):
    p = m2()
    label = torch.tensor([2, -1, 0, -1, -1, 3, -1, 1])
    row = torch.cat([torch.bernoulli(torch.full((B, D), 0.5)), label.float().unsqueeze(1)], 1)
    params = list(p.parameters())
    results = {}
    for alpha in (1.0, 51.0):
        torch.manual_seed(0)
        loss = make_objective(kind, classify=alpha).differentiable_loss(p.model, p.guide, row)
        results[alpha] = (loss.detach(), torch.autograd.grad(loss, params))
    assert torch.equal(results[1.0][0], results[51.0][0])  # the reported value: the bound alone
    known = label >= 0
    log_q = torch.log_softmax(p.q_nets["y"](row[:, :D]), -1)[known, label[known]].sum()
    term = torch.autograd.grad(log_q, params, allow_unused=True)
    for (name, _), a, b, t in zip(p.named_parameters(), results[1.0][1], results[51.0][1], term, strict=True):
        expected = a - 50.0 * (t if t is not None else torch.zeros_like(a))  # the loss is −bound
        torch.testing.assert_close(b, expected, rtol=1e-4, atol=1e-4, msg=name)


def test_a_site_scaled_apart_is_refused_with_what_to_do_instead():
    """Pyro's semi-supervised example scales its classifier's site by 50: no per-point bound holds."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)
            with poutine.scale(scale=50.0):
                pyro.sample("y_aux", dist.Bernoulli(logits=x), obs=(x > 0).float())

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x / 2, 0.7))

    with pytest.raises(ConfigError, match=r"got \[1\.0, 50\.0\] \(poutine\.scale\): a term that only trains"):
        local_terms(model, guide, torch.randn(5), nesting=1)


@pytest.mark.parametrize("estimator", ["enumerate", "relaxed"])
def test_a_batchs_loss_is_the_sum_of_its_shares_for_a_semi_supervised_graph(estimator):
    """What several processes rest on (tests/core/test_distributed.py), for M2: with every draw
    keyed by a row's dataset index, a batch's loss is the sum of its shares' in any split."""
    p = m2()
    p.q["y"].estimator = estimator
    label = torch.tensor([2, -1, 0, -1, -1, 3, -1, 1])
    row = torch.cat([torch.bernoulli(torch.full((B, D), 0.5)), label.float().unsqueeze(1)], 1)
    loss = Loss(make_objective("elbo", classify=5.0), p.model, p.guide)
    index = torch.arange(B)
    whole = loss(row, index, 123)
    a, b = torch.tensor([5, 0, 3]), torch.tensor([1, 2, 4, 6, 7])
    torch.testing.assert_close(
        loss(row[a], index[a], 123) + loss(row[b], index[b], 123), whole, rtol=1e-5, atol=1e-4
    )
