"""pyro-vae's own distributions against torch's and Pyro's: the mixture's matrix-form density,
the continuous Bernoulli's normaliser and mean from the logits, the broadcasting flow."""

import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch

from pyro_vae.models.distributions import (
    BroadcastingFlow,
    ContinuousBernoulliLogits,
    DiagonalNormalMixture,
    is_diagonal_normal,
)


def test_is_diagonal_normal_means_a_vector_of_independent_normals():
    assert is_diagonal_normal(dist.Normal(torch.zeros(4, 3), 1.0).to_event(1))
    assert not is_diagonal_normal(dist.Normal(torch.zeros(3), 1.0).to_event(1))  # no batch dimension
    assert not is_diagonal_normal(dist.Normal(torch.zeros(4, 3, 2), 1.0).to_event(2))
    assert not is_diagonal_normal(dist.Laplace(torch.zeros(4, 3), 1.0).to_event(1))


@pytest.mark.parametrize("eta", [-300.0, -40.0, -2.0, -1e-5, 0.0, 3e-3, 0.05, 1.5, 25.0], ids=str)
def test_continuous_bernoulli_normaliser_and_mean_against_the_integrals(f64, eta):
    """p(x) = e^{xη} / ∫₀¹ e^{uη} du and E[x] = ∫₀¹ x p(x) dx by Simpson's rule, on a grid
    fine against the density's width 1/|η| (h = 2.5e-5: error ~(h|η|)⁴ < 1e-8)."""
    n = 40_000
    x = torch.linspace(0, 1, n + 1)
    weights = torch.ones(n + 1)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    d = ContinuousBernoulliLogits(logits=torch.full((n + 1,), eta))
    density = d.log_prob(x).exp()
    integral = (weights * density).sum() / (3 * n)
    mean = (weights * x * density).sum() / (3 * n)
    assert integral.item() == pytest.approx(1.0, abs=1e-6)
    assert d.mean[0].item() == pytest.approx(mean.item(), abs=1e-6)


def test_continuous_bernoulli_agrees_with_torch_where_torch_is_accurate(f64):
    eta = torch.tensor([-3.0, -0.4, 0.7, 5.0])
    x = torch.tensor([0.0, 0.25, 0.9, 1.0])
    ours, torchs = ContinuousBernoulliLogits(logits=eta), torch.distributions.ContinuousBernoulli(logits=eta)
    torch.testing.assert_close(ours.log_prob(x), torchs.log_prob(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours.mean, torchs.mean, rtol=1e-10, atol=1e-10)


def test_the_broadcasting_flow_scores_a_value_with_fewer_batch_dimensions(f64):
    """A value (Z,) against a flow conditioned on h of shape (B, C): each row's density is the
    one of a flow conditioned on that row of h alone."""
    transform = T.conditional_affine_autoregressive(3, context_dim=2, hidden_dims=[8])
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.5 * torch.randn_like(p))
    h, z = torch.randn(4, 2), torch.randn(3)
    base = dist.Normal(torch.zeros(4, 3), 1.0).to_event(1)
    got = BroadcastingFlow(base, [transform.condition(h)]).log_prob(z)  # (B,)
    rows = [
        dist.TransformedDistribution(dist.Normal(torch.zeros(3), 1.0).to_event(1), [transform.condition(hi)])
        for hi in h
    ]
    expected = torch.stack([row.log_prob(z) for row in rows])
    assert got.shape == (4,) and (expected - expected[0]).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_the_vamp_mixtures_matrix_form_is_mixture_same_family(dtype):
    """``DiagonalNormalMixture.log_prob`` (two matrix products, formed in float64) against
    Pyro's ``MixtureSameFamily`` on a (K, B, Z) table, value and gradient, with scales down to
    0.005 and points at the components' means, where the expanded form cancels most."""
    g = torch.Generator().manual_seed(3)
    K, Z = 50, 8
    loc = torch.randn(K, Z, generator=g, dtype=dtype).requires_grad_()
    scale = (0.005 + torch.rand(K, Z, generator=g, dtype=dtype)).requires_grad_()
    logits = torch.zeros(K, dtype=dtype)
    z = torch.cat([loc.detach()[:5] + 1e-3, 2 * torch.randn(3, 7, Z, generator=g, dtype=dtype).flatten(0, 1)])
    z = z.reshape(-1, 2, Z).requires_grad_()  # (13, 2, Z): leading dims pass through
    parts = dist.Normal(loc, scale).to_event(1)
    ours = DiagonalNormalMixture(dist.Categorical(logits=logits), parts).log_prob(z)
    theirs = dist.MixtureSameFamily(dist.Categorical(logits=logits), parts).log_prob(z)
    assert ours.shape == theirs.shape == (13, 2) and ours.dtype == dtype
    # float32: the reference itself rounds each of Z squared terms up to ~(1e-3/0.005)² · 6e-8
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    for a, b in zip(
        torch.autograd.grad(ours.sum(), (loc, scale, z)),
        torch.autograd.grad(theirs.sum(), (loc, scale, z)),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=100 * tol, atol=100 * tol)
