"""Working out a run before it starts: its device, its config filled in from the data, placement."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae import Config, DataConfig, ModelConfig, TrainConfig, load_data
from pyro_vae.core.errors import ConfigError
from pyro_vae.training.resolve import fits_on, place, resolve_config, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


def test_cpu_device():
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
def test_auto_is_cpu_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_absent_cuda_is_an_error(name):
    with pytest.raises(ConfigError, match=rf'train\.device = "{name}" but this machine has no CUDA'):
        resolve_device(name)
    with pytest.raises(ConfigError, match=r"^evaluate\.device"):
        resolve_device(name, key="evaluate.device")


def test_unknown_device_is_an_error():
    with pytest.raises(ConfigError, match=r'train\.device = "tpu" is not allowed'):
        resolve_device("tpu")


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig())


def test_config_filled_from_digits(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert digits.dim == 64 and digits.image_shape == (8, 8)
    config = Config()
    assert config.model.data_dim is None and config.train.run_dir == ""
    resolved = resolve_config(config, digits)
    assert resolved.model.data_dim == 64
    assert resolved.model.image_shape == [8, 8]
    assert tuple(resolved.data.image_shape) == (8, 8)
    assert resolved.data.path is None  # a built-in dataset has no path
    run_dir = Path(resolved.train.run_dir)
    assert run_dir.parent == Path("runs")
    assert re.fullmatch(r"digits-\d{8}-\d{6}(-\d+)?", run_dir.name)
    assert not run_dir.exists()  # picked, not made
    # the rest of the config is untouched, and the input config is not changed
    assert resolved.model.latent_dim == config.model.latent_dim
    assert resolved.objective == config.objective
    assert config.model.data_dim is None and config.train.run_dir == ""


def test_run_dir_kept_when_set(digits):
    config = Config(train=TrainConfig(run_dir="somewhere/mine"))
    assert resolve_config(config, digits).train.run_dir == "somewhere/mine"


def test_custom_model_leaves_model_alone(digits):
    resolved = resolve_config(Config(), digits, custom_model=True)
    assert resolved.model.data_dim is None
    assert resolved.model.image_shape is None
    assert tuple(resolved.data.image_shape) == (8, 8)  # the data section is still filled in


def test_disagreeing_data_dim_is_an_error(digits):
    config = Config(model=ModelConfig(data_dim=10))
    with pytest.raises(ConfigError, match=r"model\.data_dim = 10 but the data has 64 values"):
        resolve_config(config, digits)
    # the agreeing value is accepted
    assert resolve_config(Config(model=ModelConfig(data_dim=64)), digits).model.data_dim == 64


def test_relative_data_path_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    array = np.random.default_rng(0).random((30, 12)).astype(np.float32)
    np.save(tmp_path / "sub" / "points.npy", array)
    config = Config(data=DataConfig(name="points", path="sub/points.npy"))
    data = load_data(config.data)
    resolved = resolve_config(config, data)
    assert Path(resolved.data.path).is_absolute()
    assert Path(resolved.data.path) == (tmp_path / "sub" / "points.npy").resolve()
    assert resolved.model.data_dim == 12
    assert resolved.model.image_shape is None and resolved.data.image_shape is None  # 12 is no square
    assert Path(resolved.train.run_dir).name.startswith("points-")
    # the resolved config loads the same data from any directory
    monkeypatch.chdir(tmp_path / "sub")
    again = load_data(resolved.data)
    assert torch.equal(again.train, data.train) and torch.equal(again.valid, data.valid)


def test_place_on_cpu(digits):
    cpu = torch.device("cpu")
    assert fits_on(cpu, digits)
    placed = place(digits, cpu)
    assert placed.name == digits.name and placed.image_shape == digits.image_shape
    for name in ("train", "valid", "train_labels", "valid_labels"):
        before, after = getattr(digits, name), getattr(placed, name)
        if before is None:
            assert after is None
            continue
        assert after.device == cpu
        assert torch.equal(after, before)


def test_a_run_on_a_file_is_named_for_the_file_not_the_default_dataset(tmp_path, monkeypatch, capsys):
    """data.path with data.name left at "digits": the run directory and the start line name the file."""
    from pyro_vae.cli.main import main

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "points.npy", np.random.default_rng(0).random((30, 12)).astype(np.float32))
    assert DataConfig(path="points.npy").label == "points.npy"
    assert DataConfig(name="mine", path="points.npy").label == "mine"
    assert DataConfig().label == "digits"
    args = ["train", "--data.path", "points.npy", "--train.epochs", "1", "--train.compile", "false"]
    assert main([*args, "--model.encoder.hidden", "[4]", "--model.decoder.hidden", "[4]"]) == 0
    err = capsys.readouterr().err
    assert "pyro-vae: training on points.npy (27 train / 3 valid points, 12 values each)" in err, err
    assert "digits" not in err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("points.npy-")
