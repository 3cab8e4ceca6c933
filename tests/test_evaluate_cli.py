"""``pyro-vae evaluate``: importance-sampling log p(x) of a trained run, from the command line."""

import json
import math

import pytest

from pyro_vae.cli import main

TINY = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    assert main(["train", "--train.epochs", "3", "--train.run_dir", str(run_dir), *TINY, "--quiet"]) == 0
    return run_dir


def test_evaluate_writes_the_estimate_beside_the_run(run_dir, capsys):
    capsys.readouterr()
    code = main(["evaluate", str(run_dir), "--samples", "64", "--points", "50", "--chunk-size", "16"])
    out = capsys.readouterr().out
    assert code == 0
    path = run_dir / "evaluation-is-valid.json"
    assert out.splitlines()[-1] == str(path)
    assert "log p(x) = " in out and "K = 64" in out
    result = json.loads(path.read_text())
    assert result["points"] == 50 and result["num_samples"] == 64
    assert len(result["log_px_per_point"]) == 50
    assert all(math.isfinite(result[k]) for k in ("log_px", "log_px_stderr", "elbo", "ess_mean"))
    assert 1 <= result["ess_min"] <= result["ess_mean"] <= 64
    # K = 64 importance samples bound log p(x) at least as tightly as one (the ELBO) on average:
    # the gap is a mean over 50 points of a nonnegative-in-expectation difference, ± ~1 nat
    assert result["log_px"] > result["elbo"] - 1.0


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--samples", "0"], "--samples = 0"),
        (["--points", "-3"], "--points = -3"),
        (["--device", "gpu"], '--device = "gpu"'),
    ],
    ids=["samples", "points", "device"],
)
def test_bad_evaluate_input_is_one_line(run_dir, argv, fragment, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-vae: error: ") and fragment in err[0]


def test_evaluate_needs_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_with_ais(run_dir, capsys):
    capsys.readouterr()
    argv = ["--estimator", "ais", "--points", "10", "--steps", "20", "--chains", "3", "--leapfrog", "2"]
    assert main(["evaluate", str(run_dir), *argv]) == 0
    out = capsys.readouterr().out
    assert "AIS, 3 chains x 20 steps" in out
    result = json.loads((run_dir / "evaluation-ais-valid.json").read_text())
    assert result["estimator"] == "ais" and result["ais"] == {"chains": 3, "steps": 20, "leapfrog": 2}
    assert math.isfinite(result["log_px"]) and len(result["log_px_per_point"]) == 10


def test_evaluate_on_a_test_split(tmp_path, capsys):
    """A .npz with a test array: evaluate --split test measures it; the digits have none."""
    import numpy as np

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
    assert result["split"] == "test" and result["points"] == 30
    capsys.readouterr()


def test_evaluate_refuses_a_missing_test_split(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--split", "test"]) == 2
    assert "no test split" in capsys.readouterr().err
