"""``pyro-vae compare``: objectives trained alike and measured alike, resumable, with tiny budgets."""

import json
import math
import os
import shutil
import signal

import pyro
import pytest
import torch

from pyro_vae import Config, ConfigError, Run, compare
from pyro_vae.comparison import one_run as comparison_run
from pyro_vae.data.datasets import load_data
from pyro_vae.inference.measure import active_units, evaluate_elbo, measure
from pyro_vae.inference.objectives import parse_objective
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.step import TrainStep
from tests.helpers import PNG_MAGIC, run_cli

TINY = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]"]
FAST = ["--epochs", "2", "--eval-samples", "20", "--eval-points", "50", "--quiet", *TINY]
OUTPUTS = ("comparison.md", "comparison.csv", "comparison.json", "base_config.toml")
FIGURES = ("validation_curves.png", "log_likelihood.png")
NUMBERS = ("log_px", "valid_elbo", "recon", "kl", "seconds_per_epoch", "train_seconds", "peak_memory_mb")
MEASURES = ("log_px", "valid_elbo", "recon", "kl", "active_units", "epochs")


def compare_argv(out, objectives=("elbo", "iwae:k=3"), seeds=2, extra=()) -> list:
    return ["compare", "--objectives", *objectives, "--seeds", seeds, "--out", out, *FAST, *extra]


@pytest.fixture
def count_training(monkeypatch) -> list[str]:
    """The run directories that ``compare`` trains, in order."""
    trained, real = [], comparison_run.train

    def counting(config, **kwargs):
        trained.append(config.train.run_dir)
        return real(config, **kwargs)

    monkeypatch.setattr(comparison_run, "train", counting)
    return trained


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two objectives × two seeds, compared once and shared by the tests that read the result."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    code, stdout, stderr = run_cli(compare_argv(out))
    assert code == 0, stderr
    return out, stdout


# ---------------------------------------------------------------------------------------------
# What a comparison writes
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compare_writes_tables_figures_and_runs(finished):
    out, stdout = finished
    for name in (*OUTPUTS, *FIGURES):
        assert (out / name).is_file(), name
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert stdout.strip().endswith(str(out))
    assert (out / "comparison.md").read_text() in stdout

    result = json.loads((out / "comparison.json").read_text())
    assert result["eval_samples"] == 20 and result["eval_points"] == 50
    runs = result["runs"]
    assert sorted((r["objective"], r["seed"]) for r in runs) == [
        ("elbo", 0),
        ("elbo", 1),
        ("iwae:k=3", 0),
        ("iwae:k=3", 1),
    ]
    x = load_data(Config.load(out / "base_config.toml").data).valid[:50]  # the yardstick's points
    for r in runs:
        assert all(math.isfinite(r[k]) for k in NUMBERS), r
        assert r["epochs"] == 2
        assert r["valid_elbo"] == pytest.approx(r["recon"] - r["kl"], abs=1e-3)
        run_dir = out / "runs" / f"{r['objective'].replace(':', '_')}-seed{r['seed']}"
        assert r["run_dir"] == str(run_dir) and (run_dir / "result.json").is_file()
        # seed s initializes every objective's model alike; the run trained the objective named
        run_config = Config.load(run_dir / "config.toml")
        assert run_config.train.seed == r["train_seed"] == r["seed"]
        assert {"kind": run_config.objective.kind, **run_config.objective.params} == parse_objective(
            r["objective"]
        )[1]
        assert run_config.train.epochs == 2 and run_config.model.encoder.params["hidden"] == [16]

        # the row's numbers are those of the saved model, measured again independently
        vae = Run.load(run_dir).vae
        pyro.set_rng_seed(r["train_seed"])
        m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 20}, seed=r["train_seed"])
        assert r["active_units"] == active_units(vae.encode, x)
        for key in ("log_px", "log_px_stderr", "log_px_mc_stderr", "recon", "kl"):
            assert r[key] == pytest.approx(getattr(m, key), rel=1e-6, abs=1e-6), key
        assert (r["valid_elbo"], r["valid_elbo_stderr"]) == pytest.approx((m.elbo, m.elbo_stderr), rel=1e-6)
        # log p̂ (IWAE, K = 20) − ELBO has nonnegative expectation at every point: its mean over
        # the 50 points lies above −3 standard errors of that mean (a false alarm: p < 0.0014)
        elbo = evaluate_elbo(vae.model, vae.guide, x, seed=r["train_seed"] + 1)["elbo"]  # fresh draws
        gap = m.marginal.log_px - elbo
        assert gap.mean() > -3 * gap.std() / len(gap) ** 0.5, (gap.mean(), gap.std())
        assert torch.isfinite(gap).all()

    summary = {s["objective"]: s for s in result["summary"]}
    assert set(summary) == {"elbo", "iwae:k=3"}
    elbo_runs = [r["log_px"] for r in runs if r["objective"] == "elbo"]
    assert summary["elbo"]["log_px"] == pytest.approx(sum(elbo_runs) / 2)
    assert summary["elbo"]["log_px_se"] == pytest.approx(abs(elbo_runs[0] - elbo_runs[1]) / 2)

    table = [line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 3  # the header and one row per objective
    assert [line.split(" | ")[0] for line in table[1:]] == ["| elbo", "| iwae:k=3"]
    assert all("±" in line for line in table[1:])
    csv_lines = (out / "comparison.csv").read_text().splitlines()
    assert csv_lines[0].startswith("objective,seeds,log_px,log_px_se") and len(csv_lines) == 3
    assert Config.load(out / "base_config.toml").train.epochs == 2


# ---------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rerun_reuses_finished_runs_and_retrains_unfinished_ones(finished, tmp_path, count_training):
    out = tmp_path / "cmp"
    shutil.copytree(finished[0], out)  # a moved comparison resumes too
    table = (out / "comparison.md").read_text()
    rows = json.loads((out / "comparison.json").read_text())["runs"]

    code, _, err = run_cli(compare_argv(out))
    assert code == 0, err
    assert count_training == []
    assert (out / "comparison.md").read_text() == table

    (out / "runs" / "iwae_k=3-seed1" / "result.json").unlink()  # as if interrupted
    code, _, err = run_cli(compare_argv(out))
    assert code == 0, err
    assert count_training == [str(out / "runs" / "iwae_k=3-seed1")]
    # the same seed trains the same model; only its time and memory differ
    rows_now = json.loads((out / "comparison.json").read_text())["runs"]
    for now, then in zip(rows_now, rows, strict=True):
        assert {k: now[k] for k in MEASURES} == pytest.approx({k: then[k] for k in MEASURES})


@pytest.mark.slow
def test_a_comparison_interrupted_in_training_resumes_its_runs_exactly(finished, tmp_path, monkeypatch):
    step, calls = TrainStep.__call__, []

    def interrupting(self, x, **kwargs):
        loss = step(self, x, **kwargs)
        calls.append(1)
        if len(calls) == 3 * 17 + 5:  # in the second run, mid-epoch: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(TrainStep, "__call__", interrupting)
    out = tmp_path / "cmp"
    eager = ["--train.compile", "false"]  # every step through the patched TrainStep.__call__
    code, _, err = run_cli(compare_argv(out, extra=eager))
    assert code == 130
    line = err.strip().splitlines()[-1]
    assert line.startswith("pyro-vae: interrupted by SIGINT in the run iwae:k=3 seed 0")
    assert line.endswith(f"the comparison is in {out}: rerun the same command with --out {out} to resume it")
    interrupted = out / "runs" / "iwae_k=3-seed0"
    assert load_checkpoint(interrupted / "checkpoint.pt")["training"]["batch"] == 5
    assert not (interrupted / "result.json").exists()

    monkeypatch.setattr(TrainStep, "__call__", step)
    code, _, err = run_cli(compare_argv(out, extra=eager))
    assert code == 0, err
    for run in ("elbo-seed0", "iwae_k=3-seed0", "iwae_k=3-seed1"):  # as if never interrupted
        a = load_checkpoint(out / "runs" / run / "checkpoint.pt")
        b = load_checkpoint(finished[0] / "runs" / run / "checkpoint.pt")
        assert a["model"].keys() == b["model"].keys()
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), run
        assert a["training"]["step"] == b["training"]["step"]


@pytest.mark.slow
def test_a_changed_config_is_refused_unless_overwrite(finished, tmp_path, count_training):
    out = tmp_path / "cmp"
    shutil.copytree(finished[0], out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = compare_argv(out, objectives=["elbo"], seeds=1, extra=["--train.lr", "0.002"])

    code, _, err = run_cli(argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "elbo-seed0" in err and "config.train.lr = 0.001 → 0.002" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert count_training == []

    code, _, err = run_cli([*argv, "--overwrite"])
    assert code == 0, err
    assert count_training == [str(out / "runs" / "elbo-seed0")]


@pytest.mark.slow
def test_a_run_extended_by_train_resume_is_measured_again(finished, tmp_path, count_training):
    out = tmp_path / "cmp"
    shutil.copytree(finished[0], out)
    rows = {(r["objective"], r["seed"]): r for r in json.loads((out / "comparison.json").read_text())["runs"]}
    extended = out / "runs" / "elbo-seed1"
    argv = ["train", "--resume", extended, "--train.epochs", "3", "--train.compile", "false", "--quiet"]
    code, _, err = run_cli(argv)
    assert code == 0, err

    code, _, err = run_cli(compare_argv(out))
    assert code == 0, err
    assert count_training == []  # measured again, not trained again
    now = {(r["objective"], r["seed"]): r for r in json.loads((out / "comparison.json").read_text())["runs"]}
    assert now["elbo", 1]["epochs"] == 3 and now["elbo", 1]["step"] == Run.load(extended).history[-1]["step"]
    assert now["elbo", 1]["peak_memory_mb"] is None  # not seen by this process
    x = load_data(Config.load(out / "base_config.toml").data).valid[:50]
    vae = Run.load(extended).vae
    pyro.set_rng_seed(1)
    m = measure(vae.model, vae.guide, x, estimator="is", options={"samples": 20}, seed=1)
    assert now["elbo", 1]["log_px"] == pytest.approx(m.log_px, rel=1e-6)
    assert now["elbo", 1]["log_px"] != pytest.approx(rows["elbo", 1]["log_px"], rel=1e-6)
    assert json.loads((extended / "result.json").read_text())["row"] == now["elbo", 1]  # kept from now on
    for key in set(rows) - {("elbo", 1)}:
        assert now[key] == rows[key], key
    elbo = next(
        line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| elbo")
    )
    assert elbo.split(" | ")[7] == "2.5 ± 0.5"  # epochs: 2 and 3


@pytest.mark.slow
def test_a_diverging_objective_is_a_result_and_the_others_go_on(tmp_path, count_training):
    out = tmp_path / "cmp"
    argv = compare_argv(out, ["beta:beta=1e38", "elbo"], 1, ["--epochs", "1", "--train.compile", "false"])
    code, stdout, err = run_cli(argv)
    assert code == 0, err
    runs = out / "runs"
    assert count_training == [str(runs / "beta_beta=1e38-seed0"), str(runs / "elbo-seed0")]  # on after it
    row = json.loads((runs / "beta_beta=1e38-seed0" / "result.json").read_text())["row"]
    assert (row["status"], row["diverged_epoch"], row["epochs"]) == ("diverged", 1, None)
    assert row["diverged_loss"] in ("nan", "inf") and row["log_px"] is None
    where = runs / "beta_beta=1e38-seed0" / "result.json"
    loss = row["diverged_loss"]
    said = f"pyro-vae: warning: beta:beta=1e38 seed 0 diverged in epoch 1 (the loss is {loss}); "
    said += f"recorded in {where}"
    assert err.splitlines() == [said]  # with --quiet too
    table = (out / "comparison.md").read_text()
    assert "| beta:beta=1e38 | 0 (+ 1 diverged) | diverged in epoch 1 | — |" in table and table in stdout
    measured = [
        r
        for r in json.loads((out / "comparison.json").read_text())["runs"]
        if r["objective"] != "beta:beta=1e38"
    ]
    assert [(r["objective"], r["status"], r["epochs"]) for r in measured] == [("elbo", "measured", 1)]
    for name in (*FIGURES, "samples.png", "reconstructions.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name

    code, _, err = run_cli(argv)  # the divergence is the result: kept, not retrained
    assert code == 0, err
    assert len(count_training) == 2
    assert err.splitlines() == [f"{said}; kept as its result: pass --retry-diverged to train it again"]
    assert (out / "comparison.md").read_text() == table

    code, _, err = run_cli([*argv, "--retry-diverged"])
    assert code == 0, err
    assert count_training[2:] == [str(runs / "beta_beta=1e38-seed0")]
    assert err.splitlines() == [said]


def test_an_out_that_is_a_training_run_is_refused_before_anything_is_written(tmp_path, count_training):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.toml", "checkpoint.pt", "metrics.jsonl", "samples.png", "reconstructions.png"):
        (run_dir / name).write_bytes(b"the run's own")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, stdout, err = run_cli(compare_argv(run_dir, ["elbo"], 1))
    assert (code, stdout) == (2, "")
    assert err == (
        f"pyro-vae: error: --out {str(run_dir)!r} is a training run's directory (it holds config.toml, "
        "checkpoint.pt, metrics.jsonl), not a comparison's: choose another --out\n"
    )
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert count_training == []


# ---------------------------------------------------------------------------------------------
# Budgets and bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_wall_clock_budget_is_the_same_for_every_run(tmp_path):
    config = Config().override({"model.encoder.hidden": [16], "model.decoder.hidden": [16]})
    result = compare(
        config,
        ["elbo", "iwae:k=2"],
        seeds=2,
        seconds=0.5,
        eval_samples=5,
        eval_points=20,
        out_dir=tmp_path / "cmp",
        quiet=True,
    )
    rows = {(row["objective"], row["seed"]): row for row in result.rows}
    assert sorted(rows) == [("elbo", 0), ("elbo", 1), ("iwae:k=2", 0), ("iwae:k=2", 1)]
    for row in rows.values():
        assert row["epochs"] >= 1
        assert 0.5 <= row["train_seconds"] <= 30
    assert "0.5 s of training" in result.markdown

    # seed s starts every objective from the same model: the same initial validation metrics
    # (measured before any step, with noise keyed by the seed), and another seed starts elsewhere
    initial = {key: Run.load(row["run_dir"]).history[0] for key, row in rows.items()}
    metrics = ("valid_elbo", "valid_recon", "valid_kl", "valid_elbo_stderr")
    for key, row in initial.items():
        assert row["epoch"] == 0 and row["step"] == 0, key
    for s in (0, 1):
        assert [initial["elbo", s][k] for k in metrics] == [initial["iwae:k=2", s][k] for k in metrics]
    assert initial["elbo", 0]["valid_elbo"] != initial["elbo", 1]["valid_elbo"]


@pytest.mark.parametrize(
    ("words", "named"),
    [
        pytest.param(["--objectives", "elbo", "iwea:k=5"], ["iwea:k=5", "known objective"], id="unknown"),
        pytest.param(["--objectives", "iwae:q=5"], ["iwae:q=5", "objective.q"], id="bad-option"),
        pytest.param(["--objectives", "iwae:k=0"], ["iwae:k=0", "objective.particles = 0"], id="bad-value"),
        pytest.param(["--objectives", "iwae:k"], ["iwae:k", "NAME:key=value"], id="no-value"),
        pytest.param(["--objectives", "renyi:alpha=1"], ["objective.alpha = 1", "!= 1"], id="alpha-one"),
        pytest.param(["--objectives", "elbo", "elbo"], ["'elbo' is given twice"], id="twice"),
        pytest.param(["--objectives", "elbo", "--seeds", "0"], ["seeds = 0"], id="no-seeds"),
        pytest.param(["--objectives", "elbo", "--seconds", "0"], ["seconds = 0"], id="no-seconds"),
        pytest.param(["--objectives", "elbo", "--train.lr", "-1"], ["train.lr"], id="override"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(words, named, tmp_path):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", *words, "--out", out, "--epochs", "1", "--quiet"])
    assert code == 2
    assert stdout == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("pyro-vae: error: ")
    assert all(fragment in err for fragment in named), err
    assert not out.exists()


@pytest.mark.parametrize(
    ("estimator", "options", "message"),
    [
        pytest.param("is", {"samples": 0}, 'estimator "is": option samples = 0 is not allowed', id="value"),
        pytest.param("ais", {"samples": 5}, 'estimator "ais": option samples is unknown', id="unknown"),
        pytest.param("nosuch", {}, 'estimator = "nosuch" is not a known estimator', id="name"),
    ],
)
def test_estimator_options_are_refused_in_the_estimators_terms(tmp_path, estimator, options, message):
    """From Python the refusal names the estimator's option, not a command-line flag."""
    out = tmp_path / "cmp"
    with pytest.raises(ConfigError, match=message):
        compare(None, ["elbo"], estimator=estimator, estimator_options=options, out_dir=out, quiet=True)
    assert not out.exists()


def test_objective_words():
    assert parse_objective("iwae:k=5") == ("iwae:k=5", parse_objective({"kind": "iwae", "particles": 5})[1])
    label, spec = parse_objective(" renyi: alpha=0.5, k=10 ")
    assert label == "renyi:alpha=0.5,k=10"
    assert (spec["kind"], spec["alpha"], spec["particles"]) == ("renyi", 0.5, 10)
    assert parse_objective({"kind": "beta", "beta": 2.0})[0] == "beta:beta=2.0"
    assert parse_objective("meanfield")[0] == "meanfield"
    with pytest.raises(ConfigError, match="particles is given twice"):
        parse_objective("iwae:k=5,particles=5")
    with pytest.raises(ConfigError, match=r"objective 'iwae:k=2,k=3': particles is given twice"):
        parse_objective("iwae:k=2,k=3")  # the same key twice, not the last one silently


def test_compare_refuses_a_config_it_cannot_read_as_one(tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(TypeError) as e:
        compare(42, ["elbo"], out_dir=out, quiet=True)
    assert str(e.value).startswith("config must be a Config, a dict of sections, a path to a .toml or .json")
    assert not out.exists()
