"""Learning-rate schedules, ``train.lr_schedule``: torch's schedulers, stepped once per epoch.

Each entry builds a :class:`torch.optim.lr_scheduler.LRScheduler` for the optimizer; its
keyword-only arguments are the options a config sets (``lr_schedule = { kind = "step",
every = 100, gamma = 0.5 }``). With η₀ = ``train.lr`` and e the epochs completed:

* ``constant``: η_e = η₀;
* ``exponential``: η_e = η₀ γ^e;
* ``step``: η_e = η₀ γ^⌊e / every⌋;
* ``cosine``: η_e = η_min + (η₀ − η_min)(1 + cos(π e / T)) / 2 over a period of T epochs
  (Loshchilov & Hutter 2017, SGDR, without restarts), T = ``train.epochs`` unless ``period``
  is set;
* ``burda``: the schedule of Burda et al. (2016, "Importance Weighted Autoencoders", §5):
  stage i = 0 … ``stages`` − 1 lasts 3^i epochs at η₀ · 10^(−i/7), 3280 epochs for the
  paper's 8 stages, and the last stage's rate after them.

The scheduler's ``state_dict`` is part of the training state a checkpoint saves, so a resumed
run continues the schedule where it stopped. A schedule of a user's is one more entry::

    @register_lr_schedule("linear")
    def linear(optimizer, /, *, epochs, end: float = 0.1):
        return torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, end, total_iters=epochs)
"""

import itertools
from typing import Annotated

import torch
from torch.optim import lr_scheduler

from pyro_vae.core.options import NonNegativeFloat, PositiveInt, Range
from pyro_vae.core.registry import LR_SCHEDULES

register_lr_schedule = LR_SCHEDULES.register

Factor = Annotated[float, Range(lo=0, hi=1, lo_open=True)]


@register_lr_schedule("constant")
def constant(optimizer: torch.optim.Optimizer, /, *, epochs: int) -> lr_scheduler.LRScheduler:
    """η_e = η₀: the learning rate never changes."""
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


@register_lr_schedule("exponential")
def exponential(optimizer, /, *, epochs: int, gamma: Factor = 0.99) -> lr_scheduler.LRScheduler:
    """η_e = η₀ γ^e: multiplied by ``gamma`` after every epoch."""
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@register_lr_schedule("step")
def step(
    optimizer, /, *, epochs: int, every: PositiveInt = 100, gamma: Factor = 0.5
) -> lr_scheduler.LRScheduler:
    """η_e = η₀ γ^⌊e / every⌋: multiplied by ``gamma`` every ``every`` epochs."""
    return lr_scheduler.StepLR(optimizer, step_size=every, gamma=gamma)


@register_lr_schedule("cosine")
def cosine(
    optimizer, /, *, epochs: int, period: PositiveInt | None = None, min_lr: NonNegativeFloat = 0.0
) -> lr_scheduler.LRScheduler:
    """η_e = η_min + (η₀ − η_min)(1 + cos(π e / T)) / 2: a half cosine from η₀ down to
    ``min_lr`` over T = ``period`` epochs (``train.epochs`` when unset); Loshchilov & Hutter 2017."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=period or epochs, eta_min=min_lr)


@register_lr_schedule("burda")
def burda(optimizer, /, *, epochs: int, stages: PositiveInt = 8) -> lr_scheduler.LRScheduler:
    """Burda et al. (2016): stage i lasts 3^i epochs at η₀ · 10^(−i/7), for i < ``stages``
    (3280 epochs for 8)."""
    milestones = list(itertools.accumulate(3**i for i in range(stages - 1)))  # 1, 4, 13, 40, …
    return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=10 ** (-1 / 7))


def depends_on_epochs(kind: str, params: dict) -> bool:
    """Whether a schedule's shape follows ``train.epochs`` (then a resumed run may not change it)."""
    return kind == "cosine" and params.get("period") is None


def make_lr_schedule(kind: str, optimizer: torch.optim.Optimizer, *, epochs: int, **params):
    return LR_SCHEDULES.get(kind, key="train.lr_schedule.kind")(optimizer, epochs=epochs, **params)
