"""The objectives' definitions computed by hand, on the draws an objective made: a small VAE,
a guide that records its draws, the log-densities rebuilt pathwise from them, and each
objective's value and gradient surrogates from its paper (shared by the objectives' tests)."""

import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from torch.distributions import Normal

from pyro_vae import VAE, ModelConfig, make_objective

B, K = 4, 5  # data points in the small VAE's batch, particles


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


def closed_form_kl(vae, x):
    """KL(q(z_j|x_n) || N(0, 1)) for each point and latent dimension, (B, Z)."""
    loc, sd = guide_params(vae, x)
    return 0.5 * (loc**2 + sd**2 - 2 * sd.log() - 1)


def expected_recon(vae, x, loc, sd):
    """E_{N(z; loc, sd²)}[log N(x; W z + b, σ² I)] in closed form for the linear decoder, (N,)."""
    W, b = vae.decoder[0].weight, vae.decoder[0].bias  # (D, Z), (D,)
    sigma2 = vae.likelihood.scale() ** 2  # (D,)
    mean_sq = (x - loc @ W.T - b) ** 2 + (sd**2) @ (W**2).T  # E(x_d − (W z + b)_d)²
    return (-0.5 * torch.log(2 * math.pi * sigma2) - mean_sq / (2 * sigma2)).sum(-1)


def loss_and_grads(objective, model, guide, x, params):
    loss = objective.differentiable_loss(model, guide, x)
    return loss.detach(), torch.autograd.grad(loss, params)


def warmed(name, vae, x, **options):
    """An objective after its first call, which finds the plate nesting with one extra draw."""
    objective = make_objective(name, **options)
    objective.differentiable_loss(vae.model, vae.guide, x)
    return objective


def check_against_the_definition(name, options):
    """The objective's loss and gradients on its own draws against :func:`definition` of them
    (in float64: the caller's ``f64`` fixture)."""
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


def cases(*names):
    """The :data:`CASES` of the objectives ``names``, for a parametrized test."""
    chosen = [c for c in CASES if c[0] in names]
    return pytest.mark.parametrize(("name", "options"), chosen, ids=[case_id(*c) for c in chosen])
