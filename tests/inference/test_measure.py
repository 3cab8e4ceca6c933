"""Measuring a VAE: checked on linear-Gaussian VAEs whose log p(x) is known in closed form."""

import dataclasses
import math

import pyro
import pytest
import torch

from pyro_vae.inference.measure import Measurement, active_units, elbo_parts, evaluate_elbo, measure
from tests.ppca import N, ppca


def test_exact_posterior_gives_exact_log_px(f64):
    vae, x, log_px, *_ = ppca("cpu")
    m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 50}, seed=0)
    assert m.points == N
    assert m.estimator == "is" and m.options == {"samples": 50}
    assert m.log_px == pytest.approx(log_px.mean().item(), abs=1e-6)
    torch.testing.assert_close(m.marginal.log_px, log_px, atol=1e-6, rtol=0)
    assert m.log_px_mc_stderr < 1e-6
    assert m.untrusted_points == 0
    assert m.ess_min == pytest.approx(50, rel=1e-6)  # equal weights
    # the Monte-Carlo ELBO is log p(x) at every draw when q is the posterior
    parts = elbo_parts(vae.model, vae.guide, x, analytic_kl=False)
    assert parts["kl_estimator"] == "monte_carlo"
    torch.testing.assert_close(parts["elbo"], log_px, atol=1e-6, rtol=0)
    torch.testing.assert_close(parts["elbo"], parts["recon"] - parts["kl"], atol=1e-12, rtol=0)
    # with the closed-form KL it is exact in expectation: measure's ELBO is evaluate_elbo's
    assert m.kl_estimator == "analytic"
    same = evaluate_elbo(vae.model, vae.guide, x, seed=0)
    assert m.elbo == pytest.approx(same["elbo"].mean().item(), rel=1e-12)
    assert abs(m.elbo - log_px.mean().item()) < 4 * (same["elbo"] - log_px).std().item() / math.sqrt(N)


def test_measurement_away_from_the_posterior(f64):
    vae, x, log_px, post_loc, _ = ppca("cpu", shift=0.5)
    m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 50}, encode=vae.encode, seed=0)
    ml = m.marginal
    assert ml.log_px.shape == (N,)
    assert m.log_px == pytest.approx(ml.log_px.mean().item(), rel=1e-12)
    assert m.log_px_stderr == pytest.approx(ml.log_px.std().item() / math.sqrt(N), rel=1e-12)
    # untrusted points (Pareto k̂ > 0.7: NaN) are left out of the sum, not of N
    assert m.log_px_mc_stderr == pytest.approx(ml.mc_stderr.square().nansum().sqrt().item() / N, rel=1e-12)
    assert m.log_px_mc_stderr > 1e-4  # no longer exact
    # bounds: ELBO < IS estimate, and IS does not exceed the truth beyond its noise
    assert m.elbo < m.log_px
    assert m.log_px < log_px.mean().item() + 4 * m.log_px_mc_stderr

    parts = evaluate_elbo(vae.model, vae.guide, x, seed=0)  # the same keyed draws
    assert m.elbo == pytest.approx(parts["elbo"].mean().item(), rel=1e-12)
    assert m.recon == pytest.approx(parts["recon"].mean().item(), rel=1e-12)
    assert m.kl == pytest.approx(parts["kl"].mean().item(), rel=1e-12)
    assert m.elbo_stderr == pytest.approx(parts["elbo"].std().item() / math.sqrt(N), rel=1e-12)
    assert m.elbo == pytest.approx(m.recon - m.kl, rel=1e-12)

    # active units by hand: the variance over points of the encoder's linear mean
    enc = vae.encoder[0]
    Z = post_loc.shape[1]
    means = x @ enc.weight[:Z].T + enc.bias[:Z]
    torch.testing.assert_close(means.detach(), post_loc + 0.5, atol=1e-10, rtol=0)
    assert m.active_units == int((post_loc.var(0) > 0.01).sum()) == Z
    with torch.no_grad():
        enc.weight[1] = 0.0  # dimension 1 no longer moves with x
    assert active_units(vae.encode, x) == Z - 1
    assert active_units(vae.encode, x, threshold=float("inf")) == 0


def test_seeded_measure_does_not_depend_on_the_global_generator(f64):
    vae, x, *_ = ppca("cpu", shift=0.5)
    results = []
    for global_seed in (0, 123):
        pyro.set_rng_seed(global_seed)
        m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 10}, seed=0)
        results.append((m.elbo, m.recon, m.kl, m.log_px, m.log_px_mc_stderr))
    assert results[0] == results[1]


def test_seeded_measure_leaves_the_global_generator_alone(f64):
    vae, x, *_ = ppca("cpu", shift=0.5)
    rng = torch.get_rng_state()
    measure(vae.model, vae.guide, x, estimator="is", options={"samples": 10}, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)


def test_to_dict(f64):
    vae, x, *_ = ppca("cpu", shift=0.5)
    m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 10}, encode=vae.encode, seed=0)
    values = m.to_dict()
    fields = {f.name for f in dataclasses.fields(Measurement)} - {"marginal"}
    assert set(values) == fields
    assert all(not isinstance(v, torch.Tensor) for v in values.values())
    assert values.pop("log_px_absent") is None  # log p(x) is defined for this guide
    assert all(v is not None for v in values.values())
    assert values["log_px"] == m.log_px and values["points"] == N
    assert set(m.to_dict("valid/")) == {f"valid/{k}" for k in fields}
    # without an estimator or an encoder those fields stay unset
    plain = measure(vae.model, vae.guide, x, seed=0).to_dict()
    assert plain["log_px"] is None and plain["active_units"] is None
    assert plain["elbo"] == values["elbo"]


def test_keyed_draws_do_not_depend_on_batch_size(f64):
    vae, x, *_ = ppca("cpu", shift=0.5)
    whole = evaluate_elbo(vae.model, vae.guide, x, seed=0)
    batched = evaluate_elbo(vae.model, vae.guide, x, seed=0, batch_size=7)
    for key in ("elbo", "recon", "kl"):
        assert whole[key].shape == (N,)
        torch.testing.assert_close(whole[key], batched[key], atol=1e-12, rtol=0)
    other = evaluate_elbo(vae.model, vae.guide, x, seed=1)
    assert not torch.allclose(whole["recon"], other["recon"])


def test_unseeded_draws_use_the_global_generator(f64):
    vae, x, *_ = ppca("cpu", shift=0.5)
    pyro.set_rng_seed(0)
    a = evaluate_elbo(vae.model, vae.guide, x, seed=None)
    b = evaluate_elbo(vae.model, vae.guide, x, seed=None)  # the generator moved on
    pyro.set_rng_seed(0)
    c = evaluate_elbo(vae.model, vae.guide, x, seed=None)
    assert torch.equal(a["recon"], c["recon"])
    assert not torch.equal(a["recon"], b["recon"])
