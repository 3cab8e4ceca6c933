"""Every file in examples/ runs, with a tiny budget (the README's and the docstrings' commands stay true)."""

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from pyro_vae import Config, ModelConfig
from pyro_vae.cli.main import main
from pyro_vae.data.catalog import downloads

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
# Examples that name a dataset pyro-vae fetches read the shared copy instead (no test downloads),
# its first points only: one epoch of the whole set shows nothing a short one does not.
SHARED_COPIES = {"binarized_mnist": SHARED_DATA / "binarized_mnist.npz"}
SUBSET = {"train": 2000, "valid": 500}
PARTS = {f.name: f.metadata["family"] for f in dataclasses.fields(ModelConfig) if "family" in f.metadata}

NUMBER = r"(-?\d+\.\d+) ± (\d+\.\d+)"
IS_K20 = r"\(importance sampling, K = 20, 180 validation points\)"
# For each script: its tiny arguments besides --epochs, --run-dir and --samples, and the lines it
# must print, as regular expressions ({run} is the run directory).
SCRIPT_RUNS = {
    "custom_prior": (
        [],
        [
            r'model\.prior = \{ kind = "student_t", df = 3\.0 \}',
            rf"validation ELBO: {NUMBER} nats per point \(KL estimator: monte_carlo\)",
            rf"log p\(x\): {NUMBER} nats per point {IS_K20}",
            r"run: {run}",
        ],
    ),
    "custom_model": (
        ["--hidden", "16", "--latent-dim", "3"],
        [
            rf"validation ELBO: {NUMBER} nats per point \(reconstruction (-?\d+\.\d+), KL (\d+\.\d+); "
            r"KL estimator: analytic\)",
            rf"log p\(x \| y\): {NUMBER} nats per point {IS_K20}",
            r"samples: {run}/samples_by_label\.png",
        ],
    ),
}


# Options that make a part of each (family, kind) small; other kinds keep their size.
TINY_PARTS = {
    ("network", "mlp"): {"hidden": "[16]"},
    ("network", "conv"): {"channels": "[4]", "hidden": "8"},
    ("prior", "vamp"): {"components": "10"},
}


def tiny(config: Config) -> list[str]:
    """Overrides for one epoch of a model made of small parts."""
    words = ["--train.epochs", "1"]
    for name, family in PARTS.items():
        part = getattr(config.model, name)  # None: a part left unset (model.program)
        for key, value in TINY_PARTS.get((family, part.kind if part else None), {}).items():
            words += [f"--model.{name}.{key}", value]
    return words


def run_script(*args: str) -> subprocess.CompletedProcess:
    """A script in a fresh process at the project root, importing this checkout's pyro_vae."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def small_copies(tmp_path_factory) -> dict[str, Path]:
    """Each shared copy's first :data:`SUBSET` points of every split, written once."""
    out = {}
    for name, shared in SHARED_COPIES.items():
        if shared.is_file():
            with np.load(shared) as arrays:
                out[name] = tmp_path_factory.mktemp("data") / f"{name}.npz"
                np.savez(out[name], **{k: arrays[k][: SUBSET.get(k, 500)] for k in arrays.files})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_trains(path, tmp_path, monkeypatch, small_copies):
    config = Config.load(path)
    monkeypatch.chdir(ROOT)  # example data paths are relative to the project root
    if config.data.path and not Path(config.data.path).is_file():
        pytest.skip(f"{config.data.path} is absent (it sits beside the project in CI)")
    words = ["train", "--config", str(path), *tiny(config), "--train.run_dir", str(tmp_path / "run")]
    if config.data.path is None and config.data.name in downloads():
        shared = small_copies.get(config.data.name)
        if shared is None:
            pytest.skip(f"no shared copy of {config.data.name} (tests fetch nothing from the internet)")
        words += ["--data.path", str(shared)]
    assert main([*words, "--quiet"]) == 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    resolved = Config.load(tmp_path / "run" / "config.toml")
    assert resolved.model.latent_dim == config.model.latent_dim
    assert resolved.objective == config.objective


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_script_runs(path, tmp_path):
    assert path.stem in SCRIPT_RUNS, f"add the tiny arguments and expected output of {path.name} here"
    extra, expected = SCRIPT_RUNS[path.stem]
    run_dir = tmp_path / "run"
    tiny = ["--epochs", "1", "--run-dir", str(run_dir), "--samples", "20", *extra]
    lines = run_script(str(path), *tiny).stdout.splitlines()
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        match = re.fullmatch(pattern.replace("{run}", re.escape(str(run_dir))), line)
        assert match, f"{line!r} does not match {pattern!r}"
        assert all(math.isfinite(float(n)) for n in match.groups())
    assert (run_dir / "checkpoint.pt").is_file()
    epochs = [json.loads(row)["epoch"] for row in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


@pytest.mark.slow
def test_a_run_with_a_plugin_loads_in_a_fresh_process(tmp_path):
    """custom_prior.toml's commands: train with the plugin it names, evaluate where nothing registered it."""
    run_dir = tmp_path / "run"
    path = ROOT / "examples" / "custom_prior.toml"
    words = ["train", "--config", str(path), *tiny(Config.load(path)), "--train.run_dir", str(run_dir)]
    assert main([*words, "--quiet"]) == 0
    saved = tomllib.loads((run_dir / "config.toml").read_text())
    assert saved["plugins"] == [str(ROOT / "examples" / "custom_prior.py")]
    assert saved["model"]["prior"] == {"kind": "student_t", "df": 3.0}
    evaluate = ["-m", "pyro_vae", "evaluate", str(run_dir), "--samples", "10", "--points", "20", "--quiet"]
    out = run_script(*evaluate).stdout
    assert re.match(
        rf"log p\(x\) = {NUMBER} nats per point "
        r'\(estimator is \(samples = 10, chunk_size = 500, compile = "auto"\); 20 valid',
        out,
    )
    assert json.loads((run_dir / "evaluation-is-valid.json").read_text())["points"] == 20
