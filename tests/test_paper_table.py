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


def test_every_row_has_its_config_naming_the_published_figures():
    assert sorted(p.stem for p in PAPER.glob("*.toml")) == sorted(paper_table.ROWS)
    for name, row in paper_table.ROWS.items():
        config = Config.load(PAPER / f"{name}.toml")
        # every config trains on the static binarization, beside the figure published for it
        assert config.data.name == "binarized_mnist" and config.data.binarize == "none", name
        assert row.static.data == "static" and paper_table.data_words(config) == "static", name
        lines = (PAPER / f"{name}.toml").read_text().splitlines()
        comment = "\n".join(line for line in lines if line.startswith("#"))
        for figure in (row.static, row.dynamic):
            if figure is not None:
                assert f"−{-figure.value:.2f}" in comment, name  # the figure it reproduces
                assert figure.source.split(",")[0].split(" ")[0] in comment, name
    # Burda et al.'s figures on each binarization: Appendix D (static) and Table 1 (dynamic)
    burda = {n: (r.static.value, r.dynamic.value) for n, r in paper_table.ROWS.items() if r.dynamic}
    assert burda == {"iwae_k5": (-87.63, -85.54), "iwae_k50": (-87.10, -84.78)}


def test_dynamic_rows_train_grey_mnist_drawn_afresh_in_a_directory_of_their_own(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(paper_table.pyro_vae, "train", lambda config, **kw: trained.append(config))
    paper_table.train_row("iwae_k5", tmp_path, 60.0, None, "cpu", True, "dynamic")
    (config,) = trained
    assert config.train.run_dir == str(tmp_path / "iwae_k5-dynamic") and config.train.max_seconds == 60
    assert (config.data.name, config.data.binarize) == ("mnist", "dynamic")
    assert round(config.data.valid_fraction * 60000) == 400  # Burda et al. hold out 400 images
    assert config.objective.kind == "iwae" and config.objective.params["particles"] == 5
    assert paper_table.data_words(config) == "dynamic (mnist)"
    assert paper_table.published("iwae_k5", "dynamic").value == -85.54


def test_rows_are_those_with_a_figure_on_the_binarization():
    assert paper_table.chosen_rows(None, "static") == list(paper_table.ROWS)
    assert paper_table.chosen_rows(None, "dynamic") == ["iwae_k5", "iwae_k50"]
    with pytest.raises(SystemExit) as info:
        paper_table.chosen_rows("iwae_k5,vamp", "dynamic")
    assert str(info.value) == (
        "--rows vamp --binarization dynamic: its paper publishes no figure on dynamic MNIST; "
        "rows that have one: iwae_k5, iwae_k50"
    )
    with pytest.raises(SystemExit, match="--rows: unknown row 'vea'; rows: vae, iwae_k5"):
        paper_table.chosen_rows("vea", "static")


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
    assert first["vae"]["data"] == "static" and first["iwae_k5"]["published_data"] == "static"
    assert first["iwae_k5"]["published"] == -87.63  # Burda et al.'s figure on static MNIST
    out = capsys.readouterr().out
    assert "| VAE, standard prior (`vae.toml`) | static |" in out
    assert "| -87.63 (Burda et al. 2016, Appendix D), static |" in out

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
