"""What ``pyro-vae evaluate`` prints and records about its errors (pyro_vae/evaluation/summary.py
and evaluate.py): Pareto k̂, the untrusted points and why, and only the errors that exist."""

import json
import warnings

import pytest

from pyro_vae.cli.main import main


@pytest.fixture
def run_dir(digits_run_dir):
    return digits_run_dir


def evaluate(run_dir, tmp_path, capsys, *argv):
    capsys.readouterr()
    out = tmp_path / "e.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw PyTorch warning reaches the user
        assert main(["evaluate", str(run_dir), "--out", str(out), "--quiet", *argv]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    return printed.out.splitlines()[0], json.loads(out.read_text())


def test_k_hat_is_recorded_and_heavy_tails_are_named(run_dir, tmp_path, capsys):
    # fewer points than pooling takes (pooled_tail.MIN_POINTS): each point's own k̂, some light
    line, r = evaluate(run_dir, tmp_path, capsys, "--samples", "100", "--points", "19")
    k = r["pareto_k_per_point"]
    assert len(k) == 19 and r["pareto_k_max"] == max(k)
    heavy = [n for n, v in enumerate(k) if v > 0.7]
    assert r["heavy_tail_points"] == len(heavy) and heavy
    assert r["untrusted"] == [
        {"point": n, "why": f"its weights' tail is too heavy: k̂ = {k[n]:.2f} > 0.7"} for n in heavy
    ]
    assert [n for n, e in enumerate(r["mc_stderr_per_point"]) if e is None] == heavy
    assert r["untrusted_points"] == len(heavy) and "underflow" not in line
    assert f"Pareto k̂ max {max(k):.2f}, {len(heavy) / 19:.0%} of points above 0.7" in line
    assert (
        f"Monte-Carlo error of the mean at least {r['log_px_mc_stderr']:.2f}, from {19 - len(heavy)} points' "
        f"errors; {len(heavy)} unknown ({len(heavy)} whose weights' tail is too heavy" in line
    )


def test_one_sample_per_point_has_no_error_and_says_so(run_dir, tmp_path, capsys):
    line, r = evaluate(run_dir, tmp_path, capsys, "--samples", "1", "--points", "20")
    assert "Monte-Carlo error unavailable: 1 sample per point has no spread to estimate an error from" in line
    assert "underflow" not in line and "0.00;" not in line and "untrusted" not in line
    assert r["log_px_mc_stderr"] is None and r["untrusted_points"] is None and r["untrusted"] == []
    assert r["mc_error_unavailable"] and set(r["mc_stderr_per_point"]) == {None}


def test_one_point_has_no_spread_across_points_and_no_warning(run_dir, tmp_path, capsys):
    line, r = evaluate(run_dir, tmp_path, capsys, "--samples", "100", "--points", "1")
    assert "nan" not in line and "±" not in line.split("(")[0]
    assert line.startswith(f"log p(x) = {r['log_px']:.2f} nats (one point: no spread across points) (")
    assert "1 valid point;" in line and f"ELBO {r['elbo']:.2f};" in line
    assert r["log_px_stderr"] is None and r["elbo_stderr"] is None and r["active_units"] is None
