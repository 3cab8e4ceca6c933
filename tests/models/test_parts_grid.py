"""Every prior × guide × likelihood builds, trains a few steps, and survives a checkpoint.

Small parts (D = 6 values, 2 latent dimensions, 8 hidden units) keep the 90 combinations
fast; each one trains 3 Adam steps on the ELBO, each returning the loss recomputed at its
parameters and draws, and a VAE rebuilt from the saved checkpoint must give the same
importance-sampled log p(x) (same noise seed).
Alongside: where the KL between guide and prior has a closed form it is used and agrees
with its Monte-Carlo estimate; where it has none the metrics say "monte_carlo".
"""

import itertools

import pytest
import torch

from pyro_vae import VAE, Config, ModelConfig, Run, log_marginal_likelihood, make_objective
from pyro_vae.core import registry
from pyro_vae.inference.measure import elbo_parts
from pyro_vae.inference.traces import local_terms
from pyro_vae.training.checkpoint import save_checkpoint
from pyro_vae.training.run import CHECKPOINT
from pyro_vae.training.step import stepping, train_step

D, B = 6, 20
#: options that keep the parts small; every other option is the part's default
SMALL = {
    "mog": {"components": 3},
    "vamp": {"components": 3},
    "flow": {"hidden": [8]},
    "iaf": {"flows": 1, "hidden": [8]},
    "categorical": {"levels": 4},
}
# the point-mass delta guide has no density for the ELBO and log p(x) the grid checks:
# tests/inference/objectives/test_autoencoder.py covers it
NOT_IN_GRID = {"delta"}
# a guide of a graph's discrete variable (categorical) is no guide of the preset's continuous z:
# tests/models/graph and tests/inference/test_enumeration.py cover it
PRIORS, GUIDES, LIKELIHOODS = (
    {
        name: SMALL.get(name, {})
        for name, entry in family.entries().items()
        if name not in NOT_IN_GRID and not getattr(entry, "discrete", False)
    }
    for family in (registry.PRIORS, registry.GUIDES, registry.LIKELIHOODS)
)


def data_for(likelihood: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    u = torch.rand(B, D, generator=g)
    return {
        "bernoulli": (u > 0.5).float(),
        "continuous_bernoulli": u,
        "gaussian": torch.randn(B, D, generator=g),
        "laplace": torch.randn(B, D, generator=g),
        "beta": u.clamp(0.01, 0.99),
        "categorical": (4 * u).floor(),
    }[likelihood]


def build(prior, guide, likelihood) -> VAE:
    return VAE(
        ModelConfig(
            latent_dim=2,
            data_dim=D,
            prior={"kind": prior, **PRIORS[prior]},
            guide={"kind": guide, **GUIDES[guide]},
            likelihood={"kind": likelihood, **LIKELIHOODS[likelihood]},
            encoder={"kind": "mlp", "hidden": [8]},
            decoder={"kind": "mlp", "hidden": [8]},
        )
    )


def test_the_grid_holds_every_registered_part_with_its_data():
    assert {"normal", "mog", "vamp", "flow"} <= set(PRIORS) and {"iaf", "full_normal"} <= set(GUIDES)
    assert set(SMALL) <= {*PRIORS, *GUIDES, *LIKELIHOODS}
    for likelihood in LIKELIHOODS:
        assert data_for(likelihood).shape == (B, D)  # a new likelihood needs its data here


@pytest.mark.slow
@pytest.mark.parametrize(
    ("prior", "guide", "likelihood"),
    list(itertools.product(PRIORS, GUIDES, LIKELIHOODS)),
    ids=lambda name: name,
)
def test_builds_trains_and_round_trips_through_a_checkpoint(tmp_path, prior, guide, likelihood):
    x = data_for(likelihood)
    vae = build(prior, guide, likelihood)
    vae.likelihood.check_data(x, "the grid's data")
    vae.initialize(x)
    objective = make_objective("elbo")
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    model, guide = vae.programs(param_sites=False)
    start = [p.detach().clone() for p in vae.parameters()]
    losses, expected = [], []
    with stepping():
        for _ in range(3):
            # the loss at the step's parameters and draws, recomputed without a gradient step
            rng = torch.get_rng_state()
            with torch.no_grad():
                expected.append(objective.differentiable_loss(model, guide, x))
            torch.set_rng_state(rng)
            losses.append(train_step(objective, model, guide, optimizer, x))
    losses, expected = torch.stack(losses), torch.stack(expected)
    assert torch.isfinite(losses).all(), losses
    torch.testing.assert_close(losses, expected)
    assert any(not torch.equal(p, q) for p, q in zip(vae.parameters(), start, strict=True))

    config = Config(model=vae.config)
    save_checkpoint(
        tmp_path / CHECKPOINT,
        config=config.to_dict(),
        model=vae.state_dict(),
        training={"optimizer": optimizer.state_dict(), "epoch": 1, "step": 3, "seconds": 1.5},
        custom_model=False,
    )
    loaded = Run.load(tmp_path).vae
    before = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=4, seed=1).log_px
    after = log_marginal_likelihood(loaded.model, loaded.guide, x, num_samples=4, seed=1).log_px
    assert torch.isfinite(before).all()
    torch.testing.assert_close(after, before)


CLOSED_FORM = {("normal", "normal"), ("learned_normal", "normal"), ("normal", "full_normal"),
               ("learned_normal", "full_normal")}  # fmt: skip


@pytest.mark.parametrize(("prior", "guide"), list(itertools.product(PRIORS, GUIDES)), ids=lambda n: n)
def test_closed_form_kl_where_it_exists_and_agrees_with_monte_carlo(f64, prior, guide):
    vae = build(prior, guide, "gaussian")
    x = data_for("gaussian")
    with torch.no_grad():  # move the learnable priors away from N(0, I)
        for p in vae.prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    parts = elbo_parts(vae.model, vae.guide, x)
    expected = "analytic" if (prior, guide) in CLOSED_FORM else "monte_carlo"
    assert parts["kl_estimator"] == expected
    if expected == "analytic":
        # the Monte-Carlo KL, log q − log p at R draws z ~ q per point: each point's mean agrees
        # with the closed form within 5 standard errors (20 points × 4 pairs: a false alarm
        # has probability < 80 · 6e-7 by Bonferroni)
        R = 4000
        with torch.no_grad():
            t = local_terms(vae.model, vae.guide, x, particles=R, nesting=1)
        draws = t.log_q - t.log_prior  # (R, B)
        se = draws.std(0) / R**0.5
        assert ((draws.mean(0) - parts["kl"]).abs() < 5 * se).all()
