"""pyro_vae.training.checkpoint: round trips, the checksum, the RNG state, and files that are not one."""

import random

import numpy as np
import pytest
import torch

from pyro_vae.core.errors import RunDirError
from pyro_vae.training.checkpoint import (
    FORMAT,
    checksum,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def write(path, **training):
    g = torch.Generator().manual_seed(0)
    model = {"w": torch.randn(30, 20, generator=g), "b": torch.arange(4)}
    optimizer = {"state": {0: {"exp_avg": torch.randn(5, generator=g)}}, "param_groups": [{"lr": 0.1}]}
    training = {"optimizer": optimizer, "epoch": 3, "step": 17, "seconds": 1.5, **training}
    save_checkpoint(path, config={"train": {"epochs": 3}}, model=model, training=training, custom_model=False)
    return model, training


def test_round_trip(tmp_path):
    path = tmp_path / "checkpoint.pt"
    model, training = write(path, epoch_loss=torch.tensor(2.5))
    payload = load_checkpoint(path)
    assert payload["format"] == FORMAT and payload["custom_model"] is False
    assert payload["config"] == {"train": {"epochs": 3}}
    assert payload["model"].keys() == model.keys()
    assert all(torch.equal(payload["model"][k], v) for k, v in model.items())
    saved = payload["training"]
    adam = saved["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(adam, training["optimizer"]["state"][0]["exp_avg"])
    assert (saved["epoch"], saved["step"], saved["seconds"]) == (3, 17, 1.5)
    assert saved["epoch_loss"].item() == 2.5
    assert torch.equal(payload["rng"]["torch"], torch.get_rng_state())
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary name was renamed away


def test_checksum_covers_place_and_bytes():
    a = {"x": torch.tensor([1.0, 2.0]), "y": [torch.tensor(3)]}
    assert checksum(a) == checksum({"y": [torch.tensor(3)], "x": torch.tensor([1.0, 2.0])})  # key order
    assert checksum(a) != checksum({"x": torch.tensor([1.0, 2.5]), "y": [torch.tensor(3)]})  # a value
    assert checksum(a) != checksum({"z": torch.tensor([1.0, 2.0]), "y": [torch.tensor(3)]})  # a place
    assert checksum(a) != checksum({"x": torch.tensor([1.0, 2.0]).double(), "y": [torch.tensor(3)]})  # dtype


def test_a_torn_checkpoint_is_refused_in_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write(path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(RunDirError, match="not a readable pyro-vae checkpoint") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)


def test_a_flipped_bit_in_a_tensor_is_caught_by_the_checksum(tmp_path):
    path = tmp_path / "checkpoint.pt"
    model, _ = write(path)
    data = bytearray(path.read_bytes())
    # the bytes of the 30x20 weight: find them in the archive and flip one bit in the middle
    raw = model["w"].numpy().tobytes()
    at = bytes(data).index(raw) + len(raw) // 2
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(RunDirError, match="corrupt: its tensors do not match their checksum"):
        load_checkpoint(path)


def test_other_files_and_older_formats_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(RunDirError, match="not a readable pyro-vae checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else/1"}, other)
    with pytest.raises(RunDirError, match="is not a pyro-vae checkpoint"):
        load_checkpoint(other)
    old = tmp_path / "old.pt"
    torch.save({"format": "pyro-vae-checkpoint/1", "model": {}}, old)
    with pytest.raises(RunDirError, match="from an older pyro-vae"):
        load_checkpoint(old)
    with pytest.raises(RunDirError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_rng_state_restores_every_stream():
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    np.random.standard_normal()  # a cached Gaussian is part of NumPy's state
    state = rng_state()
    first = (torch.rand(3), random.random(), np.random.standard_normal(4))
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    set_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.standard_normal(4))
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    np.testing.assert_array_equal(first[2], again[2])
