"""Checks of drawn figures: every point shown or named, legends clear of the data, where a
data point lies in the saved PNG."""

import itertools

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.text import Text

from pyro_vae.pictures.plots import DPI


def history(first=-543.2, epochs=12, kl=True) -> list[dict]:
    """Metrics rows as training writes them: the untrained epoch 0 hundreds of nats below the rest."""
    rows = []
    for e in range(epochs + 1):
        elbo = first if e == 0 else -120.0 + 20 * (1 - 0.7**e)
        row = {
            "epoch": e,
            "train_elbo": elbo + 0.5,
            "valid_elbo": elbo,
            "train_loss": None if e == 0 else 1.5 - elbo,
        }
        row |= {"train_recon": elbo - 6.0 - 0.1 * e, "valid_recon": elbo - 6.0 - 0.1 * e}
        row |= {"train_kl": 6.0 + 0.1 * e, "valid_kl": 6.0 + 0.1 * e} if kl else {"valid_kl": None}
        rows.append(row)
    return rows


def minus(value: float) -> str:
    return f"{value:.1f}".replace("-", "\N{MINUS SIGN}")


def texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def data_lines(fig: Figure) -> list:
    """The curves drawn from the metrics: labelled lines of more than one point (not the edge marks)."""
    return [
        line
        for ax in fig.axes
        for line in ax.get_lines()
        if len(line.get_xdata()) > 1 or line.get_label()[0] != "_"
    ]


def assert_every_point_shown_or_named(fig: Figure) -> int:
    """Each plotted value lies within its axis's limits, or the figure's text names it; returns
    how many were named."""
    named = 0
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        for line in ax.get_lines():
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
                if not lo <= y <= hi:
                    assert f"epoch {x:g}: {minus(y)}" in texts(fig), (x, y, texts(fig))
                    named += 1
    return named


def points_in_legends(fig: Figure) -> list:
    """The display coordinates of drawn data that fall inside a legend's box: every vertex of
    every line, 20 points along each of its segments, every error bar and every scatter dot."""
    FigureCanvasAgg(fig).draw()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
    boxes = [legend.get_window_extent() for legend in legends if legend]

    def dense(xy):  # a polyline and 20 points along each of its segments
        xy = np.asarray(xy, dtype=float)
        return np.concatenate([xy[:1], *(np.linspace(a, b, 21)[1:] for a, b in itertools.pairwise(xy))])

    inside = []
    for ax in fig.axes:
        drawn = [
            line.get_xydata() if line.get_linestyle() in ("None", "") else dense(line.get_xydata())
            for line in ax.get_lines()
        ]
        for c in ax.collections:
            drawn += (
                [dense(s) for s in c.get_segments()] if isinstance(c, LineCollection) else [c.get_offsets()]
            )
        for xy in drawn:
            for point in ax.transData.transform(np.asarray(xy, dtype=float)):
                inside += [tuple(point) for box in boxes if box.contains(*point)]
    return inside


def png_pixels(fig: Figure, ax, png: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Where data points ``xy`` of ``ax`` lie in ``png``, the image ``save_figure`` wrote of
    ``fig``: display coordinates at its dpi, less the corner of the box it cropped to (the
    figure's tight bounding box padded by matplotlib's 0.1 inch); (column, row) from the top."""
    fig.set_dpi(DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    box = fig.get_tightbbox(renderer).padded(0.1)  # inches
    display = ax.transData.transform(xy)
    return np.stack([display[:, 0] - box.x0 * DPI, png.shape[0] - (display[:, 1] - box.y0 * DPI)], 1)
