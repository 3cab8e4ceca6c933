"""Curves on axes that never lose a point silently: the numbers as printed, the axis fit_y
chooses among its three, the points it leaves out marked on the edge and named, and curve's
rows."""

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from pyro_vae.pictures.axes import _wrap, curve, fit_y, number


@pytest.mark.parametrize(
    ("value", "digits", "printed"),
    [
        (-543.25, None, "−543.2"),
        (3.14159, None, "3.14"),
        (-0.001, None, "0.00"),
        (12.0, 3, "12.000"),
        (-9.999, None, "−10.00"),
    ],
)
def test_number_is_fixed_point_with_a_true_minus(value, digits, printed):
    assert number(value, digits) == printed


def axes_with(*curves):
    ax = Figure().add_subplot()
    lines = [(name, ax.plot(np.arange(len(y)), y)[0]) for name, y in curves]
    return ax, lines


def test_fit_y_shows_every_point_when_they_are_close():
    y = [-130.0, -125.0, -121.0, -120.0, -119.5]
    ax, lines = axes_with(("valid", y))
    assert fit_y(ax, lines) == []
    lo, hi = ax.get_ylim()
    span = max(y) - min(y)
    assert (lo, hi) == pytest.approx((min(y) - 0.05 * span, max(y) + 0.05 * span))


def test_fit_y_leaves_out_a_far_first_epoch_and_names_it():
    y = [-543.2, *np.linspace(-130.0, -110.0, 40)]  # epoch 0 hundreds of nats below
    ax, lines = axes_with(("valid", y))
    notes = fit_y(ax, lines)
    # the later epochs (from epoch 2 = 40 // 20 on) set the axis: [-129.5, -110] padded by 5 %
    later = np.array(y[2:])
    span = later.max() - later.min()
    assert ax.get_ylim() == pytest.approx((later.min() - 0.05 * span, later.max() + 0.05 * span))
    assert notes == ["▼ below the axis: valid, epoch 0: −543.2"]
    edge = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert len(edge) == 1 and edge[0].get_ydata().tolist() == [ax.get_ylim()[0]]
    assert edge[0].get_color() == lines[0][1].get_color()


def test_fit_y_with_lowest_drops_a_slow_start_among_many_and_summarises_it():
    # four runs from -100 (a fifth of the later points exactly there) to -98; a fifth run starts
    # 300 nats below for 4 epochs, 3 of them later ones: 3 % of the later points, under the 5 %
    # quantile, which is then -100: the axis is [-100, -98] padded by 5 %
    fast = [(f"fast {i}", [-100.0] * 5 + list(np.linspace(-100.0, -98.0, 15))) for i in range(4)]
    slow = ("slow", [*np.linspace(-400.0, -300.0, 4), *np.linspace(-99.5, -98.0, 16)])
    ax, lines = axes_with(*fast, slow)
    notes = fit_y(ax, lines, lowest=0.05)
    assert ax.get_ylim() == pytest.approx((-100.1, -97.9))
    # more than NAMED (3) points of one curve: how many, which epochs, their range
    assert notes == ["▼ below the axis: slow, 4 epochs (0–3): −400.0 to −300.0"]


def test_wrap_breaks_after_separators_only():
    line = "; ".join(f"run {i}, epoch 0: −500.0" for i in range(4))
    wrapped = _wrap(line, 40)
    assert wrapped.replace(";\n", "; ") == line
    assert all(len(piece) <= 40 + 2 for piece in wrapped.split("\n"))


def test_curve_skips_rows_without_a_finite_value_and_applies_the_sign():
    rows = [
        {"epoch": 0, "kl": None},
        {"epoch": 1, "kl": 2.0},
        {"epoch": 2, "kl": math.nan},
        {"epoch": 3, "kl": 3.5},
    ]
    ax = Figure().add_subplot()
    line = curve(ax, rows, "kl", sign=-1.0)
    assert list(line.get_xdata()) == [1, 3] and list(line.get_ydata()) == [-2.0, -3.5]
    single = curve(ax, rows[:2], "kl")
    assert single.get_marker() == "o"  # one epoch is drawn as a point
    assert curve(ax, rows, "missing") is None
