"""One run of a comparison: its result kept beside the request it answers and reused only for
that request, a run resumed only from its own checkpoint, and rows that JSON can hold."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from pyro_vae.comparison import one_run
from pyro_vae.comparison.one_run import (
    RESULT,
    _finite,
    finished,
    measured_otherwise,
    memory_measure,
    write_result,
)
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.training.run import CHECKPOINT

REQUEST = {"config": {"model": {"latent_dim": 2}, "train": {"epochs": 3}}, "evaluation": {"samples": 50}}
ROW = {"log_px": -91.5, "epochs": 3}


def test_a_result_is_reused_for_the_same_request_only(tmp_path):
    assert finished(tmp_path, REQUEST, overwrite=False) is None and not measured_otherwise(tmp_path)
    write_result(tmp_path, REQUEST, ROW)
    assert json.loads((tmp_path / RESULT).read_text()) == {"request": REQUEST, "row": ROW}
    assert finished(tmp_path, json.loads(json.dumps(REQUEST)), overwrite=False) == ROW
    other = {**REQUEST, "config": {"model": {"latent_dim": 2}, "train": {"epochs": 5}}}
    with pytest.raises(RunDirError) as info:
        finished(tmp_path, other, overwrite=False)
    assert str(info.value) == (
        f"{str(tmp_path)!r} holds a run measured with another config (config.train.epochs = 3 → 5); "
        "pass --overwrite to retrain it, or choose another --out"
    )
    assert finished(tmp_path, other, overwrite=True) is None and measured_otherwise(tmp_path)


@pytest.mark.parametrize(
    "text", ["", "{not json", '{"row": {}}', "[1, 2]"], ids=["empty", "torn", "no-request", "list"]
)
def test_a_damaged_result_is_measured_again(tmp_path, text):
    (tmp_path / RESULT).write_text(text)
    assert finished(tmp_path, REQUEST, overwrite=False) is None


def test_rows_hold_none_where_a_number_is_not_finite():
    row = {"log_px": math.nan, "kl": math.inf, "recon": -3.5, "guide": "normal", "epochs": 2}
    assert _finite(row) == {"log_px": None, "kl": None, "recon": -3.5, "guide": "normal", "epochs": 2}


def test_memory_is_named_for_its_device():
    assert memory_measure(torch.device("cpu")).startswith("peak resident set size of the whole process")
    assert memory_measure(torch.device("cuda")).startswith("CUDA memory allocated while training")


@pytest.fixture
def trains(monkeypatch):
    """``train`` recorded: how each call was asked to start; ``refuse`` makes a resume fail."""
    calls, state = [], SimpleNamespace(refuse=None)

    def train(config, *, data, quiet, resume=None, overwrite=False):
        calls.append("resume" if resume else "fresh")
        if resume and state.refuse:
            raise state.refuse
        return "run"

    monkeypatch.setattr(one_run, "train", train)
    return SimpleNamespace(calls=calls, state=state)


def test_a_run_resumes_from_its_own_checkpoint_and_else_starts_afresh(tmp_path, trains):
    config = SimpleNamespace(train=SimpleNamespace(run_dir=str(tmp_path)))
    assert one_run._train_or_resume(config, None, fresh=False) == "run"  # no checkpoint
    (tmp_path / CHECKPOINT).write_bytes(b"")
    one_run._train_or_resume(config, None, fresh=False)
    one_run._train_or_resume(config, None, fresh=True)
    trains.state.refuse = ConfigError("another run's checkpoint")
    one_run._train_or_resume(config, None, fresh=False)
    assert trains.calls == ["fresh", "resume", "fresh", "resume", "fresh"]


def test_a_run_that_diverges_is_a_row_with_its_epoch_and_loss(tmp_path, monkeypatch):
    from pyro_vae.training.loop import Diverged
    from pyro_vae.training.run import METRICS

    def diverging(config, **kwargs):
        raise Diverged("training diverged in epoch 3: the loss is inf; …", 3, 0.001, float("inf"))

    monkeypatch.setattr(one_run, "train", diverging)
    (tmp_path / METRICS).write_text(
        "".join(json.dumps({"epoch": e, "step": 17 * e}) + "\n" for e in range(3))
    )
    config = SimpleNamespace(
        train=SimpleNamespace(run_dir=str(tmp_path), seed=4),
        model=SimpleNamespace(guide=SimpleNamespace(kind="normal")),
    )
    row = one_run.train_and_measure(
        config, None, torch.zeros(7, 2), torch.device("cpu"), "is", {}, fresh=True
    )
    assert {k: row[k] for k in ("status", "diverged_epoch", "diverged_loss", "step", "train_seed")} == {
        "status": "diverged",
        "diverged_epoch": 3,  # the epoch after the last one its metrics hold
        "diverged_loss": "inf",
        "step": 34,
        "train_seed": 4,
    }
    assert all(row[k] is None for k in one_run.NUMBERS) and row["epochs"] is None
    assert row["run_dir"] == str(tmp_path) and row["eval_points"] == 7
    assert one_run.diverged_words(row) == "diverged in epoch 3 (the loss is inf)"
    json.dumps(row, allow_nan=False)  # JSON holds it


def test_a_run_trained_past_its_result_is_found(tmp_path):
    from pyro_vae.training.run import METRICS

    def metrics(epochs):
        (tmp_path / METRICS).write_text(
            "".join(json.dumps({"epoch": e, "step": 10 * e}) + "\n" for e in range(epochs + 1))
        )

    assert not one_run.moved_past(tmp_path, {"epochs": 2, "step": 20})  # no metrics: nothing to say
    metrics(2)
    assert not one_run.moved_past(tmp_path, {"epochs": 2, "step": 20})
    assert not one_run.moved_past(tmp_path, {"epochs": None, "step": 20})  # a divergence after epoch 2
    metrics(3)  # pyro-vae train --resume ran another epoch
    assert one_run.moved_past(tmp_path, {"epochs": 2, "step": 20})
    assert one_run.moved_past(tmp_path, {"epochs": 2})  # a result written before rows held their step
    assert not one_run.moved_past(tmp_path, {"epochs": 3})
