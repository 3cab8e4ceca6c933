"""Curves by epoch, on axes that never lose a point silently, with notes clear of the data.

:func:`curve` draws one metric of a run's rows by epoch, skipping rows without it.

A training curve starts at the untrained model, often hundreds of nats below where it ends;
an axis fitted to every point would flatten every later change into a line. :func:`fit_y`
takes the widest of three axes that spans at most ``stretch`` (3) times the narrowest, so that
the later epochs always fill at least a third of the height:

1. every point;
2. the later epochs: those after the first twentieth of the epochs drawn (at least the first
   epoch left out);
3. the later epochs from the ``lowest`` quantile of their values up (with ``lowest`` > 0:
   among many runs, a few slow starts leave the bottom instead of flattening the others).

Each point outside the axis chosen is marked where it leaves it (▼ on the bottom edge, ▲ on
the top, in its curve's colour) and named, with its epoch and value, in a note that
:func:`note_below` writes under the axis.
"""

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

STRETCH = 3.0  # how much wider than the later epochs' span an axis of every point may be
NAMED = 3  # a curve with more points off the axis is summarised: how many, which epochs, their range


def number(value: float, digits: int | None = None) -> str:
    """``value`` as printed on the figures: fixed point with ``digits`` decimals (by default 1,
    2 below 10 in size), and a true minus sign (U+2212)."""
    digits = (1 if abs(value) >= 10 else 2) if digits is None else digits
    return f"{round(value, digits) + 0.0:.{digits}f}".replace("-", "−")  # + 0.0: no "−0.00"


def fit_y(
    ax: Axes, curves: list[tuple[str, Line2D]], *, lowest: float = 0.0, stretch: float = STRETCH
) -> list[str]:
    """Set the y-limits of ``ax`` to show ``curves`` (name, plotted line); return the note naming
    the points it leaves out, one line per direction (empty when it shows every point)."""
    data: list[tuple[str, Line2D, np.ndarray, np.ndarray]] = []  # name, line, epochs, values
    for name, line in curves:
        x, y = (np.asarray(a, dtype=float) for a in line.get_data())
        if len(y):
            data.append((name, line, x, y))
    if not data:
        return []
    every, epochs = np.concatenate([d[3] for d in data]), np.concatenate([d[2] for d in data])
    start = epochs.min()
    later = every[epochs >= start + max(1, (epochs.max() - start) // 20)]  # past the first twentieth
    later = later if len(later) else every
    core = float(np.quantile(later, lowest)), float(later.max())  # the narrowest axis, 3.
    for lo, hi in ((float(every.min()), float(every.max())), (float(later.min()), core[1]), core):
        if hi - lo <= stretch * (core[1] - core[0]):
            break  # the widest that leaves the later epochs at least 1 / stretch of the height
    pad = 0.05 * (hi - lo) or 1.0
    bottom, top = lo - pad, hi + pad
    ax.set_ylim(bottom, top)
    notes = []
    for edge, marker, words in ((bottom, "v", "below"), (top, "^", "above")):
        named = []
        for name, line, x, y in data:
            cut = y < edge if marker == "v" else y > edge
            if cut.any():
                # drawn on the edge, outside the clip box, so that the mark is never hidden
                ax.plot(
                    x[cut],
                    np.full(cut.sum(), edge),
                    ls="",
                    marker=marker,
                    ms=6,
                    clip_on=False,
                    color=line.get_color(),
                    zorder=3,
                )
                named.append(_name_points(name, x[cut], y[cut]))
        if named:
            notes.append(f"{'▼' if marker == 'v' else '▲'} {words} the axis: " + "; ".join(named))
    return notes


def _name_points(name: str, epochs: np.ndarray, values: np.ndarray) -> str:
    """ "train, epoch 0: −321.9", or for many points their number, epochs and range."""
    if len(values) <= NAMED:
        return f"{name}, " + ", ".join(
            f"epoch {e:g}: {number(v)}" for e, v in zip(epochs, values, strict=True)
        )
    return (
        f"{name}, {len(values)} epochs ({epochs.min():g}–{epochs.max():g}): "
        f"{number(values.min())} to {number(values.max())}"
    )


def note_below(ax: Axes, lines: list[str], *, width: int = 60) -> None:
    """Write ``lines`` (wrapped at ``width`` characters) in small type under the x-axis label of
    ``ax``, where no data are drawn; the figure's constrained layout makes room for them."""
    if not lines:
        return
    text = "\n".join(_wrap(line, width) for line in lines)
    ax.annotate(
        text,
        xy=(0.5, 0.0),
        xycoords=ax.xaxis.label,
        xytext=(0, -3),
        textcoords="offset points",
        ha="center",
        va="top",
        fontsize="small",
        color="0.25",
    )


def _wrap(line: str, width: int) -> str:
    """Break ``line`` after its "; " separators so that no piece is much wider than ``width``."""
    pieces, out = line.split("; "), ""
    for piece in pieces:
        current = out.rsplit("\n", 1)[-1]
        out += piece if not out else (f"; {piece}" if len(current) + len(piece) < width else f";\n{piece}")
    return out


def curve(ax, history, key, sign=1.0, **style) -> Line2D | None:
    """Plot ``sign * row[key]`` by epoch over the rows that have it; return the line, None if no
    row has a value (a key may be missing, or None: an autoencoder has no KL)."""
    rows = [(row.get("epoch", i), row.get(key)) for i, row in enumerate(history)]
    points = [(epoch, sign * value) for epoch, value in rows if value is not None and math.isfinite(value)]
    if not points:
        return None
    marker = "o" if len(points) == 1 else None  # a single epoch is otherwise invisible
    (line,) = ax.plot(*zip(*points, strict=True), marker=marker, **style)
    return line
