"""A device pyro-vae does not run on is refused in one line, by every command and before a
checkpoint is read: never called a torn or altered checkpoint (which invites deleting a good
file), never a traceback."""

import pytest

from pyro_vae.cli.main import main
from pyro_vae.core.errors import ConfigError
from pyro_vae.training.resolve import resolve_device

REFUSAL = 'is not allowed: expected "auto", "cpu", "cuda" or "cuda:N"'
DEVICES = ["mps", "cpu:1", "meta"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "command",
    [["evaluate", "--points", "2"], ["sample", "-n", "2"], ["interpolate", "--pairs", "1"]],
    ids=["evaluate", "sample", "interpolate"],
)
def test_a_run_command_refuses_the_device_before_reading_the_checkpoint(
    digits_run_dir, tmp_path, capsys, command, device
):
    capsys.readouterr()
    before = (digits_run_dir / "checkpoint.pt").read_bytes()
    out = tmp_path / ("e.json" if command[0] == "evaluate" else "p.png")
    assert main([command[0], str(digits_run_dir), *command[1:], "--device", device, "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f'pyro-vae: error: --device = "{device}" {REFUSAL}'], err
    assert (digits_run_dir / "checkpoint.pt").read_bytes() == before and not out.exists()


@pytest.mark.parametrize("device", DEVICES)
def test_train_refuses_the_device_in_the_same_words(tmp_path, capsys, device):
    assert main(["train", "--train.device", device, "--train.run_dir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f'pyro-vae: error: train.device = "{device}" {REFUSAL}'], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_resolve_device_refuses_what_the_config_refuses(device):
    with pytest.raises(ConfigError, match=f'^--device = "{device}" {REFUSAL}$'):
        resolve_device(device, key="--device")
