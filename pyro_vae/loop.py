"""The training loop: epochs of minibatch steps, and callbacks at the ends of epochs.

The loop only trains. What changes as it runs is one explicit :class:`TrainState` (epochs
and steps done, seconds spent, the optimizer), which it advances and a checkpoint saves;
schedules are functions of that progress (:meth:`pyro_vae.step.TrainStep.inputs`). Metrics,
checkpoints, the progress bar and figures are :class:`Callback` objects it calls at the
start, after each epoch and at the end (:mod:`pyro_vae.callbacks`). The training loss is
summed on the device and read once per epoch.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import PyroVAEError


@dataclass
class TrainState:
    """Everything about a run that training changes."""

    optimizer: torch.optim.Optimizer
    #: epochs completed
    epoch: int = 0
    #: optimizer updates made
    step: int = 0
    #: seconds spent in training steps (evaluation and callbacks not counted)
    seconds: float = 0.0

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "seconds": self.seconds,
            "optimizer": self.optimizer.state_dict(),
        }


@dataclass
class Epoch:
    """What one epoch of training measured: the mean training loss per point (one host read)."""

    loss: float
    points: int
    seconds: float


class Callback:
    """Called by :func:`fit`; override what you need."""

    def on_start(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState, epoch: Epoch) -> None:
        pass

    def on_end(self, state: TrainState) -> None:
        pass


def fit(
    state: TrainState,
    step,
    train: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    shuffle: bool = True,
    max_seconds: float | None = None,
    device: torch.device | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainState:
    """Train until ``state.epoch == epochs`` or ``max_seconds`` of steps; returns ``state``.

    :param step: called as ``step(x, epoch=..., step=...)`` on each minibatch (a
        :class:`~pyro_vae.step.TrainStep`), returning the loss on the device.
    """
    device = device or train.device
    n = len(train)

    def out_of_time(seconds: float) -> bool:
        return max_seconds is not None and seconds >= max_seconds

    for callback in callbacks:
        callback.on_start(state)
    while state.epoch < epochs and not out_of_time(state.seconds):
        start = time.perf_counter()
        order = torch.randperm(n, device=train.device) if shuffle else torch.arange(n, device=train.device)
        total, seen = torch.zeros((), device=device), 0
        for i in range(0, n, batch_size):
            x = train[order[i : i + batch_size]].to(device, non_blocking=True)  # no-op when held there
            total += step(x, epoch=state.epoch + i / n, step=state.step)
            state.step, seen = state.step + 1, seen + len(x)
            if out_of_time(state.seconds + time.perf_counter() - start):
                break
        loss = total.item() / seen  # the epoch's one host read of the training loss
        seconds = time.perf_counter() - start
        state.epoch, state.seconds = state.epoch + 1, state.seconds + seconds
        if not math.isfinite(loss):
            lr = state.optimizer.param_groups[0]["lr"]
            raise PyroVAEError(
                f"training diverged in epoch {state.epoch}: the loss is {loss}; "
                f"try a smaller --train.lr (now {lr:g})"
            )
        for callback in callbacks:
            callback.on_epoch_end(state, Epoch(loss=loss, points=seen, seconds=seconds))
    for callback in callbacks:
        callback.on_end(state)
    return state
