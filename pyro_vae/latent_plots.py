"""Pictures of paths through the latent space (:mod:`pyro_vae.latent_paths`).

* :func:`interpolation_grid`: one row per pair and path, the two data points at the ends and
  the decoded path between them. A decoder that has organised its space shows a smooth change
  of digit; one that has not (an autoencoder without a KL term) shows blurs or non-digits where
  no code was trained.
* :func:`traversal_grid`: one row per latent direction, the data point on the left and its code
  decoded with the direction set to each prior quantile: what each direction encodes, and
  (flat rows) which the model does not use.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from .errors import ConfigError, DataError
from .latent_paths import PATHS, Interpolation, Traversal, gaussian_prior, interpolate, pick_pairs
from .options import PositiveInt, Range, check_value
from .plots import _np, _tile, _tile_figure, save_figure
from .resolve import resolve_device
from .run import CHECKPOINT, Run


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


def interpolate_run(
    run_dir,
    pairs: int = 8,
    *,
    steps: int = 10,
    paths: Sequence[str] | None = None,
    split: str = "valid",
    out=None,
    seed: int = 0,
    device: str = "cpu",
    checkpoint: str = CHECKPOINT,
) -> Path:
    """Draw the decoded paths between ``pairs`` pairs of ``split`` points of a trained run.

    The pairs are drawn with ``seed`` (of different labels where the data have labels);
    ``paths`` defaults to every path the prior allows: linear, and spherical for a Gaussian
    prior. Writes ``out`` (default ``RUN_DIR/interpolation-PAIRS.png``) and returns its path.
    """
    from .evaluate import _check_writable, _data_of

    check_value("--pairs", pairs, PositiveInt)
    check_value("--steps", steps, Annotated[int, Range(lo=2)])
    out = Path(out) if out is not None else Path(run_dir) / f"interpolation-{pairs}.png"
    if out.suffix != ".png":
        raise ConfigError(f"--out {str(out)!r}: unknown format {out.suffix!r}; allowed: .png")
    run = Run.load(run_dir, device=resolve_device(device, key="--device"), checkpoint=checkpoint)
    vae = run.vae
    assert vae is not None  # Run.load builds the VAE
    data = _data_of(run)
    if split not in ("train", "valid", "test") or getattr(data, split) is None:
        available = ", ".join(s for s in ("train", "valid", "test") if getattr(data, s) is not None)
        raise DataError(f"the data of this run has no {split} split; available: {available}")
    if data.image_shape is None:
        raise DataError(f"the data of run {str(run_dir)!r} are not images: there is no picture to draw")
    x, labels = getattr(data, split), getattr(data, f"{split}_labels")
    allowed = [p for p in PATHS if p == "linear" or gaussian_prior(vae) is not None]
    paths = allowed if paths is None else list(paths)
    _check_writable(out)
    idx = torch.as_tensor(pick_pairs(len(x), pairs, labels=labels, seed=seed))
    param = next(vae.parameters())
    xa, xb = (x[idx[:, i]].to(param) for i in (0, 1))
    result = interpolate(vae, xa, xb, steps=steps, paths=paths)
    lo, hi = data.train.min().item(), data.train.max().item()
    return interpolation_grid(result, data.image_shape, out, vmin=lo, vmax=hi)
