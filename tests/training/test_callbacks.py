"""The callbacks of the training loop, each given a scripted history: the rows Metrics writes
and the best epoch it keeps, when Checkpoints saves, when EarlyStopping stops and what it says,
what Tracking logs and what Messages prints."""

import json
from types import SimpleNamespace

import pytest
import torch

from pyro_vae.training import callbacks
from pyro_vae.training.callbacks import Checkpoints, EarlyStopping, Messages, Metrics, Tracking, criterion
from pyro_vae.training.loop import Epoch, TrainState
from pyro_vae.training.run import CURVES, SAMPLES


def new_state(**fields) -> TrainState:
    return TrainState(optimizer=torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), **fields)


def test_criterion_is_the_validation_elbo_or_else_the_reconstruction():
    assert criterion({"valid_elbo": -90.0, "valid_recon": -80.0}) == ("valid_elbo", "ELBO")
    assert criterion({"valid_elbo": None, "valid_recon": -80.0}) == ("valid_recon", "reconstruction")


def scripted_measure(elbos):
    """``measure`` answering the validation ELBOs ``elbos`` in turn (training rows 1 better)."""
    calls = iter(e for elbo in elbos for e in (elbo + 1, elbo))

    def measure(model, guide, x, **kwargs):
        elbo = next(calls)
        return SimpleNamespace(elbo=elbo, recon=elbo - 5, kl=5.0, elbo_stderr=0.5, kl_estimator="analytic")

    return measure


def test_metrics_writes_one_row_per_epoch_and_keeps_the_best(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "measure", scripted_measure([-200.0, -120.0, -130.0, -110.0]))
    path = tmp_path / "metrics.jsonl"
    splits = {"train": torch.zeros(3, 2), "valid": torch.zeros(2, 2)}
    metrics = Metrics(path, None, None, splits, batch_size=10, device="cpu", seed=0)
    state = new_state()
    metrics.on_start(state)
    best = []
    for e, loss in zip((1, 2, 3), (130.0, 125.0, 111.0), strict=True):
        state.epoch, state.step = e, 10 * e
        metrics.on_epoch_end(state, Epoch(loss=loss, points=400, seconds=2.0, lr=0.01))
        best.append((state.best_epoch, state.best_elbo))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == metrics.history
    assert [r["valid_elbo"] for r in rows] == [-200.0, -120.0, -130.0, -110.0]
    assert [r["train_elbo"] for r in rows] == [-199.0, -119.0, -129.0, -109.0]
    assert rows[0]["train_loss"] is None and rows[0]["items_per_second"] is None and rows[0]["seconds"] == 0
    assert [r["train_loss"] for r in rows[1:]] == [130.0, 125.0, 111.0]
    assert all(r["items_per_second"] == 200.0 and r["step"] == 10 * r["epoch"] for r in rows[1:])
    assert best == [(1, -120.0), (1, -120.0), (3, -110.0)]  # epoch 2 was worse


class Saves:
    def __init__(self):
        self.written: list[tuple[str, int]] = []

    def __call__(self, path, state):
        self.written.append((path.name, state.epoch))


def run_checkpoints(tmp_path, epochs, seconds, best_epochs, clock=None):
    saves = Saves()
    checkpoints = Checkpoints(
        tmp_path / "checkpoint.pt", tmp_path / "best.pt", saves, epochs=epochs, seconds=seconds
    )
    state = new_state()
    checkpoints.on_start(state)
    for e in range(1, 6):
        state.epoch, state.step = e, 3 * e
        state.best_epoch = e if e in best_epochs else state.best_epoch
        if clock is not None:
            clock.now = 100.0 * e
        checkpoints.on_epoch_end(state, None)
    checkpoints.on_end(state)
    return saves.written


def test_checkpoints_after_the_first_epoch_then_every_n_and_at_the_end(tmp_path):
    written = run_checkpoints(tmp_path, epochs=2, seconds=None, best_epochs={1, 2, 5})
    assert [e for name, e in written if name == "checkpoint.pt"] == [1, 3, 5]
    assert [e for name, e in written if name == "best.pt"] == [1, 2, 5]
    # without a cadence: the first epoch and the end only
    written = run_checkpoints(tmp_path, epochs=None, seconds=None, best_epochs=set())
    assert written == [("checkpoint.pt", 1), ("checkpoint.pt", 5)]


def test_checkpoints_by_the_clock(tmp_path, monkeypatch):
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock.now)
    written = run_checkpoints(tmp_path, epochs=None, seconds=250.0, best_epochs=set(), clock=clock)
    # saved at t = 100 (epoch 1); due again 250 s later: epoch 4 (t = 400); then the end
    assert [e for name, e in written if name == "checkpoint.pt"] == [1, 4, 5]


def test_an_interrupt_saves_and_a_resumed_run_counts_from_its_checkpoint(tmp_path):
    saves = Saves()
    checkpoints = Checkpoints(tmp_path / "c.pt", tmp_path / "b.pt", saves, epochs=3, seconds=None)
    state = new_state(epoch=4, step=40)
    checkpoints.on_start(state)
    assert checkpoints.saved == (4, 40)
    state.epoch, state.step = 5, 50
    checkpoints.on_epoch_end(state, None)  # one epoch after the checkpoint resumed from: not due
    checkpoints.on_interrupt(state)
    checkpoints.on_end(state)  # the interrupt's checkpoint is the last state: nothing more
    assert saves.written == [("c.pt", 5)]


def test_early_stopping_after_patience_epochs_without_improvement():
    stopping = EarlyStopping(patience=3)
    state = new_state(epoch=4, best_epoch=2, best_elbo=-101.234)
    stopping.on_epoch_end(state, None)
    assert state.stop is None  # 2 epochs since the best
    state.epoch = 5
    stopping.on_epoch_end(state, None)
    assert state.stop == (
        "stopped early: the validation ELBO has not improved for 3 epochs "
        "(best -101.23 at epoch 2, kept in best.pt)"
    )
    # a delta guide's rows have no ELBO: the reconstruction is named
    metrics = SimpleNamespace(history=[{"valid_elbo": None, "valid_recon": -50.0}])
    state = new_state(epoch=5, best_epoch=2, best_elbo=-50.0)
    EarlyStopping(patience=3, metrics=metrics).on_start(state)  # a resumed run that had stopped
    assert state.stop.startswith("stopped early: the validation reconstruction has not improved")


class Logger:
    def __init__(self):
        self.rows, self.figures, self.closed = [], [], False

    def log_metrics(self, row):
        self.rows.append(row)

    def log_figures(self, paths, epoch):
        self.figures.append(([p.name for p in paths], epoch))

    def close(self):
        self.closed = True


def test_tracking_logs_every_row_and_the_figures_that_exist(tmp_path):
    history = [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]
    metrics = SimpleNamespace(history=history[:1])
    loggers = [Logger(), Logger()]
    tracking = Tracking(loggers, metrics, tmp_path)
    state = new_state()
    tracking.on_start(state)
    for row in history[1:]:
        metrics.history.append(row)
        state.epoch = row["epoch"]
        tracking.on_epoch_end(state, None)
    (tmp_path / CURVES).write_bytes(b"png")
    (tmp_path / SAMPLES).write_bytes(b"png")
    tracking.on_end(state)
    tracking.close()
    for logger in loggers:
        assert logger.rows == history and logger.closed
        assert logger.figures == [([CURVES, SAMPLES], 2)]
    resumed = Logger()
    Tracking([resumed], SimpleNamespace(history=history), tmp_path).on_start(new_state(epoch=2))
    assert resumed.rows == []  # a resumed run's rows were logged before


def rows(first: float, last: float, estimator: str = "analytic") -> list[dict]:
    row = {"kl_estimator": estimator, "valid_elbo_stderr": 0.25, "compile_seconds": 0.0, "step_path": "eager"}
    return [row | {"epoch": 0, "valid_elbo": first}, row | {"epoch": 3, "valid_elbo": last}]


def test_messages_summarise_the_run_and_warn_when_it_got_worse(tmp_path, capsys):
    state = new_state(epoch=3, seconds=12.34)
    messages = Messages(
        SimpleNamespace(history=rows(-200.0, -95.5)), tmp_path, lr=1e-3, layered=False, quiet=False
    )
    messages.on_start(state)
    messages.on_end(state)
    assert capsys.readouterr().err == (
        "pyro-vae: 3 epochs in 12.3 s (eager step); validation ELBO -95.50 ± 0.25 nats per point "
        f"(untrained: -200.00); results in {tmp_path}\n"
    )
    worse = Messages(
        SimpleNamespace(history=rows(-100.0, -150.0)), tmp_path, lr=0.5, layered=False, quiet=True
    )
    worse.on_end(state)
    assert capsys.readouterr().err == (
        "pyro-vae: warning: the validation ELBO ended below the untrained model's (-150 < -100): "
        "the learning rate may be too large (train.lr = 0.5)\n"
    )


@pytest.mark.parametrize(
    ("layered", "why"),
    [(False, "it has no closed form here"), (True, "it would be biased below the top layer")],
    ids=["flat", "layered"],
)
def test_messages_say_when_the_kl_is_monte_carlo(tmp_path, capsys, layered, why):
    history = rows(-200.0, -100.0, estimator="monte_carlo")
    Messages(SimpleNamespace(history=history), tmp_path, lr=1e-3, layered=layered, quiet=False).on_start(
        new_state()
    )
    assert capsys.readouterr().err == (
        f"pyro-vae: KL(q || p) is estimated by Monte Carlo ({why}), in the metrics and in objectives "
        "that would use the closed form\n"
    )


@pytest.mark.figures
def test_a_trained_run_ends_with_its_pictures(tmp_path):
    """``pyro-vae train`` draws the run's pictures at its end (the other tests skip them)."""
    from pyro_vae.cli.main import main

    run_dir = tmp_path / "run"
    tiny = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]", "--quiet"]
    assert main(["train", "--train.epochs", "1", "--train.run_dir", str(run_dir), *tiny]) == 0
    pictures = {p.name for p in run_dir.glob("*.png")}
    names = ["curves", "samples", "reconstructions", "interpolation", "latent", "latent_grid"]
    assert pictures == {f"{name}.png" for name in names}
    assert all((run_dir / name).stat().st_size > 1000 for name in pictures)


def test_other_tests_train_without_pictures(tmp_path):
    """The suite's own switch (tests/conftest.py): without the ``figures`` mark, none is drawn."""
    from pyro_vae.cli.main import main

    run_dir = tmp_path / "run"
    tiny = ["--model.encoder.hidden", "[16]", "--model.decoder.hidden", "[16]", "--quiet"]
    assert main(["train", "--train.epochs", "1", "--train.run_dir", str(run_dir), *tiny]) == 0
    assert not list(run_dir.glob("*.png")) and (run_dir / "checkpoint.pt").is_file()
