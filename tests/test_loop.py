"""The training loop: epochs, steps, progress passed to the step, epoch losses, callbacks."""

import math
import time

import pytest
import torch

from pyro_vae.errors import PyroVAEError
from pyro_vae.loop import Callback, Epoch, TrainState, fit


class FakeStep:
    """Records each call's (batch, epoch, step); returns the batch's sum (a loss per point sum)."""

    def __init__(self, sleep: float = 0.0, value=None):
        self.calls = []
        self.sleep, self.value = sleep, value

    def __call__(self, x, *, epoch, step):
        self.calls.append((x.clone(), epoch, step))
        if self.sleep:
            time.sleep(self.sleep)
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

    def step(x, *, epoch, step):
        calls.append(len(x))
        return 2.0 * x.sum() + 1.0  # not a per-point sum: 1 extra per step

    fit(make_state(), step, train, epochs=1, batch_size=3, shuffle=False, callbacks=[rec])
    info = rec.events[1][3]
    assert calls == [3, 3, 1]
    assert info.loss == pytest.approx((2.0 * train.sum().item() + 3.0) / 7, rel=1e-6)


def test_max_seconds_stops_early():
    train = data("cpu")
    step, rec = FakeStep(sleep=0.05), Recorder()
    state = fit(make_state(), step, train, epochs=5, batch_size=1, max_seconds=0.12, callbacks=[rec])
    assert 3 <= state.step < 10  # stopped within the first epoch
    assert state.epoch == 1
    assert state.seconds >= 0.12
    info = rec.events[1][3]
    assert info.points == state.step == len(step.calls)
    seen = torch.cat([x for x, _, _ in step.calls])
    assert info.loss == pytest.approx(seen.sum().item() / len(seen), rel=1e-6)
    assert [ev[0] for ev in rec.events] == ["start", "epoch", "end"]


def test_non_finite_loss_raises_naming_epoch_and_lr():
    state = make_state(lr=0.125)
    state.epoch = 2  # the third epoch diverges
    with pytest.raises(PyroVAEError, match=r"epoch 3.*0\.125"):
        fit(state, FakeStep(value=math.nan), data("cpu"), epochs=5, batch_size=4)
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


def test_state_dict():
    state = make_state(lr=0.3)
    state.epoch, state.step, state.seconds = 2, 11, 1.5
    sd = state.state_dict()
    assert set(sd) == {"epoch", "step", "seconds", "optimizer"}
    assert (sd["epoch"], sd["step"], sd["seconds"]) == (2, 11, 1.5)
    assert sd["optimizer"]["param_groups"][0]["lr"] == 0.3
    assert sd["optimizer"] == state.optimizer.state_dict()
