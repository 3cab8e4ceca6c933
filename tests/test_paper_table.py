"""examples/paper/ and benchmarks/paper_table.py: every row's config trains, and the table
trains, continues and reuses what it has (on small data, tiny networks)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from pyro_vae import Config, train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # as when it runs as a script: its helpers beside it
spec = importlib.util.spec_from_file_location("paper_table", ROOT / "benchmarks" / "paper_table.py")
assert spec is not None and spec.loader is not None
paper_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paper_table)

PAPER = ROOT / "examples" / "paper"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """300 training and 100 validation 28×28 binary images: strokes of 4 kinds, with noise."""
    rng = np.random.default_rng(0)
    kinds = np.zeros((4, 28, 28))
    kinds[0, :, 10:14] = kinds[1, 10:14, :] = kinds[3, 5:23, 5:23] = 1
    kinds[2][np.eye(28, dtype=bool)] = 1
    means = 0.05 + 0.9 * kinds.reshape(4, 784)

    def draw(n):
        return (rng.random((n, 784)) < means[rng.integers(4, size=n)]).astype(np.uint8)

    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, train=draw(300), valid=draw(100))
    return path


def tiny(config: Config, data: Path, **train) -> Config:
    """``config`` with networks of 16 units, 5 pseudo-inputs, on ``data``."""
    words = {"data.path": str(data), **{f"train.{k}": v for k, v in train.items()}}
    for part in ("encoder", "decoder", "inner"):
        words[f"model.{part}.hidden"] = [16]
    if config.model.prior.kind == "vamp":
        words["model.prior.components"] = 5
    return config.override(words)


def test_every_row_has_its_config_naming_the_published_figure():
    assert sorted(p.stem for p in PAPER.glob("*.toml")) == sorted(paper_table.ROWS)
    for name, row in paper_table.ROWS.items():
        lines = (PAPER / f"{name}.toml").read_text().splitlines()
        comment = "\n".join(line for line in lines if line.startswith("#"))
        assert f"−{-row.published:.2f}" in comment, name  # the row it reproduces, as published
        assert row.source.split(",")[0].split(" ")[0] in comment, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(paper_table.ROWS))
def test_every_paper_config_trains(name, small_data, tmp_path):
    config = tiny(Config.load(PAPER / f"{name}.toml"), small_data, epochs=1, run_dir=str(tmp_path / name))
    run = train(config, quiet=True)
    assert [row["epoch"] for row in run.history] == [0, 1]
    assert run.history[1]["valid_elbo"] > run.history[0]["valid_elbo"]  # one epoch already learns


@pytest.mark.slow
def test_the_table_trains_continues_and_reuses(small_data, tmp_path, monkeypatch, capsys):
    configs = tmp_path / "paper"
    configs.mkdir()
    # an unbounded row (stopped by its budget) and one that reaches its epochs
    tiny(Config.load(PAPER / "vae.toml"), small_data, epochs=100_000).save(configs / "vae.toml")
    tiny(Config.load(PAPER / "iwae_k5.toml"), small_data, epochs=2).save(configs / "iwae_k5.toml")
    monkeypatch.setattr(paper_table, "PAPER", configs)
    runs = tmp_path / "runs"
    args = ["--runs", str(runs), "--rows", "vae,iwae_k5", "--samples", "16", "--quiet", "--points", "vae=50"]

    assert paper_table.main([*args, "--budget", "vae=2"]) == 0
    first = {r["row"]: r for r in json.loads((runs / "table.json").read_text())}
    assert first["iwae_k5"]["stopped"] == "reached 2 epochs" and first["iwae_k5"]["epochs"] == 2
    assert first["vae"]["stopped"] == "budget of 2 s"
    assert 2 <= first["vae"]["train_seconds"] < 3 and first["vae"]["valid_points"] == 50
    assert first["iwae_k5"]["valid_points"] == 100  # all of them by default
    kept = json.loads((runs / "vae" / "evaluation-is-valid-best.json").read_text())
    per_point = np.array(kept["log_px_per_point"])
    assert len(per_point) == 50 and math.isclose(first["vae"]["valid_log_px"], per_point.mean(), rel_tol=1e-6)
    # K = 16 importance samples bound log p(x) no worse than the ELBO, beyond noise
    assert first["vae"]["valid_log_px"] > first["vae"]["valid_elbo"] - 3 * kept["log_px_stderr"]
    assert "| VAE, standard prior (`vae.toml`) |" in capsys.readouterr().out

    # the same budget again: nothing trains, nothing is estimated again
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/*") if p.suffix in (".pt", ".json")}
    assert paper_table.main([*args, "--budget", "vae=2"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # a larger budget continues the unfinished row from its checkpoint; the finished one stays
    images = tmp_path / "images"
    assert paper_table.main([*args, "--budget", "vae=4", "--gallery", str(images)]) == 0
    for name in ("paper_samples.png", "paper_reconstructions.png", "paper_curves.png"):
        assert (images / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    second = {r["row"]: r for r in json.loads((runs / "table.json").read_text())}
    assert second["vae"]["epochs"] > first["vae"]["epochs"] and 4 <= second["vae"]["train_seconds"] < 5
    assert second["iwae_k5"] == first["iwae_k5"]
    steps = [json.loads(line)["step"] for line in (runs / "vae" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one history, continued, no epoch twice


@pytest.mark.parametrize(
    ("epoch", "best", "patience", "why"),
    [
        (40, 30, None, None),  # stopped by its budget or a signal: it trains on
        (100, 90, None, "reached 100 epochs"),
        (80, 30, 50, "stopped early at epoch 80"),
        (79, 30, 50, None),  # one epoch short of the look-ahead
    ],
)
def test_a_row_is_finished_at_its_epochs_or_by_early_stopping(
    epoch, best, patience, why, tmp_path, monkeypatch
):
    (tmp_path / "checkpoint.pt").touch()
    config = Config().override({"train.epochs": 100, "train.patience": patience})
    monkeypatch.setattr(
        paper_table, "recorded", lambda run_dir: (config, {"epoch": epoch, "best_epoch": best})
    )
    assert paper_table.finished(tmp_path) == why


def test_budgets_name_rows_or_all():
    assert paper_table.per_row(["60", "vae=none", "vamp=5"], "--budget", float) == {
        None: 60.0,
        "vae": None,
        "vamp": 5.0,
    }
    with pytest.raises(SystemExit, match="--budget vea=5: unknown row 'vea'; rows: vae, iwae_k5"):
        paper_table.per_row(["vea=5"], "--budget", float)
