"""Training: it improves the bound, checkpoints round-trip, tensors stay on their device."""

import pyro
import pytest
import torch

import pyro_vae
from pyro_vae import VAE, Config, RunDirError
from pyro_vae.training.checkpoint import load_checkpoint
from pyro_vae.training.run import CHECKPOINT
from tests import one_factor


def tiny(tmp_path, **overrides):
    base = {
        "train.epochs": 2,
        "train.run_dir": str(tmp_path / "run"),
        "model.encoder.hidden": [32],
        "model.decoder.hidden": [32],
    }
    return Config().override({**base, **overrides})


@pytest.mark.slow
def test_training_on_digits_raises_the_validation_elbo(tmp_path):
    # 20 epochs of the default digits VAE take a few seconds on 2 cores.
    config = Config().override(
        {"train.epochs": 20, "train.run_dir": str(tmp_path / "run"), "train.device": "cpu"}
    )
    run = pyro_vae.train(config, quiet=True)
    first, last = run.history[0], run.history[-1]
    # The untrained model scores about −340 nats per point; 20 epochs reach about +30.
    # Asking for 250 nats is far outside the noise (the standard errors are ~1 nat).
    assert last["valid_elbo"] - first["valid_elbo"] > 250
    assert last["valid_elbo_stderr"] < 5
    assert last["valid_elbo"] == pytest.approx(last["valid_recon"] - last["valid_kl"], abs=1e-3)
    assert last["kl_estimator"] == "analytic"
    assert [r["epoch"] for r in run.history] == list(range(21))


@pytest.mark.slow
def test_checkpoint_round_trip_gives_the_same_model(tmp_path):
    run = pyro_vae.train(tiny(tmp_path, **{"train.device": "cpu"}), quiet=True)
    loaded = pyro_vae.Run.load(run.dir)
    x = torch.rand(7, 64)
    assert torch.equal(loaded.vae.encode(x), run.vae.encode(x))
    assert torch.equal(loaded.vae.reconstruct(x), run.vae.reconstruct(x))
    assert loaded.config == run.config
    assert len(loaded.history) == 3
    payload = load_checkpoint(run.dir / CHECKPOINT)
    steps = 2 * 17  # 1617 points, batches of 100
    training = payload["training"]
    assert training["epoch"] == 2 and training["step"] == steps and training["batch"] == 0
    assert [(r["epoch"], r["step"]) for r in run.history] == [(0, 0), (1, 17), (2, steps)]
    assert training["seconds"] == pytest.approx(sum(r["seconds"] for r in run.history), rel=1e-9)
    assert Config.from_dict(payload["config"]) == run.config
    # the saved tensors are the trained model's
    state = run.vae.state_dict()
    assert set(payload["model"]) == set(state)
    for name, value in state.items():
        assert torch.equal(payload["model"][name], value), name
    # Adam's state: one entry per parameter, shaped like it, each updated at every step
    params = list(run.vae.parameters())
    optimizer = training["optimizer"]
    assert [g["lr"] for g in optimizer["param_groups"]] == [run.config.train.lr]
    assert sorted(i for g in optimizer["param_groups"] for i in g["params"]) == list(range(len(params)))
    assert sorted(optimizer["state"]) == list(range(len(params)))
    for i, p in enumerate(params):
        adam = optimizer["state"][i]
        assert float(adam["step"]) == steps, i
        assert adam["exp_avg"].shape == adam["exp_avg_sq"].shape == p.shape, i
        assert (adam["exp_avg_sq"] >= 0).all() and adam["exp_avg_sq"].sum() > 0, i
    # training is deterministic for a seed: a second run saves the same optimizer state
    again = load_checkpoint(
        pyro_vae.train(
            tiny(tmp_path, **{"train.device": "cpu", "train.run_dir": str(tmp_path / "again")}), quiet=True
        ).dir
        / CHECKPOINT
    )
    for i, adam in optimizer["state"].items():
        for key, value in adam.items():
            assert torch.equal(again["training"]["optimizer"]["state"][i][key], value), (i, key)
    for name, value in state.items():
        assert torch.equal(again["model"][name], value), name
    assert torch.equal(again["rng"]["torch"], payload["rng"]["torch"])
    # a plain state dict: loadable without unpickling arbitrary objects
    torch.load(run.dir / CHECKPOINT, weights_only=True)


class Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_checkpoint_loading_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / CHECKPOINT
    torch.save({"format": "pyro-vae-checkpoint/2", "model": Payload()}, path)
    with pytest.raises(RunDirError, match="not a readable pyro-vae checkpoint") as info:
        load_checkpoint(path)
    assert "UnpicklingError" in str(info.value)  # refused by weights_only
    (tmp_path / "x").mkdir()
    with pytest.raises(RunDirError, match="no checkpoint"):
        load_checkpoint(tmp_path / "x" / CHECKPOINT)


def test_vae_tensors_live_on_the_configured_device(device, tmp_path):
    run = pyro_vae.train(tiny(tmp_path, **{"train.device": device.type}), quiet=True)
    vae = run.vae
    assert all(t.device.type == device.type for t in [*vae.parameters(), *vae.buffers()])
    assert vae.sample(5).device.type == device.type
    assert vae.prior().sample().device.type == device.type
    trace = pyro.poutine.trace(vae.guide).get_trace(torch.rand(3, 64, device=device))
    assert trace.nodes["z"]["value"].device.type == device.type


@pytest.mark.slow
def test_train_accepts_a_users_own_model_and_guide(tmp_path):
    """A hand-written Pyro model/guide pair (pyro.param, no VAE class) trains with pyro_vae.train."""
    data, model, guide = one_factor.data(500, 100), one_factor.model, one_factor.guide

    config = Config().override(
        {"train.epochs": 200, "train.lr": 0.05, "train.run_dir": str(tmp_path / "run"), "train.device": "cpu"}
    )
    run = pyro_vae.train(config, model=model, guide=guide, data=data, quiet=True)
    assert run.vae is None
    assert run.history[-1]["valid_elbo"] > run.history[0]["valid_elbo"] + 1.0
    w = pyro.param("w").detach()
    assert torch.allclose(w.abs(), one_factor.W_TRUE.abs(), atol=0.15)  # identified up to sign
    state = load_checkpoint(run.dir / CHECKPOINT)["model"]
    assert set(state) == {"w", "a", "s"}
    for name in ("w", "a", "s"):  # the trained values, unconstrained as the param store holds them
        assert torch.equal(state[name], pyro.param(name).unconstrained().detach()), name
    with pytest.raises(RunDirError, match="own model"):
        pyro_vae.Run.load(run.dir)


def test_vae_can_be_built_from_a_model_config_alone():
    vae = VAE(pyro_vae.ModelConfig(latent_dim=4, data_dim=10))
    trace = pyro.poutine.trace(vae.model).get_trace(torch.rand(5, 10))
    assert trace.nodes["z"]["value"].shape == (5, 4)
    assert trace.nodes["x"]["is_observed"]
    assert {f.name for f in trace.nodes["x"]["cond_indep_stack"]} == {"data"}
    with pytest.raises(pyro_vae.ConfigError, match="data_dim"):
        VAE(pyro_vae.ModelConfig(latent_dim=4))


@pytest.mark.slow
@pytest.mark.parametrize("path", ["eager", "replayed"])
def test_a_run_diverging_in_its_first_epoch_leaves_nothing_that_blocks_the_same_command(
    tmp_path, capsys, monkeypatch, path
):
    """A loss of inf in the very first step is the divergence it is (one line, not a capture
    problem, on the replayed path too), the run directory it made is gone, and the same
    command with a sound objective trains in it; no run leaves its .lock behind."""
    from pyro_vae.cli.main import main
    from pyro_vae.training import paths

    if path == "replayed":  # as auto decides for a longer run
        monkeypatch.setattr(paths, "AUTO_SECONDS", float("inf"))
        monkeypatch.setattr(paths, "REPLAY_SECONDS", 0.0)
    run_dir = tmp_path / "run"
    args = ["train", "--train.epochs", "1", "--train.run_dir", str(run_dir), "--train.device", "cpu"]
    args += ["--model.encoder.hidden", "[8]", "--model.decoder.hidden", "[8]"]
    assert main([*args, "--objective.kind", "beta", "--objective.beta", "1e38"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pyro-vae: error: training diverged in epoch 1: the loss is ")
    assert (
        "; its first loss, before any update, was not finite, so the learning rate is not the cause: "
        in err[-1]
    )
    assert 'look at the objective (objective.kind = "beta", beta = 1e+38) and the model;' in err[-1]
    assert not any("capture" in line for line in err), err
    assert not run_dir.exists()
    assert main([*args, "--quiet"]) == 0
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []
    assert (run_dir / CHECKPOINT).is_file()


@pytest.mark.slow
def test_train_takes_a_config_as_a_dict_or_a_file_and_refuses_anything_else(tmp_path):
    sections = {
        "model": {"encoder": {"kind": "mlp", "hidden": [8]}, "decoder": {"kind": "mlp", "hidden": [8]}},
        "train": {"epochs": 1, "compile": False, "device": "cpu", "run_dir": str(tmp_path / "dict")},
    }
    from_dict = pyro_vae.train(sections, quiet=True)
    assert from_dict.config.model.encoder.params["hidden"] == [8] and from_dict.epoch == 1
    Config.from_dict({**sections, "train": {**sections["train"], "run_dir": str(tmp_path / "file")}}).save(
        tmp_path / "run.toml"
    )
    from_file = pyro_vae.train(str(tmp_path / "run.toml"), quiet=True)
    assert from_file.dir == tmp_path / "file"
    for a, b in zip(from_dict.vae.parameters(), from_file.vae.parameters(), strict=True):
        assert torch.equal(a, b)  # the same config, however it came: the same model
    with pytest.raises(
        TypeError, match=r"pyro_vae.train's config must be a Config, a dict of sections, a path"
    ):
        pyro_vae.train(42)
