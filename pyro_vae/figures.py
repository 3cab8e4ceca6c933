"""Every picture of a trained run's directory (``run.FIGURES``), drawn with :mod:`pyro_vae.plots`."""

from pathlib import Path

import torch

from .plots import decoded_grid, image_grid, latent_space, reconstructions, training_curves
from .run import CURVES, LATENT, LATENT_GRID, RECONSTRUCTIONS, SAMPLES


@torch.no_grad()
def write_run_figures(run, data) -> list[Path]:
    """Every picture of a trained VAE's run directory (``run.FIGURES``); returns their paths."""
    vae, out = run.vae, run.dir
    lo, hi = data.train.min().item(), data.train.max().item()  # the data's own value range
    shape = data.image_shape
    # the latent space is shown for up to 5000 points: validation ones when there are enough
    points, labels, which = data.valid, data.valid_labels, "validation"
    if len(points) < 1000:
        points, labels, which = data.train, data.train_labels, "training"
    points, labels = points[:5000], None if labels is None else labels[:5000]
    written = [
        training_curves(run.history, out / CURVES),
        image_grid(
            vae.sample(64),
            shape,
            out / SAMPLES,
            title="Samples: E[x|z], z ~ p(z)",
            vmin=lo,
            vmax=hi,
        ),
        reconstructions(
            data.valid[:16], vae.reconstruct(data.valid[:16]), shape, out / RECONSTRUCTIONS, vmin=lo, vmax=hi
        ),
        latent_space(
            vae.encode(points),
            labels,
            out / LATENT,
            title=f"Posterior means E[z|x] of {which} points",
        ),
    ]
    if vae.config.layers == (2,) and shape is not None:
        param = next(vae.parameters())
        decode = lambda z: vae.decode(torch.as_tensor(z, dtype=param.dtype, device=param.device))  # noqa: E731
        written.append(decoded_grid(decode, out / LATENT_GRID, image_shape=shape, vmin=lo, vmax=hi))
    return written
