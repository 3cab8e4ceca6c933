"""The ELBO of our VAE against closed forms on probabilistic PCA (the model: tests/ppca.py)."""

import pyro
import pytest
import torch
from ppca import N, ppca
from pyro.distributions import Normal
from torch.distributions import kl_divergence

from pyro_vae import evaluate_elbo, make_objective


def repeat_elbo(vae, x, k):
    """k independent one-sample estimates log p(x, z) − log q(z|x) per data point, shape (k, N)."""
    parts = evaluate_elbo(vae.model, vae.guide, x.repeat(k, 1), batch_size=10_000, analytic_kl=False)
    return {key: parts[key].reshape(k, len(x)) for key in ("elbo", "recon", "kl")}


def test_elbo_with_exact_posterior_is_log_px(f64, device):
    vae, x, log_px, _, _ = ppca(device)
    # With q = p(z|x), log p(x, z) − log q(z|x) = log p(x) for every z: no Monte-Carlo noise.
    elbo = repeat_elbo(vae, x, 5)["elbo"]
    torch.testing.assert_close(elbo, log_px.expand(5, N), rtol=0, atol=1e-9)
    # Pyro's Trace_ELBO on the same pair: its loss is −Σ_n log p(x_n) exactly.
    for kind in ("elbo",):
        loss = make_objective(kind, particles=3).loss(vae.model, vae.guide, x)
        assert loss == pytest.approx(-log_px.sum().item(), abs=1e-8)


def test_elbo_of_mismatched_guide_is_log_px_minus_kl_to_posterior(f64, device):
    vae, x, log_px, post_loc, post_sd = ppca(device, shift=0.3, scale_factor=1.5)
    # E_q[ELBO] = log p(x) − KL(q(z|x) || p(z|x)), both Gaussians in closed form.
    q = Normal(post_loc + 0.3, 1.5 * post_sd).to_event(1)
    posterior = Normal(post_loc, post_sd.expand_as(post_loc)).to_event(1)
    expected = log_px - kl_divergence(q, posterior)  # (N,)
    k = 4000
    elbo = repeat_elbo(vae, x, k)["elbo"]  # (k, N)
    mean, stderr = elbo.mean(0), elbo.std(0) / k**0.5
    assert (stderr > 1e-3).all()  # a real Monte-Carlo estimate, not a constant
    assert ((mean - expected).abs() < 4 * stderr).all(), (mean - expected) / stderr
    # the gap is the KL to the posterior: the bound is strictly below log p(x) here
    assert (expected < log_px - 0.05).all()


def test_analytic_kl_matches_closed_form_and_monte_carlo(f64, device):
    vae, x, _, post_loc, post_sd = ppca(device, shift=0.2, scale_factor=0.7)
    mu, sd = post_loc + 0.2, (0.7 * post_sd).expand_as(post_loc)
    closed_form = 0.5 * (mu**2 + sd**2 - torch.log(sd**2) - 1).sum(-1)  # Kingma & Welling, app. B
    parts = evaluate_elbo(vae.model, vae.guide, x)
    assert parts["kl_estimator"] == "analytic"
    torch.testing.assert_close(parts["kl"], closed_form, rtol=1e-10, atol=1e-10)
    # the Monte-Carlo estimate log q(z|x) − log p(z), z ~ q, agrees within its standard error
    k = 4000
    z = Normal(mu, sd).sample((k,))  # (k, N, Z)
    mc = Normal(mu, sd).log_prob(z).sum(-1) - Normal(0.0, 1.0).log_prob(z).sum(-1)
    mean, stderr = mc.mean(0), mc.std(0) / k**0.5
    assert ((mean - closed_form).abs() < 4 * stderr).all()


def test_meanfield_objective_uses_the_analytic_kl(f64, device):
    vae, x, log_px, _, _ = ppca(device)
    objective = make_objective("meanfield")
    torch.manual_seed(0)
    # TraceMeanField_ELBO: −loss = Σ_n (E_q[log p(x_n|z)] − KL_n) with the KL term exact, so
    # with the guide at the posterior its expectation is Σ_n log p(x_n); average many draws.
    draws = torch.tensor([-objective.loss(vae.model, vae.guide, x) for _ in range(400)])
    stderr = draws.std() / len(draws) ** 0.5
    assert abs(draws.mean() - log_px.sum().item()) < 4 * stderr
    # the recon term has variance even at the exact posterior, so this is a real MC check
    assert stderr > 1e-3


def test_two_vaes_in_one_process_train_separately_with_pyro_svi(f64):
    """A user's own pyro.infer.SVI loop drives vae.model / vae.guide, for two VAEs at once."""
    vae_a, x, log_px, _, _ = ppca("cpu", shift=1.0, scale_factor=3.0)
    vae_b = ppca("cpu", shift=1.0, scale_factor=3.0)[0]
    before_b = [p.detach().clone() for p in vae_b.parameters()]
    svi = pyro.infer.SVI(vae_a.model, vae_a.guide, pyro.optim.Adam({"lr": 0.02}), pyro.infer.Trace_ELBO())
    initial = evaluate_elbo(vae_a.model, vae_a.guide, x)["elbo"].mean().item()
    for _ in range(600):
        svi.step(x)
    final = repeat_elbo(vae_a, x, 200)["elbo"].mean().item()
    # training closes most of the gap between the ELBO and the exact log p(x)
    gap_before, gap_after = log_px.mean().item() - initial, log_px.mean().item() - final
    assert gap_after < 0.2 * gap_before, (gap_before, gap_after)
    # vae_b's parameters were not touched, and nothing went to Pyro's global param store
    assert all(torch.equal(p, q) for p, q in zip(vae_b.parameters(), before_b, strict=True))
    assert len(pyro.get_param_store()) == 0
