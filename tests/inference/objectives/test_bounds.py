"""Every objective against its definition; the bounds' identities and order; DReG and STL.

* Exact checks on fixed draws. A recording guide keeps the z an objective drew; the hand
  computation rebuilds the same z = μ(x) + σ(x)·ε pathwise from the encoder's outputs
  and evaluates each objective's definition with ``torch.distributions``, so that values
  *and* gradients are compared in float64 to round-off (rtol 1e-10; the sums involved are
  O(10–100) and float64 round-off is O(1e-14) of that).
* Monte-Carlo checks compare means of R independent estimates. Each mean is close to
  normal (central limit), with standard error SE = sd / √R estimated from the same
  draws; a correct estimator misses a 4-SE band with probability ≈ 6e-5, and the
  largest of m such z-scores exceeds 5 with probability < m · 6e-7. The seeds are
  fixed (``conftest.py``), so each run draws the same numbers.
* Scaling: a dataset-size factor multiplies the per-data-point bound from outside, and
  what Pyro's ``RenyiELBO`` does instead (Pyro issue 3104) is established by test.
* Training: every registered objective trains the VAE from a config.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from gradients import gradient_draws, z_scores
from ppca import ppca
from pyro import poutine
from torch.distributions import Normal

import pyro_vae
from pyro_vae import VAE, Config, ModelConfig, make_objective
from pyro_vae.inference.objectives import OBJECTIVES, LocalBound
from pyro_vae.inference.objectives.modifiers import kl_by_dimension

B, K = 4, 5  # data points in the small VAE's batch, particles


# ---------------------------------------------------------------------------------------
# A small VAE, the draws an objective made, and its densities by hand


def small_vae():
    """A VAE with tanh MLPs and a learned per-dimension σ, and a batch of B points."""
    config = ModelConfig(
        latent_dim=2,
        data_dim=5,
        encoder={"kind": "mlp", "hidden": [7]},
        decoder={"kind": "mlp", "hidden": [7]},
    )
    vae = VAE(config)
    with torch.no_grad():
        vae.likelihood.raw_scale.normal_()  # σ_d differs between dimensions
    return vae, torch.randn(B, 5)


def encoder_and_decoder_params(vae):
    """φ (the encoder's parameters) and θ (the decoder's and the likelihood's σ)."""
    return list(vae.encoder.parameters()), [*vae.decoder.parameters(), *vae.likelihood.parameters()]


class Recorder:
    """A guide that keeps the trace of each of its runs: the z an objective drew."""

    def __init__(self, guide):
        self.guide, self.traces = guide, []

    def __call__(self, x):
        with poutine.trace() as capture:
            self.guide(x)
        self.traces.append(capture.trace)

    def z(self, run: int = -1) -> torch.Tensor:
        return self.traces[run].nodes["z"]["value"].detach()  # (..., B, Z)


def guide_params(vae, x):
    """q(z|x) = N(loc, sd²) from the encoder: loc and softplus(raw) + min_scale, (B, Z) each."""
    loc, raw = vae.encoder(x).chunk(2, dim=-1)
    return loc, F.softplus(raw) + vae.q.min_scale


def noise(vae, x, z):
    """ε = (z − loc) / sd for recorded draws z: what the reparameterization drew."""
    loc, sd = guide_params(vae, x)
    return ((z - loc) / sd).detach()


def by_hand(vae, x, eps):
    """The ``(K, B)`` log-densities at z = loc + sd·ε, pathwise in φ, and the closed-form KL.

    ``log_w_stop`` is log w with log q's parameters held fixed (its gradient reaches φ
    only through z), as STL and DReG define it.
    """
    loc, sd = guide_params(vae, x)
    z = loc + sd * eps  # (K, B, Z) (or with a singleton plate dim): the objective's draws
    b = x.shape[0]
    recon = Normal(vae.decoder(z), vae.likelihood.scale()).log_prob(x).sum(-1).reshape(-1, b)
    log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1).reshape(-1, b)
    log_q = Normal(loc, sd).log_prob(z).sum(-1).reshape(-1, b)
    log_q_stop = Normal(loc.detach(), sd.detach()).log_prob(z).sum(-1).reshape(-1, b)
    kl = 0.5 * (loc**2 + sd**2 - 2 * sd.log() - 1)  # (B, Z): Kingma & Welling 2014, app. B
    return {
        "recon": recon,
        "log_w": recon + log_prior - log_q,
        "log_w_stop": recon + log_prior - log_q_stop,
        "kl": kl.sum(-1),  # (B,)
    }


def lme(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) Σ exp along ``dim``."""
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def definition(name, options, t):
    """Each objective from its paper: the per-point value (B,) and the surrogates whose
    gradients its estimator is, for the encoder's φ and for the decoder's θ."""
    log_w = t["log_w"]  # (K, B)
    if name in ("elbo", "tracegraph"):  # E_q[log p(x, z) − log q(z|x)]
        value = log_w.mean(0)
    elif name == "meanfield":  # E_q[log p(x|z)] − KL(q || p), the KL in closed form
        value = t["recon"].mean(0) - t["kl"]
    elif name == "autoencoder":  # the reconstruction term alone (with this Gaussian guide: stochastic)
        value = t["recon"].mean(0)
    elif name == "beta":  # Higgins et al. 2017, eq. 4
        value = t["recon"].mean(0) - options["beta"] * t["kl"]
    elif name == "iwae":  # Burda et al. 2016, eq. 8
        value = lme(log_w)
    elif name == "renyi":  # Li & Turner 2016, eq. 11
        value = lme((1 - options["alpha"]) * log_w) / (1 - options["alpha"])
    elif name == "tail_adaptive":  # Wang et al. 2018, algorithm 1; the value is the ELBO
        value = log_w.mean(0)
        w = log_w.detach()
        tail = (w.unsqueeze(0) >= w.unsqueeze(1)).to(w.dtype).mean(1)  # F̂(w_k) = #{j: w_j ≥ w_k} / K
        gamma = tail.pow(options.get("beta", -1.0))
        surrogate = ((gamma * log_w).sum(0) / gamma.sum(0)).sum()
        return value, {"encoder": surrogate, "decoder": surrogate}
    elif name == "elbo_stl":  # Roeder et al. 2017, eq. 5
        surrogate = t["log_w_stop"].mean(0).sum()
        return log_w.mean(0), {"encoder": surrogate, "decoder": surrogate}
    elif name == "iwae_dreg":  # Tucker et al. 2019, eq. 7 for φ; the IWAE gradient for θ
        w_tilde = torch.softmax(log_w.detach(), dim=0)  # (K, B)
        return lme(log_w), {
            "encoder": (w_tilde**2 * t["log_w_stop"]).sum(),
            "decoder": (w_tilde * t["log_w_stop"]).sum(),
        }
    else:
        raise KeyError(f"no hand computation for {name!r}")
    assert value.shape == log_w.shape[1:]
    return value, {"encoder": value.sum(), "decoder": value.sum()}


CASES = [
    ("elbo", {}),
    ("elbo", {"particles": K}),
    ("meanfield", {"particles": K}),
    ("tracegraph", {"particles": K}),
    ("iwae", {"particles": K}),
    ("renyi", {"alpha": 0.5, "particles": K}),
    ("renyi", {"alpha": 2.0, "particles": K}),
    ("beta", {"beta": 4.0, "particles": 3}),
    ("tail_adaptive", {"particles": K}),
    ("tail_adaptive", {"beta": -0.5, "particles": K}),
    ("elbo_stl", {"particles": K}),
    ("iwae_dreg", {"particles": K}),
    ("autoencoder", {}),
]


def case_id(name, options):
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


def exact(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------
# 1. Every objective's loss and gradient equal its definition, computed by hand


def test_every_registered_objective_has_a_hand_computation():
    assert {name for name, _ in CASES} == set(OBJECTIVES.names())


@pytest.mark.parametrize(("name", "options"), CASES, ids=[case_id(*c) for c in CASES])
def test_loss_and_gradient_equal_the_definition_by_hand(f64, name, options):
    vae, x = small_vae()
    phi, theta = encoder_and_decoder_params(vae)
    guide = Recorder(vae.guide)
    objective = make_objective(name, **options)
    loss = objective.differentiable_loss(vae.model, guide, x)
    grads = torch.autograd.grad(loss, phi + theta)

    value, surrogates = definition(name, options, by_hand(vae, x, noise(vae, x, guide.z())))
    exact(loss.detach(), -value.sum())
    hand = [
        *torch.autograd.grad(-surrogates["encoder"], phi, retain_graph=True),
        *torch.autograd.grad(-surrogates["decoder"], theta),
    ]
    for ours, theirs in zip(grads, hand, strict=True):
        exact(ours, theirs)
    assert all(g.abs().max() > 1e-6 for g in grads)  # a real gradient, not zeros

    # ``loss`` (what pyro.infer.SVI reports) is the same number for its own draws
    value_only = objective.loss(vae.model, guide, x)
    expected, _ = definition(name, options, by_hand(vae, x, noise(vae, x, guide.z())))
    assert value_only == pytest.approx(-expected.sum().item(), rel=1e-10)


def test_iwae_takes_the_log_mean_exp_of_each_data_points_weights(f64):
    vae, x = small_vae()
    guide = Recorder(vae.guide)
    loss = make_objective("iwae", particles=K).loss(vae.model, guide, x)
    log_w = by_hand(vae, x, noise(vae, x, guide.z()))["log_w"].detach()  # (K, B)
    per_point, over_batch = lme(log_w).sum().item(), lme(log_w.sum(1)).item()
    assert loss == pytest.approx(-per_point, rel=1e-10)
    # the two readings differ on these draws by far more than the tolerance above
    assert abs(per_point - over_batch) > 0.1


def closed_form_kl(vae, x):
    """KL(q(z_j|x_n) || N(0, 1)) for each point and latent dimension, (B, Z)."""
    loc, sd = guide_params(vae, x)
    return 0.5 * (loc**2 + sd**2 - 2 * sd.log() - 1)


def test_kl_by_dimension_is_the_closed_form(f64):
    vae, x = small_vae()
    kl, scale = kl_by_dimension(vae.model, vae.guide, x)
    exact(kl, closed_form_kl(vae, x))
    assert scale == 1.0


@pytest.mark.parametrize(
    ("unit", "epoch", "step", "weight"),
    [("epochs", 5, 999, 0.5), ("steps", 0.9, 3, 0.3), ("epochs", 12, 0, 1.0)],
    ids=["half-way-epochs", "steps", "done"],
)
@pytest.mark.parametrize(("name", "options"), [("elbo", {}), ("beta", {"beta": 4.0})], ids=["elbo", "beta"])
def test_kl_warmup_weighs_the_kl_on_fixed_draws(f64, name, options, unit, epoch, step, weight):
    """The schedule moves the bound's own KL weight b (1, or β for the β-VAE) to β_t · b:

    elbo: −loss = Σ_n [log w_n + (1 − β_t) KL_n], in expectation Σ_n [E_q log p(x_n|z) − β_t KL_n];
    beta: −loss = Σ_n [recon_n − β_t β KL_n], with the closed-form KL in both passes.
    """
    vae, x = small_vae()
    phi, theta = encoder_and_decoder_params(vae)
    objective = make_objective(name, kl_warmup=10, kl_warmup_unit=unit, **options)
    objective.set_progress(epoch=epoch, step=step)
    assert objective.kl_weight == pytest.approx(weight, rel=1e-12)
    guide = Recorder(vae.guide)
    loss = objective.differentiable_loss(vae.model, guide, x)
    grads = torch.autograd.grad(loss, phi + theta)
    # the base objective's draws; the last run is the modifier's KL pass
    t = by_hand(vae, x, noise(vae, x, guide.z(run=-2)))
    if name == "elbo":
        hand = (t["log_w"].mean(0) + (1 - weight) * t["kl"]).sum()
    else:
        hand = (t["recon"].mean(0) - weight * options["beta"] * t["kl"]).sum()
    exact(loss.detach(), -hand)
    for ours, theirs in zip(grads, torch.autograd.grad(-hand, phi + theta), strict=True):
        exact(ours, theirs)


def expected_recon(vae, x, loc, sd):
    """E_{N(z; loc, sd²)}[log N(x; W z + b, σ² I)] in closed form for the linear decoder, (N,)."""
    W, b = vae.decoder[0].weight, vae.decoder[0].bias  # (D, Z), (D,)
    sigma2 = vae.likelihood.scale() ** 2  # (D,)
    mean_sq = (x - loc @ W.T - b) ** 2 + (sd**2) @ (W**2).T  # E(x_d − (W z + b)_d)²
    return (-0.5 * torch.log(2 * math.pi * sigma2) - mean_sq / (2 * sigma2)).sum(-1)


def test_kl_warmup_loss_is_recon_minus_weighted_kl_in_expectation(f64):
    vae, x, _, post_loc, post_sd = ppca("cpu", shift=0.3, scale_factor=1.5)
    loc, sd = post_loc + 0.3, (1.5 * post_sd).expand_as(post_loc)
    recon = expected_recon(vae, x, loc, sd)
    kl = (0.5 * (loc**2 + sd**2 - 2 * sd.log() - 1)).sum(-1)
    objective = make_objective("elbo", particles=10, kl_warmup=10)
    objective.set_progress(epoch=5, step=0)  # β_t = 0.5
    R = 200
    losses = torch.tensor([objective.loss(vae.model, vae.guide, x) for _ in range(R)])
    mean, se = losses.mean(), losses.std() / math.sqrt(R)
    # measured 309.63 ± 0.38 against 309.86; the ELBO's 348.7 (β_t = 1) is 100 SE away
    assert abs(mean + (recon - 0.5 * kl).sum()) < 4 * se
    assert abs(mean + (recon - kl).sum()) > 20 * se


@pytest.mark.parametrize("where", ["above", "between", "below"])
@pytest.mark.parametrize(("name", "b"), [("meanfield", 1.0), ("beta", 4.0)])
def test_free_bits_replace_the_kl_below_lambda_by_a_constant(f64, name, b, where):
    """With a closed-form KL in the bound the modified loss is exactly
    −Σ_n recon_n + b · B Σ_j max(λ, KL̄_j), b the bound's own KL weight (β for the β-VAE)."""
    vae, x = small_vae()
    phi, theta = encoder_and_decoder_params(vae)
    kl_bar = closed_form_kl(vae, x).mean(0).detach()  # (Z,): the batch mean of each dimension's KL
    assert kl_bar.max() > 1.5 * kl_bar.min()  # two distinct dimensions, so "between" is between
    lam = {"above": 2 * kl_bar.max(), "between": kl_bar.mean(), "below": 0.5 * kl_bar.min()}[where]
    options = {"beta": b} if name == "beta" else {}
    objective = make_objective(name, particles=K, free_bits=float(lam), **options)
    guide = Recorder(vae.guide)
    loss = objective.differentiable_loss(vae.model, guide, x)
    grads = torch.autograd.grad(loss, phi + theta)

    t = by_hand(vae, x, noise(vae, x, guide.z(run=-2)))
    free = B * closed_form_kl(vae, x).mean(0).clamp(min=float(lam)).sum()
    hand = -t["recon"].mean(0).sum() + b * free
    exact(loss.detach(), hand)
    for ours, theirs in zip(grads, torch.autograd.grad(hand, phi + theta, retain_graph=True), strict=True):
        exact(ours, theirs)
    if where == "above":  # the KL term is the constant b·B·J·λ: no gradient pushes the KL anywhere
        exact(free, B * 2 * lam)
        recon_only = torch.autograd.grad(-t["recon"].mean(0).sum(), phi + theta)
        for ours, theirs in zip(grads, recon_only, strict=True):
            exact(ours, theirs)
    if where == "below":  # free bits do not bind: the bound itself
        exact(loss.detach(), -(t["recon"].mean(0) - b * t["kl"]).sum())


# ---------------------------------------------------------------------------------------
# 2. Identities and the order of the bounds


def loss_and_grads(objective, model, guide, x, params):
    loss = objective.differentiable_loss(model, guide, x)
    return loss.detach(), torch.autograd.grad(loss, params)


def warmed(name, vae, x, **options):
    """An objective after its first call, which finds the plate nesting with one extra draw."""
    objective = make_objective(name, **options)
    objective.differentiable_loss(vae.model, vae.guide, x)
    return objective


def test_iwae_with_one_particle_is_the_elbo_on_the_same_draws(f64):
    vae, x = small_vae()
    params = list(vae.parameters())
    iwae, elbo = warmed("iwae", vae, x, particles=1), warmed("elbo", vae, x)
    pyro.set_rng_seed(7)
    iwae_loss, iwae_grads = loss_and_grads(iwae, vae.model, vae.guide, x, params)
    pyro.set_rng_seed(7)
    elbo_loss, elbo_grads = loss_and_grads(elbo, vae.model, vae.guide, x, params)
    exact(iwae_loss, elbo_loss)
    for a, b in zip(iwae_grads, elbo_grads, strict=True):
        exact(a, b)


def test_renyi_tends_to_the_elbo_as_alpha_tends_to_one(f64):
    """(1/t) log mean_k e^{t log w_k} = mean_k log w_k + (t/2) var_k log w_k + O(t²), t = 1 − α:
    the second-order term is predicted from the draws, so the check is to 1 % of a 1e-4 effect."""
    vae, x = small_vae()
    params = list(vae.parameters())
    elbo = warmed("elbo", vae, x, particles=K)
    pyro.set_rng_seed(11)
    guide = Recorder(vae.guide)
    elbo_loss, elbo_grads = loss_and_grads(elbo, vae.model, guide, x, params)
    elbo_z = guide.z()
    log_w = by_hand(vae, x, noise(vae, x, elbo_z))["log_w"].detach()
    for alpha in (1 - 1e-4, 1 + 1e-4):
        renyi = warmed("renyi", vae, x, alpha=alpha, particles=K)
        pyro.set_rng_seed(11)
        loss, grads = loss_and_grads(renyi, vae.model, guide, x, params)
        assert torch.equal(guide.z().flatten(), elbo_z.flatten())  # the same draws
        t = 1 - alpha
        predicted = t / 2 * log_w.var(0, unbiased=False).sum()
        difference = elbo_loss - loss  # = value − ELBO
        assert abs(difference - predicted) < 1e-2 * abs(predicted)
        assert abs(difference) < 1e-3  # |t| · Σ var ≈ 1e-4 · O(1)
        for a, b in zip(grads, elbo_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def iwae_per_point(vae, x, k, *, calls=40, copies=10):
    """E[IWAE_k] averaged over the points of x: the mean and standard error of ``calls``
    values, each the objective's bound on ``copies`` independent copies of x, per point."""
    objective = make_objective("iwae", particles=k)
    batch = x.repeat(copies, 1)
    values = torch.tensor([-objective.loss(vae.model, vae.guide, batch) for _ in range(calls)])
    values = values / len(batch)
    return values.mean().item(), values.std().item() / math.sqrt(calls)


def test_iwae_rises_with_k_and_stays_below_log_px(f64):
    vae, x, log_px, _, _ = ppca("cpu", shift=0.3, scale_factor=1.5)  # a mismatched guide
    (m1, s1), (m5, s5), (m50, s50) = (iwae_per_point(vae, x, k) for k in (1, 5, 50))
    # measured: −8.73 ± 0.02, −7.259 ± 0.007, −7.005 ± 0.002 against log p(x) = −6.980 per point
    assert m5 - m1 > 4 * math.hypot(s1, s5)
    assert m50 - m5 > 4 * math.hypot(s5, s50)
    assert log_px.mean().item() - m50 > 4 * s50


# ---------------------------------------------------------------------------------------
# 3. DReG and STL: unbiased for the bound they estimate, with less variance for φ


class IWAE_STL(LocalBound):
    """IWAE with log q's parameters cut and no second weight: biased for φ (Tucker et al. 2019,
    section 3), the estimator DReG corrects. Here to show that the check below sees a bias."""

    stop_q_params = True

    def bound(self, terms):
        value = lme(terms.log_w)
        return value, value


def test_dreg_encoder_gradient_is_iwaes_in_expectation_with_less_variance(f64):
    vae, x, _, _, _ = ppca("cpu", shift=0.3, scale_factor=1.3)  # near, not at, the posterior
    phi = list(vae.encoder.parameters())  # 42 coordinates
    R = 300
    iwae = gradient_draws(make_objective("iwae", particles=K), vae, x, phi, R)
    dreg = gradient_draws(make_objective("iwae_dreg", particles=K), vae, x, phi, R)
    biased = gradient_draws(IWAE_STL(K), vae, x, phi, R)
    # 42 z-scores: for an unbiased estimator max |z| > 5 has probability < 42 · 6e-7 ≈ 3e-5
    # (Bonferroni). Measured 2.1–4.2 over six seeds (4.17 with this one); over 20,000 draws on
    # 8 points the Hotelling T² of the difference is 48 on 42 degrees of freedom: no bias.
    # Dropping DReG's second weight w̃ (IWAE-STL) gives max |z| ≈ 60–76: the check sees that.
    assert z_scores(dreg, iwae).abs().max() < 5
    assert z_scores(biased, iwae).abs().max() > 5
    # the total variance over φ's coordinates: 20.0 times lower here, 19–22 over five more seeds
    assert iwae.var(0).sum() > 5 * dreg.var(0).sum()


def test_stl_encoder_gradient_is_the_elbos_in_expectation_with_less_variance(f64):
    vae, x, _, _, _ = ppca("cpu", shift=0.3, scale_factor=1.3)
    phi = list(vae.encoder.parameters())
    R = 300
    elbo = gradient_draws(make_objective("elbo"), vae, x, phi, R)
    stl = gradient_draws(make_objective("elbo_stl"), vae, x, phi, R)
    assert z_scores(stl, elbo).abs().max() < 5  # as above; measured 2.6 here, 1.8–2.5 over five seeds
    # the total variance: 4.7 times lower here, 4.7–5.3 over five more seeds
    assert elbo.var(0).sum() > 2.5 * stl.var(0).sum()
    # the same check tells the ELBO's gradient from IWAE_5's (a different bound): max |z| ≈ 110
    iwae = gradient_draws(make_objective("iwae", particles=K), vae, x, phi, R)
    assert z_scores(stl, iwae).abs().max() > 5


@pytest.mark.parametrize(("standard", "ours"), [("elbo", "elbo_stl"), ("iwae", "iwae_dreg")])
def test_at_the_exact_posterior_the_encoder_gradient_is_zero_for_every_draw(f64, standard, ours):
    """With q = p(z|x), log w = log p(x) for every z, so ∂ log w / ∂z = 0: the STL and DReG
    estimates vanish draw by draw, while the standard one keeps its score-function noise."""
    vae, x, _, _, _ = ppca("cpu")
    phi = list(vae.encoder.parameters())
    new = gradient_draws(make_objective(ours, particles=K), vae, x, phi, 20)
    old = gradient_draws(make_objective(standard, particles=K), vae, x, phi, 20)
    assert new.abs().max() < 1e-10  # measured 2e-13 (round-off)
    assert old.std(0).max() > 1.0  # measured 21


@pytest.mark.parametrize(("standard", "ours"), [("elbo", "elbo_stl"), ("iwae", "iwae_dreg")])
def test_dreg_and_stl_give_the_decoder_the_standard_gradient_on_the_same_draws(f64, standard, ours):
    vae, x, _, _, _ = ppca("cpu", shift=0.3, scale_factor=1.3)
    phi, theta = encoder_and_decoder_params(vae)
    a, b = warmed(standard, vae, x, particles=K), warmed(ours, vae, x, particles=K)
    pyro.set_rng_seed(5)
    a_loss, a_grads = loss_and_grads(a, vae.model, vae.guide, x, phi + theta)
    pyro.set_rng_seed(5)
    b_loss, b_grads = loss_and_grads(b, vae.model, vae.guide, x, phi + theta)
    exact(a_loss, b_loss)  # the same draws, the same bound
    n = len(phi)
    for g, h in zip(a_grads[n:], b_grads[n:], strict=True):  # θ: the same estimate
        exact(g, h)
    # φ: a different estimate of the same gradient
    assert max((g - h).abs().max() for g, h in zip(a_grads[:n], b_grads[:n], strict=True)) > 1e-3


# ---------------------------------------------------------------------------------------
# 4. A dataset-size scale multiplies the per-point bound from outside; Pyro's RenyiELBO


def subsampled(vae, full_size):
    """The VAE's programs with the data plate a subsample of ``full_size`` points (scale N / B)."""

    def model(x):
        with pyro.plate("data", full_size, subsample=torch.arange(len(x))):
            z = pyro.sample("z", vae.prior())
            pyro.sample("x", vae.likelihood(vae.decoder(z)), obs=x)

    def guide(x):
        with pyro.plate("data", full_size, subsample=torch.arange(len(x))):
            pyro.sample("z", vae.q(vae.encoder(x)))

    return model, guide


SCALE = 7.5  # a batch of 4 from 30 points
SCALED_CASES = [(name, {}) for name in OBJECTIVES.names()] + [("iwae", {"kl_warmup": 4, "free_bits": 0.05})]


@pytest.mark.parametrize("how", ["poutine.scale", "subsample"])
@pytest.mark.parametrize(("name", "options"), SCALED_CASES, ids=[case_id(*c) for c in SCALED_CASES])
def test_a_scale_multiplies_loss_and_gradient_from_outside_the_bound(f64, name, options, how):
    vae, x = small_vae()
    params = list(vae.parameters())
    objective = warmed(name, vae, x, **options)
    if options.get("kl_warmup"):
        objective.set_progress(epoch=2, step=0)  # β_t = 0.5
    if how == "subsample":
        model, guide = subsampled(vae, full_size=int(SCALE * B))
    else:
        model, guide = poutine.scale(vae.model, scale=SCALE), poutine.scale(vae.guide, scale=SCALE)
    pyro.set_rng_seed(3)
    loss, grads = loss_and_grads(objective, vae.model, vae.guide, x, params)
    pyro.set_rng_seed(3)
    scaled_loss, scaled_grads = loss_and_grads(objective, model, guide, x, params)
    exact(scaled_loss, SCALE * loss)
    for g, h in zip(scaled_grads, grads, strict=True):
        exact(g, SCALE * h)


# Pyro's RenyiELBO (1.9) sums each site's log-density over the plates that not every site
# shares, then takes the log-mean-exp over particles of what is left, scale included
# (``get_dependent_plate_dims`` in pyro/infer/renyi_elbo.py). The tests below establish
# what that is for a VAE; see Pyro issue 3104 ("the current renyi implementation is
# suboptimal ... for a local latent variable model like a VAE").


def pyro_iwae(k=K):
    return pyro.infer.RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)


def test_pyro_renyi_elbo_on_a_vae_is_per_point_but_puts_a_scale_inside(f64):
    vae, x = small_vae()
    guide = Recorder(vae.guide)

    # every site sits in the data plate: Pyro's value is our per-point IWAE (on its own draws)
    loss = pyro_iwae().loss(vae.model, guide, x)
    log_w = by_hand(vae, x, noise(vae, x, guide.z()))["log_w"].detach()  # (K, B)
    assert loss == pytest.approx(-lme(log_w).sum().item(), rel=1e-10)

    # with a scale s, Pyro takes Σ_n log mean_k w_kn^s: s inside the log-mean-exp
    model, scaled_guide = subsampled(vae, full_size=int(SCALE * B))
    guide = Recorder(scaled_guide)
    loss = pyro_iwae().loss(model, guide, x)
    log_w = by_hand(vae, x, noise(vae, x, guide.z()))["log_w"].detach()
    assert loss == pytest.approx(-lme(SCALE * log_w).sum().item(), rel=1e-10)
    # which is not s times the bound of the same draws: ours is, exactly
    assert abs(loss - SCALE * -lme(log_w).sum().item()) > 0.1 * SCALE


def test_pyro_renyi_elbo_with_a_dataset_scale_is_above_log_px(f64):
    """Σ_n (1/s) log mean_k w_kn^s rises to Σ_n max_k log w_kn as s grows: not a lower bound."""
    vae, x, log_px, _, _ = ppca("cpu", shift=0.3, scale_factor=1.5)
    scale = 25.0  # the 40 points as a batch from 1000
    model, guide = subsampled(vae, full_size=int(scale * len(x)))
    R = 100
    theirs = torch.tensor([-pyro_iwae().loss(model, guide, x) for _ in range(R)]) / (scale * len(x))
    ours_objective = make_objective("iwae", particles=K)
    ours = torch.tensor([-ours_objective.loss(model, guide, x) for _ in range(R)]) / (scale * len(x))
    target = log_px.mean().item()
    # measured: Pyro −6.24 ± 0.014, ours −7.25 ± 0.014, log p(x) −6.98 per point
    assert theirs.mean() - target > 4 * theirs.std() / math.sqrt(R)
    assert target - ours.mean() > 4 * ours.std() / math.sqrt(R)


def with_a_global_site(vae):
    """The VAE with one more site g ~ N(0, 1) outside the data plate, its guide the prior:
    log p(g) − log q(g) = 0, so the weights are the VAE's."""

    def model(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        vae.model(x)

    def guide(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        vae.guide(x)

    return model, guide


def test_pyro_renyi_elbo_with_a_global_site_is_over_the_batch_and_looser(f64):
    vae, x = small_vae()
    model, guide = with_a_global_site(vae)
    recorder = Recorder(guide)
    loss = pyro_iwae().loss(model, recorder, x)
    log_w = by_hand(vae, x, noise(vae, x, recorder.z()))["log_w"].detach()  # (K, B)
    # the data plate is no longer shared by every site: log mean_k Π_n w_kn
    assert loss == pytest.approx(-lme(log_w.sum(1)).item(), rel=1e-10)
    # ours needs every site in the data plate, and says so
    with pytest.raises(ValueError, match="not inside the plate"):
        make_objective("iwae").loss(model, guide, x)

    # in expectation Σ_n IWAE_K(x_n) is the tighter bound (measured per point on the PPCA
    # model: ours −7.41, Pyro's −8.43, standard error of the difference 0.03)
    vae, x, _, _, _ = ppca("cpu", shift=0.3, scale_factor=1.5)
    model, guide = with_a_global_site(vae)
    R = 100
    theirs = torch.tensor([-pyro_iwae().loss(model, guide, x) for _ in range(R)])
    ours_objective = make_objective("iwae", particles=K)
    ours = torch.tensor([-ours_objective.loss(vae.model, vae.guide, x) for _ in range(R)])
    se = math.hypot(theirs.std() / math.sqrt(R), ours.std() / math.sqrt(R))
    assert ours.mean() - theirs.mean() > 4 * se


# ---------------------------------------------------------------------------------------
# 5. Every registered objective trains the VAE from a config


def train_tiny(tmp_path, device, **overrides):
    """Train from a config *file*, as a user would: the overrides written to TOML and loaded."""
    config = Config().override(
        {
            "train.epochs": 3,
            "model.encoder.hidden": [32],
            "model.decoder.hidden": [32],
            "train.run_dir": str(tmp_path / "run"),
            "train.device": device.type,
            **overrides,
        }
    )
    config.save(tmp_path / "config.toml")
    return pyro_vae.train(Config.load(tmp_path / "config.toml"), quiet=True)


def check_trained(run):
    first, last = run.history[0], run.history[-1]
    assert [row["epoch"] for row in run.history] == [0, 1, 2, 3]
    for row in run.history:
        numbers = {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        assert all(math.isfinite(v) for v in numbers.values()), row
    assert all(row["train_loss"] is not None for row in run.history[1:])
    # the digits VAE starts at −790 to −910 nats per point (± 30–38, the standard error over the
    # validation points) and reaches −16 to +10 (± 1.2–3.7) in 3 epochs: a rise of ~20 SE
    rise = last["valid_elbo"] - first["valid_elbo"]
    assert rise > 4 * (first["valid_elbo_stderr"] + last["valid_elbo_stderr"]), (rise, first, last)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_trains_the_vae(name, device, tmp_path):
    check_trained(train_tiny(tmp_path, device, **{"objective.kind": name}))


@pytest.mark.parametrize(
    "modifiers",
    [
        {"objective.kind": "iwae", "objective.kl_warmup": 2, "objective.free_bits": 0.1},
        {"objective.kind": "elbo", "objective.kl_warmup": 20, "objective.kl_warmup_unit": "steps"},
    ],
    ids=["iwae-warmup-free-bits", "elbo-warmup-steps"],
)
def test_objectives_with_modifiers_train_the_vae(modifiers, device, tmp_path):
    run = train_tiny(tmp_path, device, **modifiers)
    check_trained(run)
    assert run.config.objective.params["kl_warmup"] == modifiers["objective.kl_warmup"]
