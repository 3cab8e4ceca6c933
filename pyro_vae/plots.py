"""The pictures a training run leaves in its run directory.

* :func:`training_curves`: the ELBO per data point on training and validation data by
  epoch, and its two terms, the reconstruction term E_q[log p(x|z)] and KL(q(z|x) ‖ p(z)).
  A gap between training and validation shows overfitting; a KL near zero shows latent
  dimensions the model has stopped using (posterior collapse).
* :func:`image_grid`: data points or decoded draws from the prior, tiled; samples show what
  the model believes the data look like, which the ELBO alone does not.
* :func:`reconstructions`: data points above the means of p(x|z) at their encodings: what
  the encoder-decoder pair keeps of a data point and what it blurs away.
* :func:`latent_space`: the posterior means of data points, coloured by their labels. The
  labels were never used in training, so classes that separate here were found unsupervised.
* :func:`decoded_grid`: for a 2-D latent space, the decoder over a grid of z at quantiles
  of the standard normal: how the decoder fills the space between the data.

Figures are :class:`matplotlib.figure.Figure` objects saved directly, never through
``pyplot``: importing this module selects no backend and registers no figures, so it runs
without a display and leaves nothing global behind (an unregistered figure is freed with its
last reference). Each function accepts numpy arrays or torch tensors and returns the path
it wrote; a PNG is written under a temporary name and renamed, so a reader never sees half.
"""

import math
import statistics
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import MaxNLocator

from .files import atomic_write

DPI = 120
TILE_INCHES = 0.5  # an 8x8 digit is legible at half an inch


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight"))
    return path


def _tile(images, image_shape, ncols: int, vmin: float, vmax: float) -> np.ndarray:
    """Rows of ``images`` as one picture in [0, 1], ``ncols`` tiles wide with 1-pixel grey gaps.

    A row of NaN (padding) shows as a blank grey tile.
    """
    x = _np(images).reshape(-1, *image_shape)
    x = np.clip((x - vmin) / (vmax - vmin), 0.0, 1.0)
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)  # (N, C, H, W) → (N, H, W, C), as imshow wants colour
        if x.shape[-1] == 1:
            x = x[..., 0]
    n, h, w = x.shape[:3]
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1, *x.shape[3:]), 0.5)
    for i, image in enumerate(x):
        r, c = divmod(i, ncols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return np.nan_to_num(canvas, nan=0.5)


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
    inputs, recons, image_shape, path, *, title="Reconstructions", vmin=0.0, vmax=1.0
) -> Path:
    """Data points (N, D) in rows labelled "data", each above a row of its reconstructions.

    Images are drawn on the value range [vmin, vmax] (8-bit levels: 0 to 255)."""
    inputs, recons = _np(inputs), _np(recons)
    if image_shape is None:
        fig = Figure(figsize=(6, 6), layout="constrained")
        axes = fig.subplots(2, 1, sharex=True)
        lo, hi = min(inputs.min(), recons.min()), max(inputs.max(), recons.max())
        _heatmap(axes[0], inputs, lo, hi, "data")
        im = _heatmap(axes[1], recons, lo, hi, "reconstruction")
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
    h = image_shape[-2]
    ax.set_yticks(
        [(h + 1) * r + (h - 1) / 2 for r in range(2 * nblocks)],
        ["data", "reconstruction"] * nblocks,
    )
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


def curve(ax, history, key, sign=1.0, **style) -> None:
    """Plot ``sign * row[key]`` by epoch over the rows that have it; nothing if none do."""
    rows = [(row.get("epoch", i), row.get(key)) for i, row in enumerate(history)]
    points = [(epoch, sign * value) for epoch, value in rows if value is not None]
    if points:
        marker = "o" if len(points) == 1 else None  # a single epoch is otherwise invisible
        ax.plot(*zip(*points, strict=True), marker=marker, **style)


def focus(ax: Axes, histories, keys, *, lowest: float = 0.0) -> None:
    """Fit the y-axis to the curves of ``histories`` (lists of rows) after their first few epochs.

    The untrained model's bound is often hundreds of nats below the rest, which would
    flatten every later change into a line; its point is still drawn, off the axis. With
    ``lowest`` > 0 the axis starts at that quantile of the values, so that a few slow starts
    among many runs leave the bottom of the plot instead of flattening the others.
    """
    values = [
        r[k] for h in histories for r in h[max(1, len(h) // 20) :] for k in keys if r.get(k) is not None
    ]
    if len(values) > 1:
        lo, hi = float(np.quantile(values, lowest)), max(values)
        pad = 0.05 * (hi - lo) or 1.0
        ax.set_ylim(lo - pad, hi + pad)


def training_curves(history, path) -> Path:
    """Per-epoch metrics (a list of dicts, as in ``metrics.jsonl``): the ELBO, and its two terms."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    curve(left, history, "train_elbo", color="C0", label="train ELBO")
    curve(left, history, "valid_elbo", color="C1", label="validation ELBO")
    objective = "training objective (−loss)"
    curve(left, history, "train_loss", -1.0, color="C2", lw=0.8, label=objective)
    left.set(title="ELBO per data point", ylabel="nats per data point")

    kl = right.twinx()  # the KL term is often an order of magnitude smaller
    curve(right, history, "train_recon", color="C0", ls="--", label="train E[log p(x|z)]")
    curve(right, history, "valid_recon", color="C0", label="validation E[log p(x|z)]")
    curve(kl, history, "train_kl", color="C3", ls="--", label="train KL(q‖p)")
    curve(kl, history, "valid_kl", color="C3", label="validation KL(q‖p)")
    right.set(title="The ELBO's terms", ylabel="reconstruction term (nats per data point)")
    kl.set_ylabel("KL term (nats per data point)", color="C3")

    focus(left, [history], ("train_elbo", "valid_elbo"))
    focus(right, [history], ("train_recon", "valid_recon"))
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    if left.get_lines():
        left.legend()
    if terms := [*right.get_lines(), *kl.get_lines()]:  # one legend for both y-axes
        right.legend(handles=terms, loc="center right")
    return save_figure(fig, path)


def decoded_grid(decode, path, *, image_shape, n=15, title="Decoded latent grid", vmin=0.0, vmax=1.0) -> Path:
    """Decode an n×n grid of a 2-D latent space at standard-normal quantiles 5%…95%.

    ``decode`` maps (n·n, 2) float32 points to (n·n, D) images; z₁ grows to the right and
    z₂ upwards, so the picture reads like a plot of the latent space.
    """
    q = [statistics.NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n)]
    z = np.array([(z1, z2) for z2 in reversed(q) for z1 in q], dtype=np.float32)  # (n·n, 2)
    with torch.no_grad():
        images = _np(decode(z))
    fig, ax = _tile_figure(_tile(images, image_shape, n, vmin, vmax), n, n, title)
    h, w = image_shape[-2:]
    ends = [0, n - 1]
    ax.set_xticks([(w + 1) * i + (w - 1) / 2 for i in ends], [f"{q[i]:.2f}" for i in ends])
    ax.set_yticks([(h + 1) * i + (h - 1) / 2 for i in ends], [f"{q[-1 - i]:.2f}" for i in ends])
    ax.set(xlabel="z₁", ylabel="z₂")
    return save_figure(fig, path)
