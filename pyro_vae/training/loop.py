"""The training loop: epochs of minibatch steps, and callbacks at the ends of epochs.

The loop only trains. What changes as it runs is one explicit :class:`TrainState`: epochs
and steps done, the position within an unfinished epoch, seconds spent, the optimizer, the
learning-rate schedule and the best epoch so far. Its ``state_dict`` is what a checkpoint
saves and ``load_state_dict`` what a resumed run restores, so that a run stopped anywhere,
even between two steps of an epoch, continues bit for bit as if it had never stopped (with
the RNG state, which the checkpoint holds). The data order of epoch e is a permutation
drawn from its own generator keyed by (seed, e) (:func:`data_order`), so a resumed epoch
visits the points in the same order without saving it, and no draw of training moves it.

Metrics, checkpoints, the progress bar and figures are :class:`Callback` objects it calls
(:mod:`pyro_vae.training.callbacks`). The training loss is summed on the device and read once per
epoch; between steps the loop reads only host values (the step count, the clock, a flag
set by SIGINT/SIGTERM, :mod:`pyro_vae.core.interrupts`).

With several processes (:mod:`pyro_vae.core.distributed`) ``batch_size`` is the global minibatch:
each takes its share of the same global order, the epoch's loss is summed across them once
per epoch, and a stop is voted on, so that all stop after the same step. The state they hold
is the same on every process but for ``epoch_loss``, each one's part of the sum.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pyro_vae.core.distributed import Vote, World
from pyro_vae.core.errors import PyroVAEError
from pyro_vae.core.interrupts import Interrupted, Signals

#: the vote of a process whose time budget (``max_seconds``) is spent; a signal votes its number
_OUT_OF_TIME = 1


class Diverged(PyroVAEError):
    """The training loss became ``loss`` (NaN or infinite) in epoch ``epoch``, at learning rate ``lr``."""

    def __init__(self, message: str, epoch: int = 0, lr: float = 0.0, loss: float = math.nan):
        super().__init__(message)
        self.epoch, self.lr, self.loss = epoch, lr, loss


@dataclass
class TrainState:
    """Everything about a run that training changes."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    #: epochs completed
    epoch: int = 0
    #: optimizer updates made
    step: int = 0
    #: seconds spent in training steps (evaluation and callbacks not counted)
    seconds: float = 0.0
    #: the unfinished epoch: minibatches done in it, their summed loss (on the device), the
    #: points they held and the seconds they took
    batch: int = 0
    epoch_loss: torch.Tensor | None = None
    epoch_points: int = 0
    epoch_seconds: float = 0.0
    #: the epoch with the best validation score so far (set by the metrics), and that score: the
    #: ELBO, or for a guide with no ELBO (the delta guide) the reconstruction term
    #: (:func:`pyro_vae.training.callbacks.criterion`); named for the ELBO, as checkpoints hold it
    best_epoch: int | None = None
    best_elbo: float = -math.inf
    #: why training stops before its last epoch (early stopping); not saved
    stop: str | None = field(default=None, compare=False)

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "seconds": self.seconds,
            "batch": self.batch,
            "epoch_loss": self.epoch_loss,
            "epoch_points": self.epoch_points,
            "epoch_seconds": self.epoch_seconds,
            "best_epoch": self.best_epoch,
            "best_elbo": self.best_elbo,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }

    def load_state_dict(self, values: dict) -> None:
        self.optimizer.load_state_dict(values["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(values["scheduler"])
        for name in ("epoch", "step", "seconds", "batch", "epoch_loss", "epoch_points", "epoch_seconds"):
            setattr(self, name, values[name])
        self.best_epoch, self.best_elbo = values["best_epoch"], values["best_elbo"]

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


@dataclass
class Epoch:
    """What one epoch of training measured: the mean training loss per point (one host read)."""

    loss: float
    points: int
    seconds: float
    #: the learning rate the epoch's steps used
    lr: float
    #: what the epoch's last step ran ("compiled" or "eager", :mod:`pyro_vae.training.compiled`) and the
    #: seconds its steps spent capturing and compiling (part of ``seconds``)
    path: str = "eager"
    compile_seconds: float = 0.0


class Callback:
    """Called by :func:`fit`; override what you need."""

    def on_start(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState, epoch: Epoch) -> None:
        pass

    def on_interrupt(self, state: TrainState) -> None:
        """A signal stopped training at ``state`` (possibly within an epoch): save it now."""

    def on_end(self, state: TrainState) -> None:
        pass

    def close(self) -> None:
        """Called last, however training ended (finished, interrupted, diverged, failed)."""


def data_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The order in which epoch ``epoch`` (0-based) visits ``n`` points: a permutation from a
    generator keyed by ``(seed, epoch)``, on the CPU."""
    if not shuffle:
        return torch.arange(n)
    key = np.random.SeedSequence([seed & (2**64 - 1), epoch]).generate_state(1, np.uint64)[0]
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(key)))


def fit(
    state: TrainState,
    step,
    train: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    max_seconds: float | None = None,
    device: torch.device | None = None,
    callbacks: Sequence[Callback] = (),
    signals: Signals | None = None,
    world: World | None = None,
    minibatch=None,
) -> TrainState:
    """Train until ``state.epoch == epochs``, ``max_seconds`` of steps, or a callback sets
    ``state.stop``; returns ``state``. A signal in ``signals`` stops training after the current
    step: the callbacks' ``on_interrupt`` saves the state, then :class:`Interrupted` is raised.

    :param step: called as ``step(x, index=..., epoch=..., step=...)`` on each minibatch of
        points ``index`` (a :class:`~pyro_vae.training.step.TrainStep`), returning the loss on the device.
    :param world: the processes training together; each holds all of ``train``.
    :param minibatch: optional ``minibatch(x, index, epoch)``: what a step trains on, made from the
        points ``x`` = ``train[index]`` in epoch ``epoch`` (0-based), such as a fresh binarization
        (:mod:`pyro_vae.training.binarize`); by default ``x`` itself.
    """
    stops = _Stops(state, signals or Signals(), world or World(), max_seconds, callbacks)
    try:
        for callback in callbacks:
            callback.on_start(state)
        spent = stops.out_of_time()  # the same on every process: the seconds of the checkpoint
        while state.epoch < epochs and state.stop is None and not spent:
            stops.check()
            order = data_order(len(train), seed, state.epoch, shuffle).to(train.device)
            spent = _epoch(state, step, train, order, stops, batch_size, device or train.device, minibatch)
        stops.check()
        for callback in callbacks:
            callback.on_end(state)
    finally:
        for callback in callbacks:
            callback.close()
    return state


class _Stops:
    """When training stops early, agreed by every process: a signal (the vote is its number) or
    the time budget spent (:data:`_OUT_OF_TIME`, on one process's clock)."""

    def __init__(self, state, signals: Signals, world: World, max_seconds, callbacks):
        self.state, self.signals, self.world = state, signals, world
        self.max_seconds, self.callbacks = max_seconds, callbacks
        self.vote = Vote(world)

    def out_of_time(self, extra: float = 0.0) -> bool:
        return self.max_seconds is not None and self.state.seconds + extra >= self.max_seconds

    def agreed(self, code: int) -> int:
        """The agreed vote, which a signal that reached another process sets here too."""
        if code > _OUT_OF_TIME:
            self.signals.received = self.signals.received or code
        return code

    def mine(self, late: bool) -> int:
        """This process's vote: its signal, else whether its time is spent."""
        return self.signals.received or (_OUT_OF_TIME if late else 0)

    def check(self) -> None:
        """Between epochs: stop here if a signal reached any process."""
        if self.agreed(self.vote.settle(self.signals.received or 0)) > _OUT_OF_TIME:
            self.interrupt()

    def interrupt(self) -> None:
        state = self.state
        if state.epoch_loss is not None:
            state.epoch_loss = self.world.sum(state.epoch_loss)  # the checkpoint holds the whole sum
        if state.epoch_loss is not None and not math.isfinite(state.epoch_loss.item()):
            _diverged(state, state.epoch_loss.item())
        for callback in self.callbacks:
            callback.on_interrupt(state)
        where = f"after epoch {state.epoch}"
        if state.batch:
            where = f"in epoch {state.epoch + 1} at step {state.step}"
        raise Interrupted(f"interrupted by {self.signals.name} {where}", self.signals.received or 0)


def _epoch(state: TrainState, step, train, order, stops: _Stops, batch_size: int, device, minibatch) -> bool:
    """One epoch, or the rest of one a checkpoint stopped in; the callbacks' ``on_epoch_end``
    after it. Returns whether the time budget is spent (all processes stop after this epoch)."""
    if state.batch == 0:
        state.epoch_loss, state.epoch_points, state.epoch_seconds = torch.zeros((), device=device), 0, 0.0
    compiling = getattr(step, "compile_seconds", 0.0)
    code = _steps(state, step, train, order, stops, batch_size, device, minibatch)
    if code > _OUT_OF_TIME and state.batch * batch_size < len(train):
        stops.interrupt()  # within the epoch
    epoch = _end_epoch(state, step, stops.world, compiling)
    for callback in stops.callbacks:
        callback.on_epoch_end(state, epoch)
    return code == _OUT_OF_TIME


def _steps(state: TrainState, step, train, order, stops: _Stops, batch_size: int, device, minibatch) -> int:
    """The epoch's minibatch steps from ``state.batch`` on, until its end or an agreed stop;
    returns the agreed vote (0: none)."""
    assert state.epoch_loss is not None
    n, world, start, code = len(train), stops.world, time.perf_counter(), 0
    for i in range(state.batch * batch_size, n, batch_size):
        batch = order[i : i + batch_size]  # the global minibatch
        index = world.share(batch)
        x = train[index].to(device, non_blocking=True)  # no-op when held there
        index = index.to(device, non_blocking=True)
        if minibatch is not None:
            x = minibatch(x, index, state.epoch)
        state.epoch_loss += step(x, index=index, epoch=state.epoch + i / n, step=state.step)
        state.step, state.batch = state.step + 1, state.batch + 1
        state.epoch_points += len(batch)
        late = stops.out_of_time(state.epoch_seconds + time.perf_counter() - start)
        code = stops.agreed(stops.vote(stops.mine(late)))
        if code:
            break
    state.epoch_seconds += time.perf_counter() - start
    if not code:  # this step's vote, waited for at the epoch's end
        code = stops.agreed(stops.vote.settle(stops.mine(stops.out_of_time(state.epoch_seconds))))
    return code


def _end_epoch(state: TrainState, step, world: World, compiling: float) -> Epoch:
    """The epoch's loss summed across processes and read once, the state moved to the next
    epoch, and the schedule stepped."""
    assert state.epoch_loss is not None
    state.epoch_loss = world.sum(state.epoch_loss)
    loss = state.epoch_loss.item() / state.epoch_points  # the epoch's one host read of the loss
    if not math.isfinite(loss):
        _diverged(state, loss)
    epoch = Epoch(
        loss=loss,
        points=state.epoch_points,
        seconds=state.epoch_seconds,
        lr=state.lr,
        path=getattr(step, "path", "eager"),
        compile_seconds=getattr(step, "compile_seconds", 0.0) - compiling,
    )
    state.epoch, state.seconds = state.epoch + 1, state.seconds + state.epoch_seconds
    state.batch, state.epoch_loss, state.epoch_points, state.epoch_seconds = 0, None, 0, 0.0
    if state.scheduler is not None:
        state.scheduler.step()
    return epoch


def _diverged(state: TrainState, loss: float):
    raise Diverged(
        f"training diverged in epoch {state.epoch + 1}: the loss is {loss}", state.epoch + 1, state.lr, loss
    )
