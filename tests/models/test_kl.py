"""KL divergences: the closed form KL(full-covariance ‖ diagonal Gaussian) that pyro-vae registers
with torch, against Monte Carlo and torch's own MVN–MVN form, and :func:`site_kl`'s choice
between the closed form and the one-sample Monte-Carlo estimate."""

import math

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from pyro_vae.core.errors import NotDefined
from pyro_vae.models.guides import GUIDES
from pyro_vae.models.kl import POINT_MASS, is_point_mass, site_kl


def random_mvn(batch_shape, z_dim, cls=dist.MultivariateNormal):
    tril = torch.randn(*batch_shape, z_dim, z_dim).tril(-1)
    tril = tril + torch.diag_embed(torch.rand(*batch_shape, z_dim) + 0.5)
    return cls(torch.randn(*batch_shape, z_dim), scale_tril=tril)


def test_kl_matches_monte_carlo(f64):
    z_dim, batch, n = 3, 4, 20_000
    q = random_mvn((batch,), z_dim)
    p = dist.Normal(torch.randn(z_dim), torch.rand(z_dim) + 0.5).to_event(1)
    kl = kl_divergence(q, p)  # (B,)
    z = q.sample((n,))
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (n, B)
    mean, stderr = log_ratio.mean(0), log_ratio.std(0) / n**0.5
    assert ((kl - mean).abs() < 4 * stderr).all(), (kl - mean) / stderr


def test_kl_matches_torch_between_two_multivariate_normals(f64):
    z_dim, k, batch = 3, 2, 5
    q = random_mvn((k, batch), z_dim)
    loc, scale = torch.randn(batch, z_dim), torch.rand(batch, z_dim) + 0.5
    kl = kl_divergence(q, dist.Normal(loc, scale).to_event(1))
    as_mvn = dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    assert kl.shape == (k, batch)
    torch.testing.assert_close(kl, kl_divergence(q, as_mvn), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "q_batch, p_batch",
    [((5,), ()), ((2, 5), ()), ((5,), (2, 5)), ((2, 5), (5,))],
    ids=["B-vs-scalar", "KB-vs-scalar", "B-vs-KB", "KB-vs-B"],
)
@pytest.mark.parametrize("module", [dist, torch.distributions], ids=["pyro", "torch"])
def test_kl_dispatch_and_broadcasting(q_batch, p_batch, module, f64):
    z_dim = 3
    q = random_mvn(q_batch, z_dim, cls=module.MultivariateNormal)
    prior = module.Independent(module.Normal(torch.zeros(z_dim), torch.ones(z_dim)), 1)
    p = prior.expand(p_batch)
    kl = kl_divergence(q, p)
    assert kl.shape == torch.broadcast_shapes(q_batch, p_batch)
    # against N(0, I): ½ (tr Σ + |μ|² − Z − log|Σ|)
    expected = 0.5 * (q.covariance_matrix.diagonal(dim1=-2, dim2=-1).sum(-1) + q.loc.pow(2).sum(-1) - z_dim)
    expected = expected - q.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    torch.testing.assert_close(kl, expected.expand(kl.shape), rtol=1e-10, atol=1e-10)


def test_kl_is_not_claimed_for_other_pairs(f64):
    q = random_mvn((4,), 3)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, dist.Laplace(torch.zeros(3), torch.ones(3)).to_event(1))
    with pytest.raises(NotImplementedError):
        kl_divergence(random_mvn((), 3), dist.Normal(torch.zeros(1, 3), 1.0).to_event(2))
    with pytest.raises(ValueError, match="event shapes"):
        kl_divergence(q, dist.Normal(torch.zeros(2), 1.0).to_event(1))
    # the flow has no closed form: the meanfield objective falls back to Monte Carlo
    iaf = GUIDES.get("iaf")(3, flows=2, context=4, hidden=[16])
    with pytest.raises(NotImplementedError):
        kl_divergence(iaf(torch.randn(4, iaf.param_features)), dist.Normal(torch.zeros(3), 1.0).to_event(1))


def diagonal(loc, scale):
    return dist.Normal(loc, scale).to_event(1)


def test_site_kl_is_the_closed_form_where_one_is_registered_and_allowed(f64):
    q, p = diagonal(torch.randn(4, 3), torch.rand(4, 3) + 0.5), diagonal(torch.zeros(3), torch.ones(3))
    z = q.sample()
    kl, closed = site_kl(q, p, z, closed_form=True)
    # ½ Σ (σ² + μ² − 1 − log σ²) against N(0, I)
    loc, var = q.base_dist.loc, q.base_dist.scale**2
    assert closed and torch.allclose(kl, 0.5 * (var + loc**2 - 1 - var.log()).sum(-1), rtol=1e-12)


def test_site_kl_is_log_q_minus_log_p_at_the_draw_otherwise(f64):
    q = diagonal(torch.randn(4, 3), torch.rand(4, 3) + 0.5)
    student = dist.StudentT(3.0, torch.zeros(3), torch.ones(3)).to_event(1)  # no closed form registered
    z = q.sample()
    for p, closed_form in ((student, True), (diagonal(torch.zeros(3), torch.ones(3)), False)):
        kl, closed = site_kl(q, p, z, closed_form=closed_form)
        assert not closed and torch.equal(kl, q.log_prob(z) - p.log_prob(z))
    # densities the caller already has are used as they are
    given = (torch.full((4,), 2.0), torch.full((4,), 0.5))
    assert site_kl(q, student, z, closed_form=True, log_densities=given)[0].tolist() == [1.5] * 4


def test_site_kl_monte_carlo_is_unbiased_for_the_closed_form(f64):
    q = diagonal(torch.randn(3), torch.rand(3) + 0.5)
    p = diagonal(torch.randn(3), torch.rand(3) + 0.5)
    exact, _ = site_kl(q, p, q.sample(), closed_form=True)
    n = 20_000
    draws = site_kl(q, p, q.sample((n,)), closed_form=False)[0]  # (n,)
    # 4 standard errors: a false failure has probability 6e-5
    assert abs(draws.mean() - exact) < 4 * draws.std() / math.sqrt(n)


@pytest.mark.parametrize(
    "q",
    [
        dist.Delta(torch.zeros(4, 3), event_dim=1),
        dist.Delta(torch.zeros(4, 3)).to_event(1),
        dist.Delta(torch.zeros(4, 3)).to_event(1).mask(torch.tensor([True, False, True, True])),
        dist.TransformedDistribution(
            dist.Delta(torch.zeros(3), event_dim=1), [dist.transforms.ExpTransform()]
        ),
    ],
    ids=["delta", "reshaped", "masked", "transformed"],
)
def test_a_point_mass_has_no_kl(q):
    assert is_point_mass(q)
    with pytest.raises(NotDefined, match="q is a point mass") as info:
        site_kl(q, diagonal(torch.zeros(3), torch.ones(3)), torch.zeros(4, 3), closed_form=True)
    assert info.value.reason == POINT_MASS


def test_a_density_is_not_a_point_mass():
    assert not is_point_mass(diagonal(torch.zeros(3), torch.ones(3)))
    assert not is_point_mass(dist.Normal(0.0, 1.0))
