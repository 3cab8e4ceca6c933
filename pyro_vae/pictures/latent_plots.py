"""Pictures of paths through the latent space (:mod:`pyro_vae.pictures.latent_paths`).

* :func:`interpolation_grid`: one row per pair and path, the two data points at the ends and
  the decoded path between them. A decoder that has organised its space shows a smooth change
  of digit; one that has not (an autoencoder without a KL term) shows blurs or non-digits where
  no code was trained.
* :func:`decoded_grid`: for a 2-D latent space, the decoder over a grid of z at the prior's
  quantiles: how the decoder fills the space between the data.
* :func:`traversal_grid`: one row per latent direction, the data point on the left and its code
  decoded with the direction set to each prior quantile: what each direction encodes, and
  (flat rows) which the model does not use.
"""

import statistics
from pathlib import Path

import numpy as np
import torch

from pyro_vae.pictures.axes import number
from pyro_vae.pictures.latent_paths import Interpolation, Traversal
from pyro_vae.pictures.plots import _centres, _np, _scale, _tile, _tile_figure, save_figure


def _row_centres(canvas: np.ndarray, nrows: int) -> list[float]:
    return [(r + 0.5) * canvas.shape[0] / nrows - 0.5 for r in range(nrows)]


def _col_centres(canvas: np.ndarray, ncols: int, cols) -> list[float]:
    return [(c + 0.5) * canvas.shape[1] / ncols - 0.5 for c in cols]


def interpolation_grid(result: Interpolation, image_shape, path, *, title=None, vmin=0.0, vmax=1.0):
    """Rows ``x_a | E[x|z(t)], t = 0 … 1 | x_b`` for each pair, one row per path (linear first)."""
    paths = list(result.images)
    xa, xb = _np(result.xa), _np(result.xb)  # (P, D)
    decoded = {p: _np(v) for p, v in result.images.items()}  # (P, T, D)
    pairs, steps = decoded[paths[0]].shape[:2]
    rows = [np.concatenate([xa[i, None], decoded[p][i], xb[i, None]]) for i in range(pairs) for p in paths]
    ncols, nrows = steps + 2, len(rows)
    canvas = _tile(np.concatenate(rows), image_shape, ncols, vmin, vmax)
    if title is None:
        words = " and ".join(paths)
        title = f"Interpolation: E[x | z(t)] on the {words} path{'s' * (len(paths) > 1)} between two codes"
    fig, ax = _tile_figure(canvas, nrows, ncols, title)
    ax.set_yticks(_row_centres(canvas, nrows), [p for _ in range(pairs) for p in paths])
    ax.set_xticks(_col_centres(canvas, ncols, [1, steps]), ["t = 0", "t = 1"])
    ax.set_xlabel("data point a, the decoded path from its code to b's, data point b")
    ax.tick_params(length=0)
    return save_figure(fig, path)


def traversal_grid(result: Traversal, image_shape, path, *, title=None, vmin=0.0, vmax=1.0):
    """One row per direction: the data point, then its code with that direction at each quantile."""
    images = _np(result.images)  # (V, Q, D)
    x = _np(result.x)  # (D,)
    v, q = images.shape[:2]
    rows = np.concatenate([np.concatenate([x[None], images[i]]) for i in range(v)])
    ncols = q + 1
    canvas = _tile(rows, image_shape, ncols, vmin, vmax)
    if title is None:
        kind = "principal direction" if result.names[0].startswith("PC") else "latent unit"
        title = (
            f"Traversals: one {kind} per row, most active first, set to the prior's quantiles;\n"
            "the other coordinates at the code of the data point on the left"
        )
    fig, ax = _tile_figure(canvas, v, ncols, title)
    spread = _np(result.spread)
    labels = [f"{name} (var {s:.2g})" for name, s in zip(result.names, spread, strict=True)]
    ax.set_yticks(_row_centres(canvas, v), labels)
    cols = [0, *(1 + i for i in sorted({0, q // 2, q - 1}))]
    words = ["data", *(f"{100 * result.probs[c - 1]:.0f} %" for c in cols[1:])]
    ax.set_xticks(_col_centres(canvas, ncols, cols), words)
    ax.set_xlabel("prior quantile of the direction")
    ax.tick_params(length=0)
    return save_figure(fig, path)


def decoded_grid(
    decode,
    path,
    *,
    image_shape,
    n=15,
    title="Decoded latent grid",
    vmin=0.0,
    vmax=1.0,
    quantiles=None,
    prior="N(0, 1)",
) -> Path:
    """Decode an n×n grid of a 2-D latent space at the prior's quantiles 5%…95%.

    ``decode`` maps (n·n, 2) float32 points to (n·n, D) images; z₁ grows to the right and
    z₂ upwards, so the picture reads like a plot of the latent space. ``quantiles`` gives each
    axis's values at the n levels (two sequences), for a prior other than N(0, I), whose
    name ``prior`` the axis labels say; by default the standard normal's. The ticks name the
    quantiles (5 %, 50 % when n is odd, 95 %) with their values.
    """
    levels = np.linspace(0.05, 0.95, n)
    normal = [statistics.NormalDist().inv_cdf(p) for p in levels]
    q1, q2 = (normal, normal) if quantiles is None else (list(map(float, q)) for q in quantiles)
    z = np.array([(z1, z2) for z2 in reversed(q2) for z1 in q1], dtype=np.float32)  # (n·n, 2)
    with torch.no_grad():
        images = _np(decode(z))
    fig, ax = _tile_figure(_tile(images, image_shape, n, vmin, vmax), n, n, title)
    s = _scale(image_shape)
    at = sorted({0, n // 2, n - 1} if n % 2 else {0, n - 1})
    words = lambda q, i: f"{100 * levels[i]:.0f} % ({number(q[i], 2)})"  # noqa: E731
    ax.set_xticks([_centres(n, s * image_shape[-1])[i] for i in at], [words(q1, i) for i in at])
    ax.set_yticks([_centres(n, s * image_shape[-2])[n - 1 - i] for i in at], [words(q2, i) for i in at])
    ax.set(xlabel=f"z₁ (quantile of the prior {prior})", ylabel=f"z₂ (quantile of the prior {prior})")
    return save_figure(fig, path)
