"""Every command on each example graph and on a registered program, tiny: train, evaluate,
sample, resume and compare from the command line, as a new user would."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import PNG_MAGIC, run_cli

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "examples" / "graphs"
TINY = ["--data.name", "digits", "--train.epochs", "1", "--train.batch-size", "200"]


def train(run: Path, *args) -> None:
    code, _, err = run_cli(["train", *args, *TINY, "--train.run-dir", run, "--quiet"])
    assert code == 0, err


def evaluate(run: Path) -> dict:
    code, out, err = run_cli(["evaluate", run, "--samples", "30", "--points", "20"])
    assert code == 0, err
    return json.loads(Path(out.strip().splitlines()[-1]).read_text())


@pytest.mark.parametrize(
    "example", ["m2_semi_supervised", "cvae_label", "cvae_completion", "gmvae", "two_layer"]
)
def test_each_example_graph_trains_evaluates_and_draws(tmp_path, example):
    run = tmp_path / "run"
    labels = ["--data.labels", "20"] if example == "m2_semi_supervised" else []
    train(run, "--config", GRAPHS / f"{example}.toml", *labels)
    assert {"config.toml", "metrics.jsonl", "checkpoint.pt"} <= {p.name for p in run.iterdir()}
    record = evaluate(run)
    measured = {"cvae_label": "log p(x | y)", "cvae_completion": "log p(bottom | top)"}
    assert record["measures"] == measured.get(example, "log p(x)")
    # importance sampling's bound is the ELBO's with K samples: above it, up to the spread over points
    assert np.isfinite(record["log_px"]) and record["log_px"] >= record["elbo"] - 4 * record["elbo_stderr"]
    code, out, err = run_cli(["sample", run, "-n", "20"])
    assert code == 0, err
    assert Path(out.strip()).read_bytes().startswith(PNG_MAGIC)
    code, out, err = run_cli(["interpolate", run, "--pairs", "2", "--steps", "3"])
    assert code == 0, err
    assert Path(out.strip()).read_bytes().startswith(PNG_MAGIC)
    code, _, err = run_cli(["train", "--resume", run, "--train.epochs", "2", "--quiet"])
    assert code == 0, err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    if example == "m2_semi_supervised":
        assert all(0 <= r["valid_accuracy"] <= 1 for r in rows)


def test_a_class_is_drawn_on_demand(tmp_path):
    run = tmp_path / "run"
    train(run, "--config", GRAPHS / "cvae_label.toml")
    code, out, err = run_cli(["sample", run, "--given", "y=3", "-n", "5", "--out", tmp_path / "three.npy"])
    assert code == 0, err
    assert np.load(out.strip()).shape == (5, 64)
    code, _, err = run_cli(["sample", run, "--given", "y=10"])
    assert code == 2 and "--given y=10 is not allowed: expected a class from 0 to 9" in err
    code, _, err = run_cli(["sample", run, "--given", "z=1"])
    assert code == 2 and "z is not a class of the model; its classes: y" in err
    compared = tmp_path / "cmp"
    words = ["--objectives", "elbo", "--seeds", "1", "--eval-samples", "10", "--out", compared]
    code, _, err = run_cli(["compare", "--config", GRAPHS / "cvae_label.toml", *words, *TINY])
    assert code == 0, err
    assert "| objective | seeds | log p(x \\| y) | ELBO |" in (compared / "comparison.md").read_text()


@pytest.mark.usefixtures("scoped_registries")
def test_a_registered_program_is_a_model_like_any_other(tmp_path):
    """Pyro's CVAE written as a program in a plugin file: the run records and rebuilds it, and
    evaluate, sample and compare work on it."""
    run, plugin = tmp_path / "run", ROOT / "examples" / "programs" / "cvae.py"
    train(run, "--plugins", plugin, "--model.program.kind", "cvae", "--model.program.latent", "4")
    saved = (run / "config.toml").read_text()
    assert '[model.program]\nkind = "cvae"\nlatent = 4\nhidden = 256' in saved
    record = evaluate(run)
    assert np.isfinite(record["log_px"])
    code, out, err = run_cli(["sample", run, "-n", "6", "--out", tmp_path / "s.npy"])
    assert code == 0, err
    assert np.load(out.strip()).shape == (6, 64)
    code, out, err = run_cli(
        [
            "compare",
            "--plugins",
            plugin,
            "--model.program.kind",
            "cvae",
            "--objectives",
            "elbo",
            "iwae:k=2",
            *TINY,
            "--seeds",
            "1",
            "--eval-samples",
            "20",
            "--out",
            tmp_path / "cmp",
        ]
    )
    assert code == 0, err
    table = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert {row["guide"] for row in table["runs"]} == {"program"}


@pytest.mark.figures
@pytest.mark.usefixtures("scoped_registries")
def test_graph_and_program_runs_end_with_their_pictures(tmp_path):
    train(tmp_path / "graph", "--config", GRAPHS / "cvae_completion.toml")
    assert {"curves.png", "samples.png", "latent.png"} <= {p.name for p in (tmp_path / "graph").iterdir()}
    train(
        tmp_path / "program",
        "--plugins",
        ROOT / "examples" / "programs" / "cvae.py",
        "--model.program.kind",
        "cvae",
    )
    assert (tmp_path / "program" / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_graph_draws_the_declared_model_and_guide(tmp_path):
    pytest.importorskip("graphviz")
    code, out, err = run_cli(
        ["graph", GRAPHS / "gmvae.toml", "--data.name", "digits", "--out", tmp_path / "g.gv"]
    )
    assert code == 0, err
    model, guide = (Path(line).read_text() for line in out.split())
    assert "y -> z" in model and "z -> x" in model and "x [label=x fillcolor=gray" in model  # x observed
    assert "y -> z" in guide and "x [" not in guide  # the guide draws the latents only
    code, _, err = run_cli(["graph", GRAPHS / "gmvae.toml", "--out", tmp_path / "g.jpg"])
    assert code == 2 and "unknown format '.jpg'; allowed: .png, .svg, .pdf, .gv" in err


def test_a_picture_of_the_graph_without_graphviz_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    code, _, err = run_cli(
        ["graph", GRAPHS / "gmvae.toml", "--data.name", "digits", "--out", tmp_path / "g.png"]
    )
    assert code == 2 and "needs Graphviz's dot program (apt install graphviz); --out FILE.gv" in err
