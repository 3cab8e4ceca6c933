"""Learning-rate schedules: each one's rate at every epoch against its formula."""

import math

import pytest
import torch

from pyro_vae.training.schedules import depends_on_epochs, make_lr_schedule

EPOCHS = 3280  # Burda et al.'s 8 stages: Σ 3^i, i < 8


def burda_stage(e: int) -> int:
    """The stage i whose epochs [Σ_{j<i} 3^j, Σ_{j<=i} 3^j) hold epoch e (the last after them)."""
    return min(7, next(i for i in range(9) if e < (3 ** (i + 1) - 1) // 2))


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("constant", {}, lambda e: 1.0),
        ("exponential", {"gamma": 0.99}, lambda e: 0.99**e),
        ("step", {"every": 100, "gamma": 0.5}, lambda e: 0.5 ** (e // 100)),
        ("cosine", {"period": None, "min_lr": 0.0}, lambda e: (1 + math.cos(math.pi * e / EPOCHS)) / 2),
        ("cosine", {"period": 1000, "min_lr": 1e-4},
         lambda e: 0.1 + 0.9 * (1 + math.cos(math.pi * e / 1000)) / 2 if e <= 1000 else None),
        # stage i holds epochs [Σ_{j<i} 3^j, Σ_{j<=i} 3^j) at 10^(-i/7)
        ("burda", {"stages": 8}, lambda e: 10 ** (-burda_stage(e) / 7)),
    ],
    ids=["constant", "exponential", "step", "cosine", "cosine-period", "burda"],
)  # fmt: skip
def test_schedules_follow_their_formulas(kind, params, expected):
    lr = 1e-3
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = make_lr_schedule(kind, optimizer, epochs=EPOCHS, **params)
    for e in range(EPOCHS):
        want = expected(e)
        if want is not None:
            assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * want, rel=1e-9, abs=1e-15), e
        optimizer.step()
        schedule.step()


def test_burda_schedule_epoch_count():
    assert sum(3**i for i in range(8)) == EPOCHS


def test_only_a_cosine_without_a_period_follows_train_epochs():
    assert depends_on_epochs("cosine", {})
    assert depends_on_epochs("cosine", {"period": None})
    assert not depends_on_epochs("cosine", {"period": 10})
    assert not any(depends_on_epochs(k, {}) for k in ("constant", "exponential", "step", "burda"))


def test_a_cosine_over_train_epochs_reaches_min_lr_at_the_last_epoch():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    schedule = make_lr_schedule("cosine", optimizer, epochs=10, min_lr=0.01)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(10):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == 0.5 and rates[5] == pytest.approx(0.01 + 0.49 / 2) and rates[10] == pytest.approx(0.01)
