"""The pictures a training run leaves in its run directory.

* :func:`training_curves`: the ELBO per data point on training and validation data by
  epoch, and its two terms, the reconstruction term E_q[log p(x|z)] and KL(q(z|x) ‖ p(z)),
  each on its own axis (a KL ten times smaller than the reconstruction term looks ten times
  smaller). A gap between training and validation shows overfitting; a KL near zero shows
  latent dimensions the model has stopped using (posterior collapse). The axes follow
  :func:`pyro_vae.pictures.axes.fit_y`: a point left off an axis is marked at its edge and named.
* :func:`image_grid`: data points or decoded draws from the prior, tiled; samples show what
  the model believes the data look like, which the ELBO alone does not.
* :func:`reconstructions`: data points above the means of p(x|z) at their encodings: what
  the encoder-decoder pair keeps of a data point and what it blurs away.
* :func:`latent_space`: the posterior means of data points, coloured by their labels. The
  labels were never used in training, so classes that separate here were found unsupervised.

The pictures of paths through the latent space, and the decoded grid of a 2-D one, are in
:mod:`pyro_vae.pictures.latent_plots`.

Tiled images are upsampled (nearest neighbour) to at least ``TILE_PIXELS`` a side, so that
the 1-pixel grey gap between two tiles is a thin line beside them rather than an eighth of
an 8×8 digit. Shapes that cannot be drawn as images raise ValueError saying why
(:func:`image_problem`).

Figures are :class:`matplotlib.figure.Figure` objects saved directly, never through
``pyplot``: importing this module selects no backend and registers no figures, so it runs
without a display and leaves nothing global behind (an unregistered figure is freed with its
last reference). Each function accepts numpy arrays or torch tensors and returns the path
it wrote; a PNG is written under a temporary name and renamed, so a reader never sees half.
"""

import math
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from pyro_vae.core.files import atomic_write
from pyro_vae.pictures.axes import curve, fit_y, note_below

DPI = 120
TILE_INCHES = 0.5  # an 8x8 digit is legible at half an inch
TILE_PIXELS = 24  # tiles are upsampled to at least this: a 1-pixel gap is then a 24th of a tile
GAP, GREY = 1, 0.5  # the pixels between tiles, and their value (that of blank tiles too)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))
    return path


def image_problem(image_shape, values: int | None = None) -> str | None:
    """Why rows of ``values`` numbers cannot be drawn as images of ``image_shape``, or None.

    Drawable: (H, W), or (C, H, W) with C = 1, 3 or 4 channels (grey, RGB, RGBA).
    """
    if image_shape is None:
        return "the data are not images (no image shape)"
    shape = tuple(image_shape)
    if len(shape) not in (2, 3):
        return f"image shape {list(shape)} is neither (H, W) nor (C, H, W)"
    if len(shape) == 3 and shape[0] not in (1, 3, 4):
        return f"image shape {list(shape)} has {shape[0]} channels; images show 1, 3 or 4 (grey, RGB, RGBA)"
    if values is not None and math.prod(shape) != values:
        return f"image shape {list(shape)} holds {math.prod(shape)} values, the data {values} a point"
    return None


def _scale(image_shape) -> int:
    """The integer factor that brings a tile to at least ``TILE_PIXELS`` on its longer side."""
    return max(1, math.ceil(TILE_PIXELS / max(image_shape[-2:])))


def _centres(count: int, size: int) -> list[float]:
    """The canvas coordinates of the centres of ``count`` tiles of ``size`` pixels in a row."""
    return [(size + GAP) * i + (size - 1) / 2 for i in range(count)]


def _tile(
    images, image_shape, ncols: int, vmin: float, vmax: float, *, scale: int | None = None
) -> np.ndarray:
    """Rows of ``images`` as one picture in [0, 1], ``ncols`` tiles wide with ``GAP``-pixel grey gaps.

    Each image is upsampled ``scale`` times (nearest; by default :func:`_scale`), so a tile is
    ``scale·H`` by ``scale·W`` pixels. A row of NaN (padding) shows as a blank grey tile.
    """
    x = _np(images)
    if problem := image_problem(image_shape, x[0].size if len(x) else None):
        raise ValueError(problem)
    s = scale or _scale(image_shape)
    x = x.reshape(-1, *image_shape)
    x = np.clip((x - vmin) / (vmax - vmin), 0.0, 1.0)
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)  # (N, C, H, W) → (N, H, W, C), as imshow wants colour
        if x.shape[-1] == 1:
            x = x[..., 0]
    x = x.repeat(s, axis=1).repeat(s, axis=2)  # (N, s·H, s·W[, C])
    n, h, w = x.shape[:3]
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + GAP) - GAP, ncols * (w + GAP) - GAP, *x.shape[3:]), GREY)
    for i, image in enumerate(x):
        r, c = divmod(i, ncols)
        canvas[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = image
    return np.nan_to_num(canvas, nan=GREY)


def _tile_figure(canvas: np.ndarray, nrows: int, ncols: int, title) -> tuple[Figure, Axes]:
    """A figure showing a tiled ``canvas``, its longer side at least 4 inches, without ticks."""
    tile = max(TILE_INCHES, 4.0 / max(nrows, ncols))
    fig = Figure(figsize=(tile * ncols, tile * nrows + 0.5))  # half an inch for the title
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray", interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig, ax


def _heatmap(ax: Axes, x, vmin, vmax, title) -> AxesImage:
    """An (N, D) matrix of data points that are not images, one row per point."""
    im = ax.imshow(_np(x), aspect="auto", interpolation="nearest", vmin=vmin, vmax=vmax)
    ax.set_xlabel("dimension")
    ax.set_ylabel("data point")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if title:
        ax.set_title(title)
    return im


def image_grid(images, image_shape, path, *, title=None, ncols=None, vmin=0.0, vmax=1.0) -> Path:
    """Tile the rows of ``images`` (N, D) as images of ``image_shape``: (H, W) or (C, H, W).

    Values are clipped to [vmin, vmax]. With ``image_shape`` None the rows are drawn as a
    heatmap instead, coloured over [vmin, vmax].
    """
    n = len(images)
    if image_shape is None:
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        fig.colorbar(_heatmap(ax, images, vmin, vmax, title), ax=ax)
        return save_figure(fig, path)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig, _ = _tile_figure(_tile(images, image_shape, ncols, vmin, vmax), nrows, ncols, title)
    return save_figure(fig, path)


def reconstructions(
    inputs, recons, image_shape, path, *, title="Reconstructions", vmin=0.0, vmax=1.0, what="reconstruction"
) -> Path:
    """Data points (N, D) in rows labelled "data", each above a row of its reconstructions (or
    whatever ``what`` names: a completion).

    Images are drawn on the value range [vmin, vmax] (8-bit levels: 0 to 255)."""
    inputs, recons = _np(inputs), _np(recons)
    if image_shape is None:
        fig = Figure(figsize=(6, 6), layout="constrained")
        axes = fig.subplots(2, 1, sharex=True)
        lo, hi = min(inputs.min(), recons.min()), max(inputs.max(), recons.max())
        _heatmap(axes[0], inputs, lo, hi, "data")
        im = _heatmap(axes[1], recons, lo, hi, what)
        fig.colorbar(im, ax=axes)
        fig.suptitle(title)
        return save_figure(fig, path)
    n, d = inputs.shape
    ncols = min(n, 16)
    nblocks = math.ceil(n / ncols)
    padding = np.full((nblocks * ncols - n, d), np.nan)  # blank tiles after the last point
    blocks = [np.concatenate([a, padding]).reshape(nblocks, ncols, d) for a in (inputs, recons)]
    rows = np.stack(blocks, axis=1).reshape(-1, d)  # data row, its reconstructions, next block…
    fig, ax = _tile_figure(_tile(rows, image_shape, ncols, vmin, vmax), 2 * nblocks, ncols, title)
    ax.set_yticks(_centres(2 * nblocks, _scale(image_shape) * image_shape[-2]), ["data", what] * nblocks)
    ax.tick_params(length=0)
    return save_figure(fig, path)


def latent_space(z, labels, path, *, title="Latent space") -> Path:
    """Scatter the posterior means ``z`` (N, Z), coloured by integer ``labels`` (N,) if given.

    Z = 2 is drawn as is, Z > 2 projected onto its first two principal components, and
    Z = 1 against a random vertical jitter that only keeps the points apart.
    """
    z = _np(z).astype(np.float64)
    n, dim = z.shape
    if dim == 1:
        x, y = z[:, 0], np.random.default_rng(0).uniform(-1, 1, n)
        xlabel, ylabel = "z", "random jitter"
    elif dim == 2:
        x, y = z[:, 0], z[:, 1]
        xlabel, ylabel = "z₁", "z₂"
    else:
        centred = z - z.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        x, y = centred @ vt[0], centred @ vt[1]
        share = 100 * s**2 / (s**2).sum()
        xlabel, ylabel = (f"PC {i + 1} ({share[i]:.0f}% of variance)" for i in (0, 1))
        title = f"{title}\n(PCA projection of the {dim}-dimensional means)"

    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(x, y, s=6, alpha=0.5, linewidths=0)
    else:
        labels = _np(labels)
        classes = np.unique(labels)
        if len(classes) <= 20:  # one legend entry per class
            cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
            for i, c in enumerate(classes):
                at = labels == c
                ax.scatter(x[at], y[at], s=6, color=cmap(i), label=str(c), linewidths=0)
            ax.legend(title="label", markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
        else:  # too many classes for distinct colours: a continuous scale
            points = ax.scatter(x, y, s=6, c=labels, cmap="viridis", linewidths=0)
            fig.colorbar(points, ax=ax, label="label")
    if dim == 1:
        ax.set_yticks([])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return save_figure(fig, path)


#: the panels of :func:`training_curves`: title and the term of the metrics' keys (``train_<term>``)
PANELS = (
    ("ELBO per data point", "elbo"),
    ("Reconstruction term E_q[log p(x|z)]", "recon"),
    ("KL(q(z|x) ‖ p(z))", "kl"),
)
SPLITS = (("train", "train", "C0"), ("valid", "validation", "C1"))  # key prefix, words, colour
OBJECTIVE = "training objective (−loss)"


def training_curves_figure(history) -> Figure:
    """The figure :func:`training_curves` saves: one panel, and one y-axis, per quantity."""
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    for ax, (title, term) in zip(fig.subplots(1, len(PANELS)), PANELS, strict=True):
        drawn = [
            (words, curve(ax, history, f"{split}_{term}", color=color, label=words))
            for split, words, color in SPLITS
        ]
        if term == "elbo":  # the bound the run maximised, which may be another than the ELBO
            drawn.append(
                (
                    "training objective",
                    curve(ax, history, "train_loss", -1.0, color="C2", lw=0.8, label=OBJECTIVE),
                )
            )
        shown = [(words, line) for words, line in drawn if line is not None]
        if term == "elbo" and [words for words, _ in shown] == ["training objective"]:
            title = "Training objective per data point\n(the ELBO is not defined for this run)"
        ax.set_title(title)
        if not shown:
            ax.text(
                0.5,
                0.5,
                "not defined for this run",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
            ax.set(xticks=[], yticks=[])
            continue
        note_below(ax, fit_y(ax, shown), width=55)
        ax.set(xlabel="epoch", ylabel="nats per data point")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    if keys := [lines[label] for label in (*(words for _, words, _ in SPLITS), OBJECTIVE) if label in lines]:
        fig.legend(handles=keys, loc="outside lower center", ncols=len(keys), frameon=False)
    return fig


def training_curves(history, path) -> Path:
    """Per-epoch metrics (a list of dicts, as in ``metrics.jsonl``): the ELBO, and its two terms."""
    return save_figure(training_curves_figure(history), path)
