"""A comparison's models side by side, in pictures: what each generates and what each keeps.

* ``samples.png``: for each objective, E[x|z] at the same 64 draws of the noise that z ~ p(z)
  is made from. A VAE's decoder was trained on codes the KL term keeps near the prior, so its
  samples look like data; a plain autoencoder's codes go wherever reconstruction puts them, so
  draws from p(z) land where its decoder was never trained.
* ``reconstructions.png``: the same validation points, then each objective's reconstructions
  of them, one row each: the fidelity the table's reconstruction column measures.

Each objective is shown by its first seed's run that did not diverge, at the weights the table
measured; an objective whose every run diverged is left out.
"""

from pathlib import Path

import numpy as np
import pyro
import torch
from matplotlib.figure import Figure

from pyro_vae.pictures.plots import _np, _tile, image_problem, save_figure
from pyro_vae.training.build import graph_data
from pyro_vae.training.graph_figures import draws
from pyro_vae.training.run import CHECKPOINT, Run

SAMPLES, RECONSTRUCTIONS = "samples.png", "reconstructions.png"
SHOWN = 16  # validation points in reconstructions.png


@torch.no_grad()
def write_side_by_side(out: Path, runs: dict[str, Path], data, *, seed: int = 0) -> list[Path]:
    """Draw ``samples.png`` and ``reconstructions.png`` in ``out`` from the runs ``{label: run_dir}``;
    nothing (and no error) when the data are not images, or there is no run to draw."""
    shape = data.image_shape
    if not runs or shape is None or image_problem(shape, data.dim) is not None:
        return []
    lo, hi = data.train.min().item(), data.train.max().item()
    x = data.valid[:SHOWN]
    samples, recons = {}, {}
    for label, run_dir in runs.items():
        run = Run.load(run_dir, checkpoint=CHECKPOINT)
        pyro.set_rng_seed(seed)  # the same draws of the prior's noise for every objective
        if run.graph is not None:  # what the graph draws (completions, classes): no reconstruction
            run.graph.eval()
            drawn = draws(run.graph, 64, graph_data(run.config, data).valid).x
            samples[label] = drawn[-64:]  # a completion model's completions, after the data
            continue
        if run.program is not None:  # a registered program: its draw(x) of validation points, if any
            draw = getattr(run.program, "draw", None)
            if draw is not None:
                samples[label] = _np(draw(data.valid[:64]))
            continue
        vae = run.vae
        assert vae is not None  # Run.load builds the VAE or the graph
        vae.eval()
        samples[label] = _np(vae.sample(64))
        recons[label] = _np(vae.reconstruct(x))
    written = [_panels(samples, shape, out / SAMPLES, lo, hi)] if samples else []
    if recons:
        written.append(_rows(_np(x), recons, shape, out / RECONSTRUCTIONS, lo, hi))
    return written


def _panels(samples: dict, shape, path: Path, lo: float, hi: float) -> Path:
    """One panel of 8 × 8 samples per objective, in a row."""
    n = len(samples)
    fig = Figure(figsize=(3.6 * n, 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (label, images) in zip(axes, samples.items(), strict=True):
        ax.imshow(_tile(images, shape, 8, lo, hi), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(xticks=[], yticks=[], title=label)
    fig.suptitle("Samples E[x|z], z ~ p(z): the same draws of the prior for every objective")
    return save_figure(fig, path)


def _rows(x: np.ndarray, recons: dict, shape, path: Path, lo: float, hi: float) -> Path:
    """The data in the first row, each objective's reconstructions of it below."""
    rows = [x, *recons.values()]
    canvas = _tile(np.concatenate(rows), shape, len(x), lo, hi)
    height = canvas.shape[0] / len(rows)
    fig = Figure(figsize=(0.5 * len(x) + 2.5, 0.5 * len(rows) + 0.8), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([(r + 0.5) * height - 0.5 for r in range(len(rows))], ["data", *recons])
    ax.tick_params(length=0)
    ax.set_title(f"{len(x)} validation points and their reconstructions E[x | z = centre of q(z|x)]")
    return save_figure(fig, path)
