"""Every config in examples/ trains, with a tiny budget (the README's commands stay true)."""

from pathlib import Path

import pytest

from pyro_vae import Config
from pyro_vae.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_trains(path, tmp_path, monkeypatch):
    config = Config.load(path)
    monkeypatch.chdir(ROOT)  # example data paths are relative to the project root
    if config.data.path and not Path(config.data.path).is_file():
        pytest.skip(f"{config.data.path} is absent (it sits beside the project in CI)")
    tiny = ["--train.epochs", "1", "--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]"]
    code = main(["train", "--config", str(path), *tiny, "--train.run_dir", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    resolved = Config.load(tmp_path / "run" / "config.toml")
    assert resolved.model.latent_dim == config.model.latent_dim
    assert resolved.objective == config.objective
