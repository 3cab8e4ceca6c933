"""``pyro-vae evaluate`` (pyro_vae/evaluation/evaluate.py): a trained run measured from the
command line, with any registered estimator, a user's own included."""

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

import pyro_vae
from pyro_vae import Run
from pyro_vae.cli.main import main
from pyro_vae.data.datasets import load_data

TINY = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]"]

# A user's estimator: importance sampling with the prior as proposal, w = p(x|z), in a plugin file.
PRIOR_IS = '''
from pyro import poutine

import pyro_vae
from pyro_vae.core.options import PositiveInt


@pyro_vae.register_estimator("prior_is")
def prior_is(model, guide, x, /, *, seed, batch_size, device, progress, plate="data",
             samples: PositiveInt = 1000):
    """Importance sampling with p(z) as proposal: the model with its observed sites hidden."""
    proposal = poutine.block(model, hide_fn=lambda msg: msg["is_observed"])
    return pyro_vae.importance_sampling(model, proposal, x, seed=seed, batch_size=batch_size,
                                        device=device, progress=progress, plate=plate, samples=samples)
'''


@pytest.fixture
def run_dir(digits_run_dir):
    """The tiny digits run the tests of evaluation share (tests/conftest.py)."""
    return digits_run_dir


def valid_points(run_dir, n):
    run = Run.load(run_dir)
    return run, load_data(run.config.data).valid[:n]


@pytest.mark.slow
def test_is_from_the_command_line_is_the_python_estimate(run_dir, capsys):
    capsys.readouterr()
    argv = ["--samples", "64", "--points", "50", "--chunk-size", "16", "--seed", "3"]
    assert main(["evaluate", str(run_dir), *argv]) == 0
    out = capsys.readouterr().out
    path = run_dir / "evaluation-is-valid.json"
    assert out.splitlines()[-1] == str(path) and "samples = 64" in out
    result = json.loads(path.read_text())
    # the same keyed draws in Python, another chunk size: the same numbers
    run, x = valid_points(run_dir, 50)
    ours = pyro_vae.importance_sampling(run.vae.model, run.vae.guide, x, seed=3, samples=64, chunk_size=64)
    torch.testing.assert_close(torch.tensor(result["log_px_per_point"]), ours.log_px, rtol=0, atol=1e-4)
    assert result["log_px"] == pytest.approx(ours.mean, abs=1e-4)
    assert result["log_px_stderr"] == pytest.approx(ours.stderr, rel=1e-4)
    errors = torch.tensor([math.nan if e is None else e for e in result["mc_stderr_per_point"]])
    torch.testing.assert_close(errors, ours.mc_stderr.float(), rtol=1e-3, atol=0, equal_nan=True)
    k_hat = torch.tensor([math.nan if k is None else k for k in result["pareto_k_per_point"]])
    torch.testing.assert_close(k_hat, ours.pareto_k.float(), rtol=1e-3, atol=0, equal_nan=True)
    assert result["untrusted_points"] == int((~ours.trusted).sum())
    assert result["ess_min"] == pytest.approx(ours.ess.min().item(), rel=1e-4)
    assert result["points"] == 50 and result["num_samples"] == 64 and result["estimator"] == "is"
    elbo = pyro_vae.measure(run.vae.model, run.vae.guide, x, seed=3)
    assert result["elbo"] == pytest.approx(elbo.elbo, rel=1e-6)
    assert result["active_units"] == int((run.vae.encode(x).var(0) > 0.01).sum())


def test_ais_from_the_command_line_is_the_python_estimate(run_dir, capsys):
    capsys.readouterr()
    argv = ["--estimator", "ais", "--points", "10", "--steps", "20", "--chains", "3", "--leapfrog", "2"]
    assert main(["evaluate", str(run_dir), *argv, "--option", "step_size=0.02"]) == 0
    assert "estimator ais (chains = 3, steps = 20, leapfrog = 2, step_size = 0.02" in capsys.readouterr().out
    result = json.loads((run_dir / "evaluation-ais-valid.json").read_text())
    assert result["options"] == {
        "chains": 3,
        "steps": 20,
        "leapfrog": 2,
        "step_size": 0.02,
        "adapt": True,
        "target_acceptance": 0.65,
        "reverse_from": None,
    }
    run, x = valid_points(run_dir, 10)
    ours = pyro_vae.ais(
        run.vae.model, run.vae.guide, x, seed=0, chains=3, steps=20, leapfrog=2, step_size=0.02
    )
    torch.testing.assert_close(torch.tensor(result["log_px_per_point"]), ours.log_px, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--samples", "0"], "--samples = 0 is not allowed"),
        (["--points", "-3"], "--points = -3"),
        (["--device", "gpu"], '--device = "gpu"'),
        (["--estimator", "ais", "--samples", "5"], 'unknown key --estimator.samples for estimator "ais"'),
        (["--option", "chunk_size"], "--option 'chunk_size': expected KEY=VALUE"),
    ],
    ids=["samples", "points", "device", "option-of-another", "option-without-value"],
)
def test_bad_evaluate_input_is_one_line(run_dir, argv, fragment, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-vae: error: ") and fragment in err[0], err


@pytest.mark.parametrize(
    ("estimator", "options", "message"),
    [
        ("is", {"samples": 0}, 'estimator "is": option samples = 0 is not allowed: expected an integer >= 1'),
        ("ais", {"samples": 5}, 'estimator "ais": option samples is unknown'),
        ("nosuch", {}, 'estimator = "nosuch" is not a known estimator'),
    ],
    ids=["value", "unknown", "name"],
)
def test_evaluate_run_refuses_options_in_the_estimators_terms(run_dir, estimator, options, message):
    """From Python the refusal names the estimator's option, not the flag that sets it."""
    before = sorted(run_dir.iterdir())
    with pytest.raises(pyro_vae.ConfigError) as info:
        pyro_vae.evaluate_run(run_dir, estimator=estimator, options=options)
    assert str(info.value).startswith(message) and "--" not in str(info.value)
    assert sorted(run_dir.iterdir()) == before


def test_evaluate_needs_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_on_a_test_split(tmp_path, capsys):
    """A .npz with a test array: evaluate --split test measures exactly those points."""
    rng = np.random.default_rng(0)
    arrays = {
        name: (rng.random((n, 16)) < 0.3).astype(np.uint8)
        for name, n in (("train", 200), ("valid", 40), ("test", 30))
    }
    np.savez(tmp_path / "data.npz", **arrays)
    run_dir = tmp_path / "run"
    argv = [
        "--data.path",
        str(tmp_path / "data.npz"),
        "--model.likelihood.kind",
        "bernoulli",
        "--train.epochs",
        "1",
    ]
    assert main(["train", *argv, *TINY, "--train.run_dir", str(run_dir), "--quiet"]) == 0
    assert main(["evaluate", str(run_dir), "--split", "test", "--samples", "10"]) == 0
    result = json.loads((run_dir / "evaluation-is-test.json").read_text())
    run = Run.load(run_dir)
    test = torch.as_tensor(arrays["test"], dtype=torch.float32)
    ours = pyro_vae.importance_sampling(run.vae.model, run.vae.guide, test, seed=0, samples=10)
    assert result["split"] == "test" and result["log_px"] == pytest.approx(ours.mean, abs=1e-4)
    capsys.readouterr()


def test_evaluate_refuses_a_missing_test_split(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--split", "test"]) == 2
    assert "no test split" in capsys.readouterr().err


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    """A linear-Gaussian VAE (linear decoder, fixed σ) trained briefly: its log p(x) is closed-form
    from its own decoder, log N(x; b, W Wᵀ + σ² I), whatever training did."""
    root = tmp_path_factory.mktemp("linear")
    g = torch.Generator().manual_seed(0)
    w = 0.5 * torch.randn(6, 2, generator=g)  # a broad posterior: the prior is a fair proposal
    x = torch.randn(400, 2, generator=g) @ w.T + 0.5 * torch.randn(400, 6, generator=g)
    np.save(root / "x.npy", x.numpy())
    (root / "plugin.py").write_text(PRIOR_IS)
    config = root / "linear.toml"
    config.write_text(
        f'plugins = ["plugin.py"]\n[data]\nname = "linear"\npath = "{root / "x.npy"}"\n'
        '[model]\nlatent_dim = 2\nlikelihood = { kind = "gaussian", scale = 0.5 }\n'
        'encoder = { kind = "mlp", hidden = [] }\ndecoder = { kind = "mlp", hidden = [] }\n'
        "[train]\nepochs = 2\nbatch_size = 50\nlr = 0.01\n"
    )
    return root, config


def closed_form(run_dir, n=None):
    run = Run.load(run_dir)
    x = load_data(run.config.data).valid[:n].double()
    layer = run.vae.decoder[0]
    w, b = layer.weight.detach().double(), layer.bias.detach().double()
    return MultivariateNormal(b, w @ w.T + 0.25 * torch.eye(6, dtype=torch.float64)).log_prob(x).mean().item()


@pytest.mark.slow
def test_a_user_registered_estimator_runs_from_the_command_line(linear_run, capsys, scoped_registries):
    root, config = linear_run
    run_dir = root / "run"
    assert main(["train", "--config", str(config), "--train.run_dir", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    argv = ["--estimator", "prior_is", "--samples", "20000", "--batch-size", "40"]
    assert main(["evaluate", str(run_dir), *argv]) == 0  # the run's own plugins name it
    result = json.loads((run_dir / "evaluation-prior_is-valid.json").read_text())
    exact = closed_form(run_dir)
    # the prior is a poor proposal for the points far from the data's centre: Pareto k̂ names them
    assert result["untrusted_points"] < 4 and result["log_px_mc_stderr"] < 0.05
    assert all(u["why"].startswith("its weights' tail is too heavy: k̂ = ") for u in result["untrusted"])
    assert abs(result["log_px"] - exact) < 4 * result["log_px_mc_stderr"], (result["log_px"], exact)
    # and by name from --plugins, for a run that does not know it: the same numbers
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                *argv,
                "--plugins",
                str(root / "plugin.py"),
                "--out",
                str(root / "o.json"),
            ]
        )
        == 0
    )
    assert json.loads((root / "o.json").read_text())["log_px"] == result["log_px"]


@pytest.mark.slow
def test_a_user_registered_estimator_measures_a_comparison(linear_run, capsys, scoped_registries):
    root, config = linear_run
    out = root / "comparison"
    argv = [
        "--config",
        str(config),
        "--objectives",
        "elbo",
        "--estimator",
        "prior_is",
        "--eval-samples",
        "20000",
    ]
    assert main(["compare", *argv, "--out", str(out), "--quiet"]) == 0
    row = json.loads((out / "comparison.json").read_text())["runs"][0]
    assert row["estimator"] == "prior_is"
    exact = closed_form(out / "runs" / "elbo-seed0")
    assert abs(row["log_px"] - exact) < 4 * row["log_px_mc_stderr"], (row["log_px"], exact)
    assert "the estimator prior_is (samples = 20000)" in capsys.readouterr().out
