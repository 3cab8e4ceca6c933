"""Priors p(z): each log-density against an independent computation, shapes, gradients, devices, KL."""

import copy
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.distributions import kl_divergence

from pyro_vae import ConfigError, Spec
from pyro_vae.models.guides import DiagonalNormal
from pyro_vae.models.priors import PRIORS, Flow, LearnedNormal, MixtureOfGaussians, VampPrior

FLOWS = ["affine_autoregressive", "spline_coupling", "affine_coupling", "spline"]
LEARNED = ["learned_normal", "mog", "vamp", *(f"flow-{t}" for t in FLOWS)]
ALL = ["normal", *LEARNED]


class VampOwner(nn.Module):
    """The parts of a VAE a VampPrior sees: a linear encoder and the diagonal Gaussian guide."""

    def __init__(self, data_dim: int = 5, latent_dim: int = 3, components: int = 4):
        super().__init__()
        self.encoder = nn.Linear(data_dim, 2 * latent_dim)
        self.q = DiagonalNormal(latent_dim)
        self.prior = VampPrior(latent_dim, components=components)
        self.prior.attach(self.posterior, data_dim)

    def posterior(self, x: torch.Tensor) -> dist.Distribution:
        return self.q(self.encoder(x))


def build(name: str, latent_dim: int = 3) -> tuple[nn.Module, nn.Module]:
    """(prior, the module that owns all it depends on), for a name in ``ALL``."""
    if name == "vamp":
        owner = VampOwner(latent_dim=latent_dim)
        return owner.prior, owner
    if name.startswith("flow-"):
        prior = Flow(latent_dim, transform=name.removeprefix("flow-"), layers=3, hidden=[16])
        return prior, prior
    prior = PRIORS.get(name)(latent_dim)
    return prior, prior


@torch.no_grad()
def perturb(module: nn.Module, scale: float = 0.3) -> None:
    """Move every parameter off its initial value (zero-initialised layers would hide errors)."""
    for p in module.parameters():
        p.add_(scale * torch.randn_like(p))


def normal_log_density(z, loc, scale):
    """log N(z; loc, scale²) elementwise, written out."""
    return -((z - loc) ** 2) / (2 * scale**2) - torch.log(scale) - 0.5 * math.log(2 * math.pi)


def softplus(x):
    return torch.log1p(torch.exp(x))


# ---------------------------------------------------------------------------------------------
# Each log-density against an independent computation
# ---------------------------------------------------------------------------------------------


def test_learned_normal_starts_standard_and_matches_the_formula(f64):
    prior = LearnedNormal(3, min_scale=1e-3)
    torch.testing.assert_close(prior.scale(), torch.ones(3), rtol=0, atol=1e-12)
    perturb(prior, 0.5)
    z = torch.randn(4, 5, 3)
    sigma = softplus(prior.raw_scale) + 1e-3
    expected = normal_log_density(z, prior.loc, sigma).sum(-1)
    torch.testing.assert_close(prior().log_prob(z), expected, rtol=1e-12, atol=1e-12)


def test_mog_log_prob_is_a_log_sum_exp_over_components(f64):
    torch.manual_seed(3)
    expected_locs = torch.randn(4, 3)
    torch.manual_seed(3)
    prior = MixtureOfGaussians(3, components=4)
    # the means are seeded draws of the global RNG, the weights equal, the scales 1
    torch.testing.assert_close(prior.locs, expected_locs, rtol=0, atol=0)
    assert torch.equal(prior.logits, torch.zeros(4))
    torch.testing.assert_close(prior.scales(), torch.ones(4, 3), rtol=0, atol=1e-12)
    perturb(prior, 0.5)
    z = 2 * torch.randn(7, 3)
    log_weights = prior.logits - torch.log(torch.exp(prior.logits).sum())  # (K,)
    scales = softplus(prior.raw_scales) + prior.min_scale  # (K, Z)
    terms = log_weights + normal_log_density(z[:, None, :], prior.locs, scales).sum(-1)  # (N, K)
    top = terms.max(-1).values
    expected = top + torch.log(torch.exp(terms - top[:, None]).sum(-1))
    torch.testing.assert_close(prior().log_prob(z), expected, rtol=1e-12, atol=1e-12)


def test_vamp_log_prob_is_the_log_mean_of_guide_densities_at_the_pseudo_inputs(f64):
    owner = VampOwner(data_dim=5, latent_dim=2, components=4)
    perturb(owner, 0.5)
    z = torch.randn(6, 2)
    loc, raw_scale = owner.encoder(owner.prior.pseudo_inputs).chunk(2, dim=-1)  # (K, Z) each
    scale = softplus(raw_scale) + owner.q.min_scale
    # the densities themselves, not their logs: p(z) = (1/K) Σ_k Π_d N(z_d; μ_kd, σ_kd²)
    gauss = torch.exp(-((z[:, None] - loc) ** 2) / (2 * scale**2)) / (scale * math.sqrt(2 * math.pi))
    expected = torch.log(gauss.prod(-1).mean(-1))  # (N,)
    torch.testing.assert_close(owner.prior().log_prob(z), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("transform", FLOWS)
def test_flow_log_prob_is_the_change_of_variables(f64, transform):
    """log p(f(u)) = log N(u; 0, I) − log|det ∂f/∂u|, the Jacobian taken by autograd."""
    prior = Flow(3, transform=transform, layers=3, hidden=[12])
    perturb(prior, 0.4)
    flow = prior()

    def f(u):
        for t in flow.transforms:
            u = t(u)
        return u

    u = 1.5 * torch.randn(8, 3)  # some beyond the splines' bound ±3, where they are the identity
    z = f(u).detach().clone()  # a fresh tensor: log_prob must invert f, not read a cache
    jacobians = torch.stack([torch.autograd.functional.jacobian(f, ui) for ui in u])  # (8, Z, Z)
    log_det = torch.linalg.slogdet(jacobians)[1]
    # every coordinate is transformed, and (but for the elementwise spline) depends on every other
    # somewhere (a dead ReLU may hide a dependence at one point): the order alternates between layers
    inside = (u.abs() < 3).all(-1)
    assert (jacobians.diagonal(dim1=-2, dim2=-1)[inside] - 1).abs().min() > 1e-6
    if transform != "spline":
        assert (jacobians[inside].abs() > 1e-8).any(0).all()
    expected = dist.Normal(0.0, 1.0).log_prob(u).sum(-1) - log_det
    actual = prior().log_prob(z)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9)
    # and the flow is far from its base, so the check has something to find
    assert (actual - dist.Normal(0.0, 1.0).log_prob(z).sum(-1)).abs().max() > 0.1


@pytest.mark.parametrize("transform", FLOWS)
def test_flow_sample_log_prob_agrees_with_a_fresh_inversion(f64, transform):
    """The sample's cached path and a fresh inversion of f give the same density."""
    prior = Flow(3, transform=transform, layers=2, hidden=[12])
    perturb(prior, 0.4)
    d = prior()
    z = d.sample((20,))
    torch.testing.assert_close(d.log_prob(z), prior().log_prob(z.clone()), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("latent_dim", [4, 5])
@pytest.mark.parametrize("transform", ["spline_coupling", "affine_coupling"])
def test_default_coupling_flow_makes_every_coordinate_depend_on_every_other(transform, latent_dim):
    prior = Flow(latent_dim, transform=transform, hidden=[16])
    perturb(prior)
    flow = prior()

    def f(u):
        for t in flow.transforms:
            u = t(u)
        return u

    jacobians = torch.stack([torch.autograd.functional.jacobian(f, ui) for ui in torch.randn(6, latent_dim)])
    assert (jacobians.abs() > 1e-10).any(0).all()


def test_autoregressive_flow_scores_in_one_network_pass_per_layer():
    """Used in the density direction (MAF): log p(z) is cheap, a sample costs Z passes per layer."""
    prior = Flow(3, transform="affine_autoregressive", layers=2, hidden=[12])
    calls = []
    for layer in prior.transforms:
        layer.arn.register_forward_hook(lambda *_: calls.append(1))
    prior().log_prob(torch.randn(5, 3))
    assert len(calls) == 2
    calls.clear()
    prior().sample((5,))
    assert len(calls) == 2 * 3


def test_one_dimensional_spline_flow_is_a_normalised_density(f64):
    prior = Flow(1, transform="spline", layers=2)
    perturb(prior, 0.5)
    flow = prior()
    # beyond the bound ±3 every layer is the identity, so p is N(0, 1) there: its mass outside
    # ±3.5 is exactly 2 Φ(−3.5), and the grid need only cover [−3.5, 3.5]
    a, h = 3.5, 2e-5
    grid = torch.arange(-a, a + h / 2, h)[:, None]  # (G, 1)
    density = flow.log_prob(grid).exp()
    mass = torch.trapezoid(density, dx=h) + 2 * dist.Normal(0.0, 1.0).cdf(torch.tensor(-a))
    # On a panel [x, x + h] the trapezoid rule errs by ½ ∫ (t − x)(x + h − t) p″(t) dt, at most
    # h²/8 ∫ |p″| (p′ jumps at the knots count with their size), so in all by h²/8 times the
    # total variation of p′, estimated from slopes on a coarser grid and doubled for safety
    coarse = 50 * h
    slopes = density[::50].diff() / coarse
    tolerance = 2 * h**2 / 8 * slopes.diff().abs().sum()
    assert tolerance < 1e-6  # tight enough to catch a wrong Jacobian term
    assert abs(mass - 1.0) < tolerance
    # the spline is far from the identity, so normalisation is not inherited from N(0, 1)
    assert (density.log() - dist.Normal(0.0, 1.0).log_prob(grid[:, 0])).abs().max() > 1.0


def test_one_dimensional_spline_density_is_the_derivative_of_its_inverse_map(f64):
    """p(z) = N(f⁻¹(z)) · d f⁻¹/dz, the derivative by central differences."""
    prior = Flow(1, transform="spline", layers=2)
    perturb(prior, 0.5)
    flow = prior()

    def f_inv(z):
        for t in reversed(flow.transforms):
            z = t.inv(z)
        return z

    z = 2 * torch.randn(50, 1)
    step = 1e-6
    # central differences: truncation O(step²), rounding ~1e-16 / step = 1e-10; a knot within a
    # step of a point (probability ~1e-5) would add O(step)
    slope = (f_inv(z + step) - f_inv(z - step)) / (2 * step)
    expected = dist.Normal(0.0, 1.0).log_prob(f_inv(z)) + torch.log(slope)
    torch.testing.assert_close(prior().log_prob(z), expected[:, 0], rtol=1e-6, atol=1e-6)


def test_a_new_flow_distribution_does_not_reuse_a_stale_cache(f64):
    prior = Flow(3, transform="affine_autoregressive", layers=2, hidden=[12])
    z = torch.randn(5, 3)
    with torch.no_grad():
        before = prior().log_prob(z)
    perturb(prior)
    after = prior().log_prob(z)  # the same z: a cache from before would give the old value
    fresh = Flow(3, transform="affine_autoregressive", layers=2, hidden=[12])
    fresh.load_state_dict(prior.state_dict())
    torch.testing.assert_close(after, fresh().log_prob(z.clone()), rtol=1e-12, atol=1e-12)
    assert (after - before).abs().max() > 1e-3
    assert after.requires_grad  # not the no-grad result of the first call


# ---------------------------------------------------------------------------------------------
# Shapes, gradients, devices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_shapes(name):
    prior, _ = build(name)
    d = prior()
    assert d.batch_shape == () and d.event_shape == (3,)
    z = torch.randn(4, 5, 3)  # (particles, data, Z)
    lp = d.log_prob(z)
    assert lp.shape == (4, 5)
    assert d.log_prob(z[0]).shape == (5,)
    assert d.sample((6,)).shape == (6, 3)
    # as the model uses it: broadcast over the data plate, scored at particles of z
    torch.testing.assert_close(d.expand((5,)).log_prob(z), lp)
    with poutine.trace() as tr, pyro.plate("data", 5):
        pyro.sample("z", prior(), obs=z[0])
    torch.testing.assert_close(tr.trace.nodes["z"]["fn"].log_prob(z[0]), lp[0])


def test_normal_is_unchanged():
    prior = PRIORS.get("normal")(3)
    assert list(prior.parameters()) == []
    d = prior()
    assert torch.equal(d.base_dist.loc, torch.zeros(3)) and torch.equal(d.base_dist.scale, torch.ones(3))


@pytest.mark.parametrize("name", LEARNED)
def test_gradients_reach_every_parameter(name):
    prior, owner = build(name)
    perturb(owner)
    z = 7 * (torch.rand(2000, 3) - 0.5)  # spread over the splines' bins, [−3.5, 3.5]
    prior().log_prob(z).sum().backward()
    for pname, p in owner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    if name == "vamp":
        assert (prior.pseudo_inputs.grad.abs().sum(-1) > 0).all()  # every pseudo-input


@pytest.mark.parametrize("name", ALL)
def test_moves_to_the_device(name, device):
    prior, owner = build(name)
    owner.to(device)
    assert all(t.device.type == device.type for t in [*owner.parameters(), *owner.buffers()])
    d = prior()
    z = torch.randn(4, 5, 3, device=device)
    assert d.log_prob(z).device.type == device.type
    assert d.sample((2,)).device.type == device.type


# ---------------------------------------------------------------------------------------------
# The VampPrior's attachment to the guide
# ---------------------------------------------------------------------------------------------


def test_vamp_needs_attach():
    prior = VampPrior(2, components=3)
    with pytest.raises(RuntimeError, match=r"forward\(\) before attach"):
        prior()
    with pytest.raises(RuntimeError, match=r"initialize\(x\) before attach"):
        prior.initialize(torch.zeros(5, 4))


def test_vamp_holds_pseudo_inputs_and_not_the_guide():
    owner = VampOwner(data_dim=5, components=4)
    prior = owner.prior
    assert list(prior.children()) == []  # the posterior is a method of the owner, not a submodule
    assert set(prior.state_dict()) == {"pseudo_inputs"}
    assert [n for n, _ in owner.named_parameters()] == [
        "encoder.weight",
        "encoder.bias",
        "prior.pseudo_inputs",
    ]
    # before initialize: distinct, small
    u = prior.pseudo_inputs
    assert u.shape == (4, 5) and u.abs().max() < 0.1 and torch.unique(u, dim=0).shape[0] == 4


def test_vamp_state_dict_round_trip(f64):
    owner = VampOwner()
    perturb(owner)
    z = torch.randn(6, 3)
    torch.manual_seed(1)  # a fresh owner with other weights and pseudo-inputs
    fresh = VampOwner()
    assert not torch.allclose(fresh.prior().log_prob(z), owner.prior().log_prob(z))
    fresh.load_state_dict(owner.state_dict())
    torch.testing.assert_close(fresh.prior().log_prob(z), owner.prior().log_prob(z), rtol=0, atol=0)
    # the prior's own state dict loads into an attached prior of the same shape
    other = VampOwner()
    other.encoder.load_state_dict(owner.encoder.state_dict())
    other.prior.load_state_dict(owner.prior.state_dict())
    torch.testing.assert_close(other.prior().log_prob(z), owner.prior().log_prob(z), rtol=0, atol=0)


def test_a_deep_copy_of_the_owner_has_a_vamp_prior_of_its_own_guide():
    owner = VampOwner()
    twin = copy.deepcopy(owner)
    assert twin.prior.posterior.__self__ is twin  # the bound method follows the copy
    z = torch.randn(6, 3)
    before = owner.prior().log_prob(z)
    perturb(twin.encoder)
    assert not torch.allclose(twin.prior().log_prob(z), before)
    torch.testing.assert_close(owner.prior().log_prob(z), before, rtol=0, atol=0)


def test_vamp_initialize_picks_distinct_training_rows():
    owner = VampOwner(data_dim=5, components=4)
    x = torch.randn(50, 5)
    torch.manual_seed(7)
    owner.prior.initialize(x)
    rows = [int(torch.nonzero((x == u).all(-1))[0, 0]) for u in owner.prior.pseudo_inputs]
    assert len(set(rows)) == 4
    torch.manual_seed(7)  # the global RNG decides which rows
    assert torch.equal(torch.randperm(50)[:4], torch.tensor(rows))


def test_vamp_initialize_repeats_rows_when_there_are_fewer_than_components():
    owner = VampOwner(data_dim=5, components=7)
    x = torch.randn(3, 5)
    with pytest.warns(UserWarning, match="7 components but only 3 training points"):
        owner.prior.initialize(x)
    rows = [int(torch.nonzero((x == u).all(-1))[0, 0]) for u in owner.prior.pseudo_inputs]
    assert sorted(set(rows)) == [0, 1, 2]
    assert max(rows.count(r) for r in range(3)) == 3  # ⌈7/3⌉


def test_vamp_rejects_a_posterior_without_an_event_dimension():
    owner = VampOwner(latent_dim=3)
    owner.prior.attach(lambda u: owner.posterior(u).base_dist, 5)  # batch (K, Z), no event
    with pytest.raises(ValueError, match=r"batch shape \(4,\) and event shape \(3,\)"):
        owner.prior()


# ---------------------------------------------------------------------------------------------
# KL divergence from the guide, options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mog", "vamp", "flow-spline_coupling", "flow-affine_autoregressive"])
def test_kl_has_no_closed_form_for_mixtures_and_flows(name):
    prior, _ = build(name)
    q = DiagonalNormal(3)(torch.randn(4, 6))
    with pytest.raises(NotImplementedError):
        kl_divergence(q, prior())


def test_learned_normal_closed_form_kl_agrees_with_monte_carlo(f64):
    prior = LearnedNormal(3)
    perturb(prior, 0.5)
    p = prior()
    q = DiagonalNormal(3)(torch.randn(4, 6))  # batch (B,) = (4,)
    kl = kl_divergence(q, p)
    assert kl.shape == (4,) and (kl > 0.1).all()
    n = 20_000
    z = q.sample((n,))  # (n, B, Z)
    diff = q.log_prob(z) - p.log_prob(z)  # (n, B)
    standard_error = diff.std(0) / math.sqrt(n)
    # 5 standard errors: a false failure has probability < 1e-6 per data point
    assert ((diff.mean(0) - kl).abs() < 5 * standard_error).all()


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("learned_normal", {"min_scale": 0.01}),
        ("mog", {"components": 3}),
        ("vamp", {"components": 20}),
        ("flow", {"transform": "spline_coupling", "layers": 2, "hidden": [8, 8]}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_options_validate_and_build(kind, options):
    spec = Spec.parse({"kind": kind, **options}, "prior", "model.prior")
    assert {k: spec.params[k] for k in options} == options
    prior = PRIORS.get(spec.kind)(2, **spec.params)
    if kind == "vamp":
        assert prior.components == 20
    else:
        assert prior().event_shape == (2,)


def test_option_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"model\.prior\.min_scale = 1 is not allowed"):
        Spec.parse({"kind": "mog", "min_scale": 1}, "prior", "model.prior")
    with pytest.raises(ConfigError, match=r"model\.prior\.transform = \"planar\" is not allowed"):
        Spec.parse({"kind": "flow", "transform": "planar"}, "prior", "model.prior")
    with pytest.raises(
        ConfigError,
        match=r'model\.prior\.transform = "affine_coupling" is not allowed with latent_dim = 1.*'
        r'allowed: "affine_autoregressive", "spline"',
    ):
        Flow(1, transform="affine_coupling")
    with pytest.raises(ConfigError, match=r"model\.prior\.hidden = \[4\] is not allowed.*latent_dim = 6"):
        Flow(6, transform="affine_autoregressive", hidden=[4])
    with pytest.raises(ConfigError, match=r"model\.prior\.min_scale = 2\.0 is not allowed"):
        LearnedNormal(2, min_scale=2.0)
