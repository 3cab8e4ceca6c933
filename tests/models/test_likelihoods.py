"""Likelihoods p(x|z): densities against their formulas, means, the parameter-major layout,
data checks, and building each one from a config."""

import math

import pyro
import pytest
import torch
import torch.nn.functional as F

from pyro_vae import VAE, ConfigError, DataError, ModelConfig
from pyro_vae.config.run_config import Spec
from pyro_vae.models.likelihoods import LIKELIHOODS

D, B, K = 5, 4, 3  # values per point, data points, particles

KINDS = ["bernoulli", "gaussian", "laplace", "continuous_bernoulli", "beta", "categorical"]


def make(kind: str, data_dim: int = D, **options):
    """A likelihood built the way a config builds it: options validated, defaults filled in."""
    spec = Spec.parse({"kind": kind, **options}, "likelihood", "model.likelihood")
    return LIKELIHOODS.get(kind)(data_dim, **spec.params)


def valid_data(kind: str, shape=(B, D), levels: int = 7) -> torch.Tensor:
    """Data inside each likelihood's support."""
    if kind == "bernoulli":
        return torch.randint(0, 2, shape).to(torch.get_default_dtype())
    if kind == "categorical":
        return torch.randint(0, levels, shape).to(torch.get_default_dtype())
    if kind in ("beta", "continuous_bernoulli"):
        return 0.01 + 0.98 * torch.rand(shape)
    return 2 * torch.randn(shape)


def reference_log_prob(kind: str, lik, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|out) written from each density's formula, summed over the D values: (K, B)."""
    if kind == "bernoulli":
        return (x * out - F.softplus(out)).sum(-1)
    if kind == "gaussian":
        s = lik.scale()
        return (-0.5 * torch.log(2 * math.pi * s**2) - (x - out) ** 2 / (2 * s**2)).sum(-1)
    if kind == "laplace":
        b = lik.scale()
        return (-torch.log(2 * b) - (x - out).abs() / b).sum(-1)
    if kind == "continuous_bernoulli":
        # λ^x (1 − λ)^(1−x) C(λ), C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) (Loaiza-Ganem & Cunningham, eq. 7)
        lam = torch.sigmoid(lik.max_logit * torch.tanh(out / lik.max_logit))  # the bounded logit
        log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
        return (x * torch.log(lam) + (1 - x) * torch.log1p(-lam) + log_c).sum(-1)
    if kind == "beta":
        alpha = F.softplus(out[..., :D]) + lik.min_concentration
        beta = F.softplus(out[..., D:]) + lik.min_concentration
        log_norm = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
        return ((alpha - 1) * torch.log(x) + (beta - 1) * torch.log1p(-x) - log_norm).sum(-1)
    if kind == "categorical":
        total = torch.zeros(out.shape[:-1])
        for d in range(D):
            logits_d = out[..., d::D]  # level k of value d sits at k·D + d
            log_probs = torch.log_softmax(logits_d, -1)  # (K, B, levels)
            total += log_probs.gather(-1, x[..., d].long().expand(out.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return total
    raise AssertionError(kind)


OPTIONS = {
    "gaussian": [{"scale": "learned"}, {"scale": 0.3}],
    "laplace": [{"scale": "learned"}, {"scale": 0.3}],
    "beta": [{}, {"min_concentration": 0.5}],
    "categorical": [{"levels": 7}],
}


def case(kind: str, options: dict, *rest):
    """A parameter set named by the kind and its option values: ``gaussian-0.3``."""
    return pytest.param(kind, options, *rest, id="-".join([kind, *map(str, options.values())]))


CASES = [case(kind, options) for kind in KINDS for options in OPTIONS.get(kind, [{}])]


# ---------------------------------------------------------------------------------------------
# Densities
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "options"), CASES)
def test_log_prob_matches_the_formula_and_particles_pass_through(f64, kind, options):
    lik = make(kind, **options)
    if hasattr(lik, "raw_scale"):
        with torch.no_grad():
            lik.raw_scale.normal_()  # a different scale in each dimension
    out = 2 * torch.randn(K, B, lik.param_features)
    x = valid_data(kind, levels=options.get("levels", 7))
    p = lik(out)
    assert p.event_shape == (D,) and p.batch_shape == (K, B)
    log_prob = p.log_prob(x)
    assert log_prob.shape == (K, B)
    torch.testing.assert_close(log_prob, reference_log_prob(kind, lik, out, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_param_features_are_a_multiple_of_the_data_dim(kind):
    lik = make(kind, **(OPTIONS.get(kind, [{}])[0]))
    per_value = {"beta": 2, "categorical": 7}.get(kind, 1)
    assert lik.param_features == per_value * D


def cb_log_prob_exponential_family(eta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log CB(x; η) as an exponential family: e^{xη} / ∫₀¹ e^{uη} du = e^{xη} η / (e^η − 1)."""
    return x * eta - torch.log(torch.expm1(eta) / eta)


EXTREME_LOGITS = [-1000.0, -50.0, -20.0, 17.0, 30.0, 500.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_continuous_bernoulli_is_accurate_at_extreme_logits(dtype):
    # torch's own normaliser clamps λ to [ε, 1 − ε]: at η = −50 it is off by log(50/16) = 1.1 nats
    # in float32 and by 0.33 in float64, per value.
    eta = torch.tensor(EXTREME_LOGITS, dtype=torch.float64)
    x = torch.tensor([0.0, 0.01, 0.3, 0.5, 0.99, 1.0], dtype=torch.float64)
    expected = cb_log_prob_exponential_family(eta[:, None], x)  # (6, 6)
    free = make("continuous_bernoulli", len(x), max_logit=None)
    got = free(eta[:, None].to(dtype)).base_dist.log_prob(x.to(dtype))
    # float32 keeps x·η to a relative 6e-8: 3e-5 absolute at |xη| = 500
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("eta", [0.0, 1e-6, -3e-3, 4.1e-3, 0.3, -5.0, -50.0, 300.0], ids=str)
def test_continuous_bernoulli_integrates_to_one(f64, eta):
    """∫₀¹ p(x) dx = 1 by Simpson's rule, on a grid fine against the width 1/|η| of the density."""
    n = 20_000  # even number of intervals; h = 5e-5, 1/|η| ≥ 3.3e-3: Simpson's error is ~(h|η|)⁴ ≈ 1e-7
    x = torch.linspace(0, 1, n + 1)
    free = make("continuous_bernoulli", n + 1, max_logit=None)
    density = free(torch.full((n + 1,), eta)).base_dist.log_prob(x).exp()
    weights = torch.ones(n + 1)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    integral = (weights * density).sum() / (3 * n)
    assert abs(integral.item() - 1) < 1e-6


def test_continuous_bernoulli_logits_are_bounded_by_max_logit(f64):
    """η = m tanh(out / m): near the identity for |out| ≪ m, never beyond m, so the density
    of a value is at most CB(0; −m) = m / (1 − e^{−m}) (about log m nats)."""
    m = 10.0
    lik = make("continuous_bernoulli", 5, max_logit=m)
    out = torch.tensor([-1e4, -30.0, -0.1, 0.05, 1e4])
    eta = lik(out).base_dist.logits
    assert (eta.abs() < m).all() or torch.isclose(eta.abs().max(), torch.tensor(m))
    torch.testing.assert_close(eta[2:4], out[2:4], rtol=1e-4, atol=0)  # tanh(u) = u − u³/3 …
    worst = lik(out).base_dist.log_prob(torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
    assert worst.max() <= math.log(m / -math.expm1(-m)) + 1e-12
    # a pixel of ink where the decoder is as sure as it can be of 0 costs about m nats, not |out|
    assert lik(out[:1]).base_dist.log_prob(torch.tensor([1.0])) > -m


# ---------------------------------------------------------------------------------------------
# Means
# ---------------------------------------------------------------------------------------------


def assert_monte_carlo_mean(p, mean: torch.Tensor, n: int = 100_000):
    """The mean of n draws lies within 5 standard errors of ``mean``, value by value.

    The sample mean of n draws is about normal with standard error sd/√n (sd estimated from
    the same draws); 5 SE leaves a chance of 6e-7 per value of failing by bad luck.
    """
    draws = p.sample((n,)).double()  # (n, ...)
    se = draws.std(0) / math.sqrt(n)
    err = (draws.mean(0) - mean.double()).abs()
    assert (err <= 5 * se).all(), (err / se).max()


@pytest.mark.parametrize(
    ("kind", "options"),
    [c for c in CASES if c.values[0] in ("continuous_bernoulli", "beta", "categorical", "laplace")],
)
def test_mean_is_the_mean_of_samples(kind, options):
    lik = make(kind, **options)
    out = torch.randn(2, lik.param_features)
    assert_monte_carlo_mean(lik(out), lik.mean(out))


def test_continuous_bernoulli_mean_closed_form(f64):
    # E[x] = λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ)) (Loaiza-Ganem & Cunningham, eq. 8) away from λ = ½
    # (in λ the formula loses digits once 1 − 2λ nears ±1; extreme logits are tested below)
    eta = torch.tensor([-8.0, -3.0, -0.2, -0.05, 0.02, 0.5, 8.0])
    lam = torch.sigmoid(eta)
    expected = lam / (2 * lam - 1) + 1 / (2 * torch.atanh(1 - 2 * lam))
    lik = make("continuous_bernoulli", len(eta), max_logit=None)
    torch.testing.assert_close(lik.mean(eta), expected, rtol=1e-10, atol=1e-10)
    # at λ = ½ the density is uniform; near it the mean is ½ + η/12 − η³/720 + …, and the
    # η³ term is at most 1.4e-12 here
    near = torch.tensor([0.0, 1e-6, -1e-3])
    got = make("continuous_bernoulli", 3, max_logit=None).mean(near)
    torch.testing.assert_close(got, 0.5 + near / 12, rtol=0, atol=2e-12)


def test_continuous_bernoulli_mean_at_extreme_logits():
    # float32 logits: E[x] = 1/(1 − e^{−η}) − 1/η in float64 is ≈ −1/η for η ≪ 0 and 1 − 1/η for η ≫ 0
    eta = torch.tensor(EXTREME_LOGITS)
    expected = -1 / torch.expm1(-eta.double()) - 1 / eta.double()
    got = make("continuous_bernoulli", len(eta), max_logit=None).mean(eta)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian", "laplace"])
def test_mean_closed_form(kind):
    lik = make(kind)
    out = torch.randn(K, B, D)
    expected = torch.sigmoid(out) if kind == "bernoulli" else out
    torch.testing.assert_close(lik.mean(out), expected)


# ---------------------------------------------------------------------------------------------
# The parameter-major layout
# ---------------------------------------------------------------------------------------------


def test_beta_first_half_is_alpha():
    lik = make("beta")
    out = torch.cat([torch.full((D,), 5.0), torch.full((D,), -5.0)])  # α ≈ 5, β ≈ 0.007
    alpha, _ = lik.concentrations(out)
    torch.testing.assert_close(alpha, torch.full((D,), F.softplus(torch.tensor(5.0)).item() + 1e-3))
    assert (lik.mean(out) > 0.99).all()
    assert (lik.mean(out.flip(-1)) < 0.01).all()


def test_categorical_logit_of_level_k_for_value_d_is_at_k_times_d_plus_d():
    levels = 7
    lik = make("categorical", levels=levels)
    target = torch.tensor([3, 0, 6, 1, 5])  # (D,)
    out = torch.full((levels * D,), -30.0)
    out[target * D + torch.arange(D)] = 30.0
    torch.testing.assert_close(lik.mean(out), target.float(), rtol=0, atol=1e-6)
    assert lik(out).log_prob(target.float()).item() > -1e-6
    # the decoder's output read as (levels, D), as a convolutional decoder's channels are
    assert torch.equal(out.unflatten(-1, (levels, D)).argmax(0), target)


# ---------------------------------------------------------------------------------------------
# Data checks
# ---------------------------------------------------------------------------------------------

NAME = "the train data of 'mine'"


@pytest.mark.parametrize(
    ("kind", "options", "data"),
    [
        case("bernoulli", {}, [0.0, 1.0]),
        case("bernoulli", {"relaxed": True}, [0.0, 0.5, 1.0]),
        case("continuous_bernoulli", {}, [0.0, 0.25, 1.0]),
        case("beta", {}, [1e-6, 0.5, 1 - 1e-6]),
        case("categorical", {}, [0.0, 17.0, 255.0]),
        case("categorical", {"levels": 2}, [0.0, 1.0]),
        case("gaussian", {}, [-1e6, 0.0, 3.5]),
        case("laplace", {}, [-1e6, 0.0, 3.5]),
    ],
)
def test_check_data_accepts_data_in_the_support(kind, options, data):
    make(kind, 1, **options).check_data(torch.tensor(data, dtype=torch.float32)[:, None], NAME)


@pytest.mark.parametrize(
    ("kind", "options", "data", "message"),
    [
        pytest.param(
            "bernoulli",
            {},
            [0.0, 0.5, 1.0],
            r"bernoulli likelihood needs binary data \(0 or 1\), but the train data of 'mine' has values "
            r"in \[0, 1\] that are not 0 or 1",
            id="bernoulli",
        ),
        pytest.param(
            "bernoulli",
            {"relaxed": True},
            [0.0, 2.0],
            r"relaxed bernoulli likelihood needs data in \[0, 1\], but the train data of 'mine' "
            r"spans \[0, 2\]",
            id="bernoulli-relaxed",
        ),
        pytest.param(
            "continuous_bernoulli",
            {},
            [-0.5, 0.5],
            r"continuous_bernoulli likelihood needs data in \[0, 1\], but the train data of 'mine' spans "
            r"\[-0.5, 0.5\]$",
            id="continuous_bernoulli-negative",
        ),
        pytest.param(
            "continuous_bernoulli",
            {},
            [0.0, 255.0],
            r"spans \[0, 255\]; set data\.divide_by to scale it into \[0, 1\] \(255 for 8-bit images\)",
            id="continuous_bernoulli-8bit",
        ),
        pytest.param(
            "beta",
            {},
            [0.0, 0.5],
            r"beta likelihood needs data strictly inside \(0, 1\), but the train data of 'mine' spans "
            r'\[0, 0\.5\] .*; use likelihood = \{ kind = "continuous_bernoulli" \} for data in \[0, 1\]',
            id="beta-zero",
        ),
        pytest.param("beta", {}, [0.5, 1.0], r"spans \[0\.5, 1\]", id="beta-one"),
        pytest.param(
            "beta",
            {},
            [3.0, 200.0],
            r"spans \[3, 200\] .*; set data\.divide_by to scale it into \[0, 1\]",
            id="beta-8bit",
        ),
        pytest.param(
            "categorical",
            {},
            [0.0, 0.5, 0.25, 1.0],
            r"categorical likelihood needs integer levels 0\.\.255, but the train data of 'mine' has 2 "
            r"values that are not integers \(values in \[0, 1\]\); keep data\.divide_by = 1",
            id="categorical-fractional",
        ),
        pytest.param(
            "categorical",
            {},
            [0.0, 256.0],
            r"categorical likelihood with levels = 256 needs integers in \[0, 255\], but the train data "
            r"of 'mine' spans \[0, 256\]; set likelihood\.levels = 257",
            id="categorical-too-high",
        ),
        pytest.param(
            "categorical",
            {"levels": 4},
            [-1.0, 2.0],
            r"needs integers in \[0, 3\], but .* spans \[-1, 2\]; shift the data to start at 0",
            id="categorical-negative",
        ),
    ],
)
def test_check_data_refuses_data_outside_the_support(kind, options, data, message):
    x = torch.tensor(data, dtype=torch.float32)[:, None]
    with pytest.raises(DataError, match=message):
        make(kind, 1, **options).check_data(x, NAME)


# ---------------------------------------------------------------------------------------------
# Location-scale likelihoods: learned and fixed scales, data-dependent start
# ---------------------------------------------------------------------------------------------


def test_laplace_initialize_gives_the_maximum_likelihood_scale(f64):
    x = torch.distributions.Laplace(torch.tensor([0.0, 3.0, -1.0]), torch.tensor([0.5, 2.0, 1.0])).sample(
        (501,)
    )
    lik = make("laplace", 3)
    lik.initialize(x)
    b = lik.scale().detach()
    torch.testing.assert_close(b, (x - x.median(0).values).abs().mean(0))

    def total(loc, scale):
        return torch.distributions.Laplace(loc, scale).log_prob(x).sum(0)  # (3,)

    # the median and b maximise the log-likelihood: any step away lowers it in every dimension
    median = x.median(0).values
    best = total(median, b)
    for step in (0.99, 1.01):
        assert (total(median, b * step) < best).all()
    for shift in (-0.01, 0.01):
        assert (total(median + shift, b) < best).all()


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_initialize_floors_the_scale_of_a_constant_dimension(kind):
    x = torch.randn(50, 2)
    x[:, 1] = 0.25  # a blank pixel
    lik = make(kind, 2, min_scale=0.05)
    lik.initialize(x)
    # a spread below 2·min_scale starts at 2·min_scale, keeping softplus⁻¹ of a positive number
    assert lik.scale()[1].item() == pytest.approx(0.1)
    assert lik.scale()[0].item() > 0.5


def test_gaussian_initialize_is_the_standard_deviation():
    x = 3 * torch.randn(200, 4)
    lik = make("gaussian", 4)
    lik.initialize(x)
    torch.testing.assert_close(lik.scale().detach(), x.std(0))
    assert lik.min_scale == 0.01 and [n for n, _ in lik.named_parameters()] == ["raw_scale"]


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_fixed_scale_has_no_parameters_and_ignores_initialize(kind):
    lik = make(kind, scale=0.3)
    lik.initialize(torch.randn(10, D))
    assert list(lik.parameters()) == []
    assert torch.equal(lik.scale(), torch.full((D,), 0.3))


# ---------------------------------------------------------------------------------------------
# No host reads in forward; built from a config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_log_prob_read_nothing_back(kind):
    """On the meta device a tensor has no values, so ``.item()`` or ``if tensor`` would raise."""
    lik = make(kind).to("meta")
    out = torch.empty(K, B, lik.param_features, device="meta")
    with pyro.validation_enabled(False):  # validation does read the data back; training turns it off
        log_prob = lik(out).log_prob(torch.empty(B, D, device="meta"))
    assert log_prob.shape == (K, B)


@pytest.mark.parametrize("kind", KINDS)
def test_built_from_a_model_config(kind):
    config = ModelConfig(
        data_dim=D, latent_dim=2, likelihood={"kind": kind}, decoder={"kind": "mlp", "hidden": [8]}
    )
    vae = VAE(config)
    assert type(vae.likelihood) is LIKELIHOODS.get(kind)
    x = valid_data(kind, levels=256).float()
    vae.likelihood.check_data(x, "x")
    # the model's site "x" with two vectorized particles: the plate broadcasts the distribution
    pyro.set_rng_seed(1)
    elbo = pyro.infer.Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.loss(vae.model, vae.guide, x)  # (no trial run to guess the nesting: the draws below)
    # by hand, from the same draws: z ~ q(z|x) = N(μ, σ²) of the encoder's (μ, softplus⁻¹(σ − floor)),
    # −loss = mean over particles of Σ_n log N(z; 0, I) + log p(x|z) − log q(z|x)
    pyro.set_rng_seed(1)
    with torch.no_grad():
        loc, raw = vae.encoder(x).chunk(2, -1)
        scale = F.softplus(raw) + vae.q.min_scale
        z = loc + scale * torch.randn(2, B, 2)  # (K, B, Z)
        log_q = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_px = reference_log_prob(kind, vae.likelihood, vae.decoder(z), x)  # (K, B)
        expected = -(log_pz + log_px - log_q).sum(-1).mean().item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert vae.reconstruct(x).shape == (B, D)
    assert vae.sample(3, mean=False).shape == (3, D)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"kind": "categorical", "levels": 1},
            r"model\.likelihood\.levels = 1 is not allowed: expected an integer >= 2",
        ),
        (
            {"kind": "beta", "min_concentration": 0},
            r"model\.likelihood\.min_concentration = 0 is not allowed",
        ),
        ({"kind": "laplace", "scale": "fixed"}, r"model\.likelihood\.scale = \"fixed\" is not allowed"),
        ({"kind": "continuous_bernoulli", "relaxed": True}, r"unknown key model\.likelihood\.relaxed"),
    ],
    ids=["levels", "min_concentration", "scale", "unknown"],
)
def test_config_refuses_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(likelihood=options)
