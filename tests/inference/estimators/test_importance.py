"""``log_marginal_likelihood`` against the closed-form log p(x) of probabilistic PCA.

* With the exact posterior as proposal every importance weight p(x, z) / q(z | x) equals
  p(x), whatever z: the estimate is log p(x) to round-off for any K, chunking and
  batching, with ESS = K and zero Monte-Carlo error. These checks are exact (atol 1e-9;
  log p(x) ≈ −7 per point and float64 round-off of the log-sum-exp is O(1e-14)).
* With a mismatched proposal the estimate is random. Its error per data point has
  standard deviation ≈ ``mc_stderr`` (the delta method, valid once K is large) and mean
  (the IWAE bias) ≈ −mc_stderr² / 2 < 0, which vanishes as K grows (Burda et al. 2016).
  Draws of different data points are independent, so the mean error over N points has
  standard error SE = √(Σ_n mc_stderr_n²) / N. A correct estimator misses a 4-SE band
  with probability ≈ 6e-5; the seeds are fixed (``conftest.py``), so each run draws the
  same numbers.
* Any Pyro model/guide pair is accepted: our ``VAE`` built from a TOML config and plain
  user-written functions give the same answers.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from ppca import SIGMA, ppca

from pyro_vae import VAE, Config, log_marginal_likelihood

MISMATCH = {"shift": 0.3, "scale_factor": 1.5}  # a proposal away from the exact posterior


def estimate(vae, x, num_samples, **kwargs):
    """``log_marginal_likelihood`` of the VAE on ``x``, all points in one batch by default."""
    kwargs.setdefault("batch_size", len(x))
    return log_marginal_likelihood(vae.model, vae.guide, x, num_samples=num_samples, **kwargs)


def error_se(result) -> float:
    """Standard error of the mean over data points of log p̂(x_n) − log p(x_n).

    The points' K draws are independent, so Var(mean) = Σ_n Var(log p̂_n) / N², and
    ``mc_stderr_n`` estimates the square root of Var(log p̂_n) (checked below).
    """
    return ((result.mc_stderr**2).sum().sqrt() / result.mc_stderr.numel()).item()


def assert_exact(result, log_px, num_samples):
    """The estimate at the exact posterior: log p(x) to round-off, all weights equal."""
    torch.testing.assert_close(result.log_px, log_px, atol=1e-9, rtol=0)
    torch.testing.assert_close(result.ess, torch.full_like(result.ess, num_samples), atol=1e-6, rtol=0)
    # K / ESS − 1 is O(1e-15) of round-off, whose square root is O(1e-8)
    assert result.mc_stderr.max().item() < 1e-6
    assert result.num_samples == num_samples


# ---------------------------------------------------------------------------------------
# 1. The exact posterior as proposal: zero variance


def test_exact_posterior_proposal_gives_log_px_with_zero_variance(f64, device):
    vae, x, log_px, _, _ = ppca(device)
    result = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=50, chunk_size=7, batch_size=9)
    assert result.log_px.shape == (len(x),)
    assert result.log_px.device.type == device.type
    assert_exact(result, log_px, 50)


# ---------------------------------------------------------------------------------------
# 2. A mismatched proposal: biased low for small K, consistent as K grows


def test_small_k_estimate_is_below_log_px_on_average(f64, device):
    vae, x, log_px, _, _ = ppca(device, **MISMATCH)
    reps = 20
    for k in (2, 5):
        errors = torch.stack([estimate(vae, x, k).log_px - log_px for _ in range(reps)])  # (reps, N)
        # Average the repetitions per point, then take the SE over the N independent points
        # (the empirical one: the delta-method mc_stderr is too small at K this small,
        # measured 0.09 against an actual 0.27 for the mean over points at K = 2).
        per_point = errors.mean(0)
        mean, se = per_point.mean().item(), (per_point.std() / math.sqrt(len(x))).item()
        # measured: K = 2: −0.84 ± 0.06, K = 5: −0.27 ± 0.03 (per point)
        assert mean < -4 * se, (k, mean, se)


def test_estimate_converges_to_log_px_as_k_grows(f64, device):
    vae, x, log_px, _, _ = ppca(device, **MISMATCH)
    results = {
        k: log_marginal_likelihood(vae.model, vae.guide, x, num_samples=k, chunk_size=500, batch_size=len(x))
        for k in (10, 100, 2000)
    }
    errors = {k: (r.log_px - log_px).mean().item() for k, r in results.items()}
    ses = {k: error_se(r) for k, r in results.items()}
    # measured mean error ± SE: K = 10: −0.15 ± 0.07, K = 100: −0.020 ± 0.024,
    # K = 2000: −0.0026 ± 0.0053 (the bias, ≈ −N·SE²/2 ≈ −6e-4 there, is far inside the SE)
    assert abs(errors[2000]) < 4 * ses[2000], (errors, ses)
    assert abs(errors[2000]) < abs(errors[10]), errors
    assert ses[10] > ses[100] > ses[2000], ses  # the Monte-Carlo error shrinks like 1/√K
    # the standard error shrinks like 1/√K (delta method): the ratio for K = 100 → 2000 is √20
    assert ses[100] / ses[2000] == pytest.approx(math.sqrt(20), rel=0.5)


def test_reported_stderr_is_the_spread_over_repetitions(f64, device):
    vae, x, _, _, _ = ppca(device, **MISMATCH)
    reps, k = 20, 100
    draws = [estimate(vae, x, k) for _ in range(reps)]
    actual = torch.stack([d.log_px for d in draws]).std(0)  # (N,)
    reported = torch.stack([d.mc_stderr for d in draws]).mean(0)  # (N,)
    ratio = reported / actual
    # An empirical sd from 20 draws has relative error ≈ 1/√38 ≈ 16% per point (more with
    # heavy-tailed weights); measured per-point ratios 0.75–1.45, median 0.98.
    assert ((ratio > 0.5) & (ratio < 2)).float().mean().item() >= 0.9, ratio
    # Over 40 points the noise averages out: measured rms ratio 0.96.
    rms = ((reported**2).mean() / (actual**2).mean()).sqrt().item()
    assert 0.8 < rms < 1.25, rms


# ---------------------------------------------------------------------------------------
# 3. Our VAE built from a TOML config, and 4. a user-written Pyro model/guide


def vae_from_toml(tmp_path, device) -> VAE:
    """A linear VAE with a fixed-scale Gaussian likelihood, through Config.save / Config.load."""
    model = {
        "latent_dim": 3,
        "data_dim": 6,
        "likelihood": {"kind": "gaussian", "scale": SIGMA},
        "encoder": {"kind": "mlp", "hidden": []},
        "decoder": {"kind": "mlp", "hidden": []},
    }
    Config(model=model).save(tmp_path / "config.toml")
    config = Config.load(tmp_path / "config.toml")
    assert config.model.decoder.params["hidden"] == [] and config.model.likelihood.params["scale"] == SIGMA
    return VAE(config.model).to(device)


@pytest.mark.parametrize("guide", ["exact", "mismatched"])
def test_vae_from_a_config_with_ppca_weights_gives_the_closed_form(f64, device, tmp_path, guide):
    reference, x, log_px, _, _ = ppca(device, **(MISMATCH if guide == "mismatched" else {}))
    vae = vae_from_toml(tmp_path, device)
    vae.load_state_dict(reference.state_dict())  # the PPCA weights, set as in tests/ppca.py
    k = 2000
    result = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=k, batch_size=len(x))
    if guide == "exact":
        assert_exact(result, log_px, k)
    else:
        error, se = (result.log_px - log_px).mean().item(), error_se(result)
        # measured: −0.0075 ± 0.0053 per point (bias ≈ −6e-4, see above)
        assert abs(error) < 4 * se, (error, se)
        assert (result.ess < k).all()


def user_ppca(device):
    """PPCA as plain Pyro functions, with the exact posterior worked out by hand."""
    reference, x, log_px, _, _ = ppca(device)
    W, b = reference.decoder[0].weight.detach(), reference.decoder[0].bias.detach()  # (D, Z), (D,)
    z_dim = W.shape[1]
    M = W.T @ W + SIGMA**2 * torch.eye(z_dim, device=device)  # diagonal: W has orthogonal columns
    post_sd = SIGMA / torch.diagonal(M).sqrt()  # p(z | x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            loc = torch.zeros(x.shape[0], z_dim, device=x.device)
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))  # (..., B, Z)
            pyro.sample("x", dist.Normal(z @ W.T + b, SIGMA).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            loc = torch.linalg.solve(M, W.T @ (x - b).T).T  # (B, Z)
            pyro.sample("z", dist.Normal(loc, post_sd).to_event(1))

    return model, guide, x, log_px


def test_a_user_written_pyro_model_and_guide_are_accepted(f64, device):
    model, guide, x, log_px = user_ppca(device)
    result = log_marginal_likelihood(model, guide, x, num_samples=50, chunk_size=7, batch_size=9)
    assert_exact(result, log_px, 50)


# ---------------------------------------------------------------------------------------
# 5. Chunks and batches bound memory and change nothing else


@pytest.mark.parametrize("chunk_size", [1, 3, 50])
@pytest.mark.parametrize("batch_size", [1, 4, 40])
def test_chunk_and_batch_sizes_do_not_change_the_exact_answer(f64, device, chunk_size, batch_size):
    vae, x, log_px, _, _ = ppca(device)
    x, log_px = x[:8], log_px[:8]  # 8 points keep batch_size = 1 and chunk_size = 1 quick
    result = log_marginal_likelihood(
        vae.model, vae.guide, x, num_samples=50, chunk_size=chunk_size, batch_size=batch_size
    )
    assert_exact(result, log_px, 50)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_estimate_whatever_the_chunking(f64, device):
    # Each sample's noise is a function of (seed, point index, sample index, coordinate)
    # (pyro_vae.noise), so chunk and batch sizes change memory and nothing else: the
    # estimates agree to floating point. Another seed gives other draws.
    vae, x, log_px, _, _ = ppca(device, **MISMATCH)
    k = 500
    results = {
        (chunk, batch): log_marginal_likelihood(
            vae.model, vae.guide, x, num_samples=k, chunk_size=chunk, batch_size=batch, seed=3
        )
        for chunk, batch in ((500, 40), (7, 40), (64, 3), (13, 1))
    }
    ref = results[(500, 40)]
    for key, r in results.items():
        torch.testing.assert_close(r.log_px, ref.log_px, rtol=0, atol=1e-10, msg=str(key))
        torch.testing.assert_close(r.ess, ref.ess, rtol=1e-9, atol=1e-9, msg=str(key))
    other = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=k, seed=4)
    assert not torch.allclose(other.log_px, ref.log_px)
    # and the estimate is within 4 SE of the truth (measured mean error ± SE: about −0.01 ± 0.011)
    assert abs((ref.log_px - log_px).mean().item()) < 4 * error_se(ref)


def test_the_seed_follows_pyros_global_seed(f64):
    vae, x, _, _, _ = ppca("cpu", **MISMATCH)
    pyro.set_rng_seed(11)
    a = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=50, chunk_size=50)
    pyro.set_rng_seed(11)
    b = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=50, chunk_size=9, batch_size=7)
    torch.testing.assert_close(a.log_px, b.log_px, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------
# 6. Memory does not grow with K


def test_each_vectorized_run_draws_at_most_chunk_size_times_batch_size_weights(f64, monkeypatch):
    # Peak memory is what one local_terms call allocates: (k, B) weights and the sites'
    # (k, B, ·) tensors. Record k and B of every call, for K far above the chunk size.
    import pyro_vae.inference.estimators.chunks as evaluation

    shapes = []

    def recording(*args, **kwargs):
        terms = local_terms(*args, **kwargs)
        shapes.append(tuple(terms.log_w.shape))
        return terms

    local_terms = evaluation.local_terms
    monkeypatch.setattr(evaluation, "local_terms", recording)
    vae, x, _, _, _ = ppca("cpu", **MISMATCH)
    for k in (100, 1000):
        shapes.clear()
        log_marginal_likelihood(vae.model, vae.guide, x, num_samples=k, chunk_size=50, batch_size=16)
        assert max(s[0] for s in shapes) == 50 and max(s[1] for s in shapes) == 16
        assert sum(s[0] * s[1] for s in shapes) == k * len(x)  # every weight drawn once


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_peak_cuda_memory_does_not_grow_with_k(f64):
    device = torch.device("cuda")
    vae, x, _, _, _ = ppca(device, **MISMATCH)
    peaks = {}
    for k in (100, 10_000):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        log_marginal_likelihood(vae.model, vae.guide, x, num_samples=k, chunk_size=50, batch_size=40)
        torch.cuda.synchronize()
        peaks[k] = torch.cuda.max_memory_allocated() - base
    # 100× the samples, the same peak (allocator blocks are 512 B; allow a few)
    assert peaks[10_000] <= peaks[100] + 8 * 512, peaks
