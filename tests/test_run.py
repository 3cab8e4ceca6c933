"""pyro_vae.run: checkpoints, run directories and metrics files."""

import pytest
import torch

import pyro_vae
from pyro_vae import Config
from pyro_vae.errors import RunDirError
from pyro_vae.measure import evaluate_elbo
from pyro_vae.run import (
    CHECKPOINT,
    CONFIG,
    Run,
    append_metrics,
    load_checkpoint,
    prepare_run_dir,
    read_metrics,
    save_checkpoint,
)


def test_checkpoint_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    model_state = {"w": torch.randn(3, 2, generator=g), "b": torch.arange(4)}
    optimizer_state = {"state": {0: {"exp_avg": torch.randn(5, generator=g)}}, "param_groups": [{"lr": 0.1}]}
    config = Config().override({"train.epochs": 3})
    save_checkpoint(
        tmp_path / CHECKPOINT,
        config=config,
        model_state=model_state,
        training={"optimizer": optimizer_state, "epoch": 3, "step": 17, "seconds": 1.5},
    )
    payload = load_checkpoint(tmp_path / CHECKPOINT)
    assert payload["model"].keys() == model_state.keys()
    assert all(torch.equal(payload["model"][k], v) for k, v in model_state.items())
    assert torch.equal(payload["optimizer"]["state"][0]["exp_avg"], optimizer_state["state"][0]["exp_avg"])
    assert payload["optimizer"]["param_groups"] == [{"lr": 0.1}]
    assert (payload["epoch"], payload["step"], payload["seconds"], payload["custom_model"]) == (
        3,
        17,
        1.5,
        False,
    )
    assert payload["config"] == config.to_dict()
    assert Config.from_dict(payload["config"]).train.epochs == 3
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary name was renamed away


def test_load_checkpoint_refuses_other_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(RunDirError, match="is not a pyro-vae checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else/1"}, other)
    with pytest.raises(RunDirError, match="is not a pyro-vae checkpoint"):
        load_checkpoint(other)
    with pytest.raises(RunDirError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_prepare_run_dir_refuses_a_run_unless_overwrite(tmp_path):
    fresh = tmp_path / "a" / "b"
    prepare_run_dir(fresh)
    assert fresh.is_dir()
    (fresh / CONFIG).write_text("")
    (fresh / "mine.txt").write_text("kept")
    with pytest.raises(RunDirError, match=r"already holds a run \(config\.toml\)"):
        prepare_run_dir(fresh)
    prepare_run_dir(fresh, overwrite=True)
    assert not (fresh / CONFIG).exists() and (fresh / "mine.txt").read_text() == "kept"
    prepare_run_dir(fresh)  # empty of runs again
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(fresh / "mine.txt")


def test_metrics_round_trip(tmp_path):
    rows = [{"epoch": 0, "elbo": -1.5}, {"epoch": 1, "elbo": -1.25, "note": "x"}]
    for row in rows:
        append_metrics(tmp_path / "m.jsonl", row)
    assert read_metrics(tmp_path / "m.jsonl") == rows


@pytest.mark.slow
def test_run_load_rebuilds_the_trained_vae(tmp_path):
    config = Config().override(
        {
            "train.epochs": 1,
            "train.run_dir": str(tmp_path / "run"),
            "model.encoder.hidden": [8],
            "model.decoder.hidden": [8],
        }
    )
    run = pyro_vae.train(config, quiet=True)
    loaded = Run.load(run.dir)
    trained, rebuilt = run.vae.state_dict(), loaded.vae.state_dict()
    assert trained.keys() == rebuilt.keys()
    assert all(torch.equal(trained[k], rebuilt[k]) for k in trained)
    assert loaded.config.to_dict() == run.config.to_dict()
    assert loaded.history == read_metrics(run.dir / "metrics.jsonl") and loaded.history
    x = torch.rand(25, run.vae.config.data_dim, generator=torch.Generator().manual_seed(0))
    run.vae.eval()
    a = evaluate_elbo(run.vae.model, run.vae.guide, x, seed=5)
    b = evaluate_elbo(loaded.vae.model, loaded.vae.guide, x, seed=5)
    assert a.keys() == b.keys()
    tensors = [k for k in a if torch.is_tensor(a[k])]
    assert tensors and all(torch.equal(a[k], b[k]) for k in tensors)
    assert all(a[k] == b[k] for k in a.keys() - tensors)
