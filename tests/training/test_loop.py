"""The training loop: epochs, steps, progress passed to the step, epoch losses, callbacks."""

import math
import signal
from types import SimpleNamespace

import pytest
import torch

from pyro_vae.core.errors import PyroVAEError
from pyro_vae.core.interrupts import Interrupted, Signals
from pyro_vae.training import loop
from pyro_vae.training.loop import Callback, Epoch, TrainState, data_order, fit


class FakeStep:
    """Records each call's (batch, epoch, step); returns the batch's sum (a loss per point sum)."""

    def __init__(self, value=None):
        self.calls = []
        self.value = value

    def __call__(self, x, *, index=None, epoch, step):
        self.calls.append((x.clone(), epoch, step))
        return x.sum() if self.value is None else torch.tensor(self.value, device=x.device)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, state):
        self.events.append(("start", state.epoch, state.step))

    def on_epoch_end(self, state, epoch):
        self.events.append(("epoch", state.epoch, state.step, epoch))

    def on_end(self, state):
        self.events.append(("end", state.epoch, state.step))


def make_state(lr=0.1):
    return TrainState(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr))


def data(device, n=10):
    # distinct values so that which points a step saw can be read back
    return (torch.arange(n, dtype=torch.float32) * 1.5 + 1.0).unsqueeze(1).to(device)


@pytest.mark.parametrize("shuffle", [True, False])
def test_epochs_steps_progress_and_losses(device, shuffle):
    train = data(device)
    step, rec = FakeStep(), Recorder()
    state = fit(make_state(), step, train, epochs=3, batch_size=4, shuffle=shuffle, callbacks=[rec])
    assert (state.epoch, state.step) == (3, 9)  # ceil(10 / 4) = 3 steps an epoch
    assert [s for _, _, s in step.calls] == list(range(9))
    expected_epochs = [e + i / 10 for e in range(3) for i in (0, 4, 8)]
    assert [e for _, e, _ in step.calls] == pytest.approx(expected_epochs, abs=0, rel=0)
    assert [len(x) for x, _, _ in step.calls] == [4, 4, 2] * 3
    for e in range(3):
        seen = torch.cat([x for x, _, _ in step.calls[3 * e : 3 * e + 3]])[:, 0].cpu()
        values = train[:, 0].cpu()
        if shuffle:
            assert torch.equal(seen.sort().values, values)  # a permutation: each point once
        else:
            assert torch.equal(seen, values)  # in order
        assert all(x.device == train.device for x, _, _ in step.calls)
    if shuffle:  # with seed 0, at least one epoch's order is not the identity
        orders = [torch.cat([x for x, _, _ in step.calls[3 * e : 3 * e + 3]])[:, 0].cpu() for e in range(3)]
        assert any(not torch.equal(o, train[:, 0].cpu()) for o in orders)
    # callbacks: in order, with the state values at that moment
    kinds = [ev[0] for ev in rec.events]
    assert kinds == ["start", "epoch", "epoch", "epoch", "end"]
    assert rec.events[0] == ("start", 0, 0)
    assert rec.events[-1] == ("end", 3, 9)
    mean_loss = train.sum().item() / 10
    for e, ev in enumerate(rec.events[1:4]):
        _, epoch_done, steps_done, info = ev
        assert (epoch_done, steps_done) == (e + 1, 3 * (e + 1))
        assert isinstance(info, Epoch)
        assert info.points == 10
        assert info.loss == pytest.approx(mean_loss, rel=1e-6)
        assert info.seconds >= 0
    assert state.seconds > 0


def test_loss_is_mean_per_point_of_the_returned_losses():
    train = data("cpu", n=7)
    rec = Recorder()
    calls = []

    def step(x, *, index=None, epoch, step):
        calls.append(len(x))
        return 2.0 * x.sum() + 1.0  # not a per-point sum: 1 extra per step

    fit(make_state(), step, train, epochs=1, batch_size=3, shuffle=False, callbacks=[rec])
    info = rec.events[1][3]
    assert calls == [3, 3, 1]
    assert info.loss == pytest.approx((2.0 * train.sum().item() + 3.0) / 7, rel=1e-6)


def test_max_seconds_stops_early(monkeypatch):
    # the loop's clock moves only with the steps (0.05 s each), so the count does not depend on
    # how fast the machine is
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock.now)
    step, rec = FakeStep(), Recorder()

    def timed(x, **kwargs):
        clock.now += 0.05
        return step(x, **kwargs)

    train = data("cpu")
    state = fit(make_state(), timed, train, epochs=5, batch_size=1, max_seconds=0.12, callbacks=[rec])
    assert state.step == 3  # 0.05, 0.10, then 0.15 > 0.12: stopped within the first epoch
    assert state.epoch == 1
    assert state.seconds == pytest.approx(0.15)
    info = rec.events[1][3]
    assert info.points == state.step == len(step.calls)


def test_non_finite_loss_raises_naming_epoch_and_lr():
    state = make_state(lr=0.125)
    state.epoch = 2  # the third epoch diverges
    with pytest.raises(PyroVAEError, match=r"training diverged in epoch 3: the loss is nan") as e:
        fit(state, FakeStep(value=math.nan), data("cpu"), epochs=5, batch_size=4)
    assert (e.value.epoch, e.value.lr) == (3, 0.125)  # the trainer says what to try
    with pytest.raises(PyroVAEError, match="inf"):
        fit(make_state(), FakeStep(value=math.inf), data("cpu"), epochs=1, batch_size=4)


def test_finished_state_runs_no_step():
    state = make_state()
    state.epoch, state.step = 4, 17
    step, rec = FakeStep(), Recorder()
    out = fit(state, step, data("cpu"), epochs=4, batch_size=4, callbacks=[rec])
    assert out is state
    assert step.calls == []
    assert (state.epoch, state.step, state.seconds) == (4, 17, 0.0)
    assert rec.events == [("start", 4, 17), ("end", 4, 17)]


def test_resumed_state_continues_progress():
    state = make_state()
    state.epoch, state.step = 1, 5
    step = FakeStep()
    fit(state, step, data("cpu"), epochs=2, batch_size=5, shuffle=False)
    assert [(e, s) for _, e, s in step.calls] == [(1.0, 5), (1.5, 6)]
    assert (state.epoch, state.step) == (2, 7)


def test_state_dict_round_trip():
    state = make_state(lr=0.3)
    state.epoch, state.step, state.seconds, state.batch = 2, 11, 1.5, 3
    state.epoch_loss, state.epoch_points, state.best_epoch, state.best_elbo = torch.tensor(4.0), 12, 1, -3.5
    sd = state.state_dict()
    assert (sd["epoch"], sd["step"], sd["seconds"], sd["batch"], sd["epoch_points"]) == (2, 11, 1.5, 3, 12)
    assert (sd["best_epoch"], sd["best_elbo"]) == (1, -3.5)
    assert sd["optimizer"]["param_groups"][0]["lr"] == 0.3
    assert sd["optimizer"] == state.optimizer.state_dict()
    other = make_state(lr=0.9)
    other.load_state_dict(sd)
    assert other.state_dict().keys() == sd.keys()
    assert {k: v for k, v in other.state_dict().items() if k != "epoch_loss"} == {
        k: v for k, v in sd.items() if k != "epoch_loss"
    }
    assert other.lr == 0.3 and other.epoch_loss.item() == 4.0


def test_data_order_is_a_permutation_keyed_by_seed_and_epoch():
    a = data_order(50, seed=3, epoch=0)
    assert torch.equal(a.sort().values, torch.arange(50))
    assert torch.equal(a, data_order(50, seed=3, epoch=0))  # no global state involved
    torch.manual_seed(123)  # ...the global generator does not move it
    assert torch.equal(a, data_order(50, seed=3, epoch=0))
    assert not torch.equal(a, data_order(50, seed=3, epoch=1))
    assert not torch.equal(a, data_order(50, seed=4, epoch=0))
    assert torch.equal(data_order(5, seed=3, epoch=0, shuffle=False), torch.arange(5))
    assert torch.equal(data_order(5, seed=-1, epoch=2).sort().values, torch.arange(5))  # any integer seed


class Interrupter(FakeStep):
    """A step that raises the stop flag after ``after`` calls, as SIGINT's handler does."""

    def __init__(self, signals, after):
        super().__init__()
        self.signals, self.after = signals, after

    def __call__(self, x, *, index=None, epoch, step):
        out = super().__call__(x, epoch=epoch, step=step)
        if len(self.calls) == self.after:
            self.signals.received = signal.SIGINT
        return out


class Saver(Recorder):
    def on_interrupt(self, state):
        self.saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.state_dict().items()}
        self.events.append(("interrupt", state.epoch, state.step))


@pytest.mark.parametrize("after", [1, 5, 6, 9])  # within epochs, at the last batch of one, at the end
def test_an_interrupted_fit_resumes_to_the_uninterrupted_one(after):
    train = data("cpu")
    whole, whole_rec = FakeStep(), Recorder()
    fit(make_state(), whole, train, epochs=3, batch_size=4, seed=7, callbacks=[whole_rec])

    signals = Signals()
    first, saver = Interrupter(signals, after), Saver()
    with pytest.raises(Interrupted, match="interrupted by SIGINT") as info:
        fit(make_state(), first, train, epochs=3, batch_size=4, seed=7, callbacks=[saver], signals=signals)
    assert info.value.exit_status == 130
    assert saver.events[-1][0] == "interrupt" and saver.saved["step"] == after
    state = make_state()
    state.load_state_dict(saver.saved)
    rest, rest_rec = FakeStep(), Recorder()
    fit(state, rest, train, epochs=3, batch_size=4, seed=7, callbacks=[rest_rec])
    calls = first.calls + rest.calls
    assert len(calls) == len(whole.calls) == 9
    for (x, e, s), (y, f, t) in zip(calls, whole.calls, strict=True):
        assert torch.equal(x, y) and e == f and s == t
    done = [ev for ev in saver.events + rest_rec.events if ev[0] == "epoch"]
    expected = [ev for ev in whole_rec.events if ev[0] == "epoch"]
    assert [(ev[1], ev[2], ev[3].loss, ev[3].points) for ev in done] == [
        (ev[1], ev[2], ev[3].loss, ev[3].points) for ev in expected
    ]


def test_the_schedule_steps_once_per_epoch_and_epochs_report_their_rate():
    state = make_state(lr=0.1)
    state.scheduler = torch.optim.lr_scheduler.ExponentialLR(state.optimizer, gamma=0.5)
    rec = Recorder()

    def step(x, *, index=None, epoch, step):
        state.optimizer.step()  # as a real step does, before the schedule's
        return x.sum()

    fit(state, step, data("cpu"), epochs=3, batch_size=4, callbacks=[rec])
    assert [ev[3].lr for ev in rec.events if ev[0] == "epoch"] == pytest.approx([0.1, 0.05, 0.025], rel=1e-12)
    assert state.lr == pytest.approx(0.0125, rel=1e-12)


def test_a_callback_stops_training_and_close_runs_however_it_ends():
    class StopAfterTwo(Recorder):
        closed = 0

        def on_epoch_end(self, state, epoch):
            super().on_epoch_end(state, epoch)
            if state.epoch == 2:
                state.stop = "enough"

        def close(self):
            self.closed += 1

    rec = StopAfterTwo()
    state = fit(make_state(), FakeStep(), data("cpu"), epochs=10, batch_size=4, callbacks=[rec])
    assert state.epoch == 2 and state.stop == "enough" and rec.events[-1][0] == "end" and rec.closed == 1
    failing = StopAfterTwo()
    with pytest.raises(PyroVAEError):
        fit(make_state(), FakeStep(value=math.nan), data("cpu"), epochs=3, batch_size=4, callbacks=[failing])
    assert failing.closed == 1 and failing.events[-1][0] == "start"
