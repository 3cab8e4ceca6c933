"""Every picture of a trained run's directory (``run.FIGURES``), drawn with :mod:`pyro_vae.pictures.plots`.

Each figure is one step of :func:`write_run_figures`, drawn independently: a figure that the
data cannot be drawn as (an image shape that is no picture, say) is skipped with one line on
stderr saying why, after training, rather than failing the run and losing the others.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from pyro_vae.pictures.latent_paths import interpolate_pairs, prior_quantiles, traverse
from pyro_vae.pictures.latent_plots import decoded_grid, interpolation_grid, traversal_grid
from pyro_vae.pictures.plots import image_grid, latent_space, reconstructions, training_curves
from pyro_vae.training.run import (
    CURVES,
    INTERPOLATION,
    LATENT,
    LATENT_GRID,
    RECONSTRUCTIONS,
    SAMPLES,
    TRAVERSALS,
)


@torch.no_grad()
def write_run_figures(run, data) -> list[Path]:
    """Every picture of a trained VAE's run directory (``run.FIGURES``); returns the paths written."""
    vae, out = run.vae, run.dir
    lo, hi = data.train.min().item(), data.train.max().item()  # the data's own value range
    shape = data.image_shape
    # the latent space is shown for up to 5000 points: validation ones when there are enough
    points, labels, which = data.valid, data.valid_labels, "validation"
    if len(points) < 1000:
        points, labels, which = data.train, data.train_labels, "training"
    points, labels = points[:5000], None if labels is None else labels[:5000]
    steps = [  # (file name, how to draw it)
        (CURVES, lambda: training_curves(run.history, out / CURVES)),
        (
            SAMPLES,
            lambda: image_grid(
                vae.sample(64), shape, out / SAMPLES, title="Samples: E[x|z], z ~ p(z)", vmin=lo, vmax=hi
            ),
        ),
        (
            RECONSTRUCTIONS,
            lambda: reconstructions(
                data.valid[:16],
                vae.reconstruct(data.valid[:16]),
                shape,
                out / RECONSTRUCTIONS,
                vmin=lo,
                vmax=hi,
            ),
        ),
        (
            LATENT,
            lambda: latent_space(
                vae.encode(points), labels, out / LATENT, title=f"Posterior means E[z|x] of {which} points"
            ),
        ),
    ]
    if vae.config.layers == (2,) and shape is not None:
        param = next(vae.parameters())
        decode = lambda z: vae.decode(torch.as_tensor(z, dtype=param.dtype, device=param.device))  # noqa: E731
        steps.append(
            (
                LATENT_GRID,
                lambda: decoded_grid(
                    decode, out / LATENT_GRID, image_shape=shape, vmin=lo, vmax=hi, **_grid_quantiles(vae)
                ),
            )
        )
    if shape is not None:
        steps.append((INTERPOLATION, lambda: _interpolation(vae, data, out / INTERPOLATION, lo, hi)))
        if vae.config.layers[0] > 2:  # a 2-D space has its decoded grid instead
            traverse_from = data.valid[0].to(points)
            steps.append(
                (
                    TRAVERSALS,
                    lambda: traversal_grid(
                        traverse(vae, traverse_from, points), shape, out / TRAVERSALS, vmin=lo, vmax=hi
                    ),
                )
            )
    written = []
    for name, draw in steps:
        try:
            written.append(draw())
        except ValueError as e:  # the plots' word for data they cannot draw so
            print(f"pyro-vae: skipped {name}: {e}", file=sys.stderr)
    return written


def _interpolation(vae, data, path: Path, lo: float, hi: float) -> Path:
    """Eight pairs of validation points (of different labels where known), on every path the
    prior allows."""
    pairs = min(8, len(data.valid) // 2)
    result = interpolate_pairs(vae, data.valid, pairs, labels=data.valid_labels)
    return interpolation_grid(result, data.image_shape, path, vmin=lo, vmax=hi)


def _grid_quantiles(vae) -> dict:
    """The decoded grid's axes at the quantiles of the prior's marginals, where it is not N(0, I)."""
    if vae.config.prior.kind == "normal" and len(vae.config.layers) == 1:
        return {}
    param = next(vae.parameters())
    axes = torch.eye(2, dtype=param.dtype, device=param.device)
    levels = np.linspace(0.05, 0.95, 15).tolist()
    quantiles = prior_quantiles(vae, axes, levels).cpu().numpy()  # (2, 15)
    return {"quantiles": quantiles, "prior": f"{vae.config.prior.kind!r}, its marginal"}
