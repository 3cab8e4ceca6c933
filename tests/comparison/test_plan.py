"""What a comparison will do, decided before anything is written (:mod:`pyro_vae.comparison.plan`):
its runs, their seeds, configs and guides, the runs measured already, and bad input refused with
the directory untouched."""

import json
import re

import numpy as np
import pytest
import torch

from pyro_vae import Config
from pyro_vae.comparison.one_run import RESULT, write_result
from pyro_vae.comparison.plan import MAX_EPOCHS, plan_comparison
from pyro_vae.core.errors import ConfigError, DataError, RunDirError
from pyro_vae.data.datasets import load_data
from tests.helpers import snapshot

N, D, POINTS, SEED = 50, 6, 8, 5


@pytest.fixture
def base(tmp_path) -> Config:
    """A small base config on 50 points of 6 values from a file (20 held out), seed 5."""
    path = tmp_path / "toy.npy"
    np.save(path, np.random.default_rng(0).normal(size=(N, D)).astype(np.float32))
    return Config().override(
        {
            "data.name": "toy",
            "data.path": str(path),
            "data.valid_fraction": 0.4,
            "model.encoder.hidden": [4],
            "model.decoder.hidden": [4],
            "train.seed": SEED,
            "train.device": "cpu",
        }
    )


def plan(config, out, objectives=("elbo", "iwae:k=3"), **kwargs):
    arguments = {
        "seeds": 2,
        "epochs": 3,
        "seconds": None,
        "estimator": "is",
        "estimator_options": None,
        "eval_samples": 7,
        "eval_points": POINTS,
        "out_dir": out,
        "overwrite": False,
        **kwargs,
    }
    return plan_comparison(config, list(objectives), **arguments)


def test_every_objective_is_planned_for_every_seed_seed_0_first(base, tmp_path):
    out = tmp_path / "cmp"
    p = plan(base, out, objectives=["elbo", "iwae:k=3", "autoencoder"])
    ae = "autoencoder (delta guide)"  # its own guide, named in its label
    assert p.labels == ["elbo", "iwae:k=3", ae] and p.seeds == 2
    assert [(r.label, r.seed) for r in p.runs] == [
        ("elbo", 0),
        ("iwae:k=3", 0),
        (ae, 0),
        ("elbo", 1),
        ("iwae:k=3", 1),
        (ae, 1),
    ]
    kinds = {"elbo": "elbo", "iwae:k=3": "iwae", ae: "autoencoder"}
    names = {"elbo": "elbo", "iwae:k=3": "iwae_k=3", ae: "autoencoder"}
    for run in p.runs:
        c = run.config
        assert c.train.seed == SEED + run.seed  # seed s starts every objective alike
        assert c.objective.kind == kinds[run.label]
        assert run.label != "iwae:k=3" or c.objective.params["particles"] == 3
        assert c.model.guide.kind == ("delta" if run.label == ae else "normal")
        assert c.train.run_dir == str(out / "runs" / f"{names[run.label]}-seed{run.seed}")
        assert c.train.epochs == 3 and c.train.max_seconds is None
        # the rest is the base's
        assert c.model.encoder.params["hidden"] == [4] and c.data.path == base.data.path
        assert run.row is None  # nothing measured yet
    # the two runs of one objective differ in their seed and directory alone
    elbo = [run.config.to_dict() for run in p.runs if run.label == "elbo"]
    for values in elbo:
        del values["train"]["seed"], values["train"]["run_dir"]
    assert elbo[0] == elbo[1]


def test_the_plan_holds_the_yardstick_and_the_request_each_run_answers(base, tmp_path):
    out = tmp_path / "cmp"
    p = plan(base, out)
    assert (p.estimator, p.options["samples"]) == ("is", 7)
    assert p.device == torch.device("cpu") and p.out == out
    assert p.base.train.epochs == 3 and p.base.train.seed == SEED
    assert torch.equal(p.x, load_data(base.data).valid[:POINTS]) and p.x.shape == (POINTS, D)
    assert torch.equal(p.data.valid, load_data(base.data).valid)
    for run in p.runs:
        config = run.config.to_dict()
        del config["train"]["run_dir"]  # a moved comparison answers the same request
        estimator = {"kind": "is", **p.options}
        assert run.request == {"config": config, "estimator": estimator, "eval_points": POINTS}
    # the directory is made, and nothing is written in it
    assert out.is_dir() and snapshot(out) == {}


@pytest.mark.parametrize(
    ("epochs", "seconds", "want_epochs", "want_seconds"),
    [
        pytest.param(4, None, 4, None, id="epochs"),
        pytest.param(None, 0.5, MAX_EPOCHS, 0.5, id="seconds"),
        pytest.param(4, 0.5, 4, 0.5, id="both"),
        pytest.param(None, None, 300, None, id="the-configs"),
    ],
)
def test_every_run_gets_the_same_budget(base, tmp_path, epochs, seconds, want_epochs, want_seconds):
    p = plan(base, tmp_path / "cmp", epochs=epochs, seconds=seconds)
    for config in (p.base, *(run.config for run in p.runs)):
        assert (config.train.epochs, config.train.max_seconds) == (want_epochs, want_seconds)


def test_a_default_out_dir_is_a_fresh_one_under_comparisons(base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = plan(base, None, seeds=1)
    assert p.out.parent.as_posix() == "comparisons" and p.out.name.startswith("toy-")
    assert p.out.is_dir()


# ---------------------------------------------------------------------------------------------
# Runs measured already
# ---------------------------------------------------------------------------------------------


def test_a_run_measured_for_the_same_request_is_finished(base, tmp_path):
    out = tmp_path / "cmp"
    first = plan(base, out)
    done = first.runs[3]  # iwae:k=3, seed 1
    (out / "runs" / "iwae_k=3-seed1").mkdir(parents=True)
    write_result(out / "runs" / "iwae_k=3-seed1", done.request, {"log_px": -1.5, "epochs": 3})
    damaged = out / "runs" / "elbo-seed0"
    damaged.mkdir(parents=True)
    (damaged / RESULT).write_text('{"request": ')  # as if torn: measured again
    again = plan(base, out)
    assert [run.row for run in again.runs] == [None, None, None, {"log_px": -1.5, "epochs": 3}]
    # a moved comparison: the same request, its runs in their new place
    moved = tmp_path / "moved"
    moved.mkdir()
    (out / "runs").rename(moved / "runs")
    assert plan(base, moved).runs[3].row == {"log_px": -1.5, "epochs": 3}


def test_a_run_measured_for_another_request_is_refused_unless_overwrite(base, tmp_path):
    out = tmp_path / "cmp"
    done = plan(base, out).runs[0]  # elbo, seed 0
    (out / "runs" / "elbo-seed0").mkdir(parents=True)
    write_result(out / "runs" / "elbo-seed0", done.request, {"log_px": -1.5})
    before = snapshot(tmp_path)
    changed = base.override({"train.lr": 0.002})
    with pytest.raises(RunDirError, match=r"elbo-seed0.*config\.train\.lr = 0\.001 → 0\.002.*--overwrite"):
        plan(changed, out)
    with pytest.raises(RunDirError, match="another config"):  # measured otherwise: 5 points
        plan(base, out, eval_points=5)
    assert snapshot(tmp_path) == before
    assert [run.row for run in plan(changed, out, overwrite=True).runs] == [None] * 4
    assert plan(base, out).runs[0].row == {"log_px": -1.5}  # overwrite removes nothing while planning


def test_a_divergence_is_kept_as_the_result_unless_retried(base, tmp_path):
    out = tmp_path / "cmp"
    run = plan(base, out, objectives=["elbo"], seeds=1).runs[0]
    (out / "runs" / "elbo-seed0").mkdir(parents=True)
    row = {"status": "diverged", "diverged_epoch": 2, "diverged_loss": "nan", "epochs": None, "step": 12}
    write_result(out / "runs" / "elbo-seed0", run.request, row)
    assert plan(base, out, objectives=["elbo"], seeds=1).runs[0].row == row
    assert plan(base, out, objectives=["elbo"], seeds=1, retry_diverged=True).runs[0].row is None
    measured = {"status": "measured", "log_px": -1.5, "epochs": 3, "step": 30}
    write_result(out / "runs" / "elbo-seed0", run.request, measured)  # retried: a number kept
    assert plan(base, out, objectives=["elbo"], seeds=1, retry_diverged=True).runs[0].row == measured


def test_a_run_trained_further_since_its_result_is_measured_again(base, tmp_path):
    out = tmp_path / "cmp"
    run = plan(base, out, objectives=["elbo"], seeds=1).runs[0]
    run_dir = out / "runs" / "elbo-seed0"
    run_dir.mkdir(parents=True)
    write_result(run_dir, run.request, {"status": "measured", "log_px": -1.5, "epochs": 3, "step": 30})
    lines = [json.dumps({"epoch": e, "step": 10 * e}) + "\n" for e in range(5)]
    (run_dir / "metrics.jsonl").write_text("".join(lines[:4]))  # as measured
    again = plan(base, out, objectives=["elbo"], seeds=1).runs[0]
    assert (again.row, again.remeasure) == (
        {"status": "measured", "log_px": -1.5, "epochs": 3, "step": 30},
        False,
    )
    (run_dir / "metrics.jsonl").write_text("".join(lines))  # pyro-vae train --resume: one epoch more
    again = plan(base, out, objectives=["elbo"], seeds=1).runs[0]
    assert (again.row, again.remeasure) == (None, True)


@pytest.mark.parametrize("form", ["dict", "toml", "json"])
def test_the_base_config_may_be_a_dict_or_a_file(base, tmp_path, form):
    if form == "dict":
        given = base.to_dict()
    else:
        given = str(tmp_path / f"base.{form}")
        base.save(given)
    assert plan(given, tmp_path / "cmp").base == plan(base, tmp_path / "other").base


def test_a_base_config_of_another_type_is_refused_naming_what_is_accepted(tmp_path):
    with pytest.raises(TypeError) as e:
        plan(["elbo"], tmp_path / "cmp")
    assert str(e.value) == (
        "config must be a Config, a dict of sections, a path to a .toml or .json file, or None; got list"
    )
    assert not (tmp_path / "cmp").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: refused before anything is written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"objectives": []}, "no objectives to compare", id="no-objectives"),
        pytest.param({"objectives": ["elbo", "elbo"]}, "'elbo' is given twice", id="twice"),
        pytest.param({"objectives": ["elbo", "iwea:k=5"]}, "iwea:k=5", id="unknown"),
        pytest.param({"objectives": ["iwae:k=0"]}, "objective.particles = 0", id="bad-option"),
        pytest.param({"seeds": 0}, "seeds = 0", id="no-seeds"),
        pytest.param({"epochs": 0}, "epochs = 0", id="no-epochs"),
        pytest.param({"seconds": -1.0}, "seconds = -1", id="no-seconds"),
        pytest.param({"eval_samples": 0}, "eval_samples = 0", id="no-samples"),
        pytest.param({"eval_points": 0}, "eval_points = 0", id="no-points"),
        pytest.param({"estimator": "nosuch"}, '"nosuch" is not a known estimator', id="estimator"),
        pytest.param({"estimator_options": {"samples": 0}}, "option samples = 0", id="estimator-option"),
        pytest.param({"estimator_options": {"nosuch": 1}}, "option nosuch is unknown", id="unknown-option"),
    ],
)
def test_bad_arguments_are_refused_with_nothing_written(base, tmp_path, change, message):
    before = snapshot(tmp_path)
    arguments = {"objectives": ["elbo"], **change}
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan(base, tmp_path / "cmp", **arguments)
    assert snapshot(tmp_path) == before and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        pytest.param(
            {"model.guide.kind": "delta"},
            ConfigError,
            'objective.kind = "elbo" needs the density',
            id="delta-elbo",
        ),
        pytest.param({"data.path": "absent.npy"}, DataError, "absent.npy", id="absent-data"),
        pytest.param({"train.device": "cuda:7"}, ConfigError, 'train.device = "cuda:7" but', id="device"),
    ],
)
def test_a_bad_base_config_is_refused_with_nothing_written(base, tmp_path, overrides, error, message):
    config = base.override(overrides)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=re.escape(message)):
        plan(config, tmp_path / "cmp", objectives=["elbo", "autoencoder"])
    assert snapshot(tmp_path) == before and not (tmp_path / "cmp").exists()


def test_an_out_dir_that_is_a_file_is_refused_with_nothing_written(base, tmp_path):
    (tmp_path / "cmp").write_text("not a directory")
    before = snapshot(tmp_path)
    with pytest.raises(RunDirError, match=r"comparison directory .*cmp' is a file"):
        plan(base, tmp_path / "cmp")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("held", [["config.toml", "checkpoint.pt"], ["metrics.jsonl"]])
def test_an_out_dir_that_holds_a_training_run_is_refused_with_nothing_written(base, tmp_path, held):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in [*held, "samples.png", "reconstructions.png"]:
        (run_dir / name).write_bytes(b"the run's own")
    before = snapshot(tmp_path)
    with pytest.raises(RunDirError) as e:
        plan(base, run_dir)
    assert str(e.value) == (
        f"--out {str(run_dir)!r} is a training run's directory (it holds {', '.join(held)}), "
        "not a comparison's: choose another --out"
    )
    assert snapshot(tmp_path) == before
