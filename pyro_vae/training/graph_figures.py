"""The pictures of a declared graph (:mod:`pyro_vae.config.graph`): what it draws, and a run's figures.

* A completion model (inputs that are parts of the image, the task of Pyro's CVAE example): data
  points, each above its completion, the given part kept and the rest drawn given it.
* A model with a class (a categorical latent, M2's y or a GMVAE's cluster, or a label input, a
  CVAE's): one row per class, unless a class is given.
* Otherwise ancestral draws.

Observed variables are drawn as their families' means, as a VAE's samples are. A run's
directory gets its curves and its samples; the latent space is drawn for every continuous
latent the guide reads from the data alone.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyro_vae.core.errors import DataError
from pyro_vae.models.graph.ancestral import classes_of, draw, encode, image
from pyro_vae.models.graph.program import GraphProgram
from pyro_vae.models.vae import center
from pyro_vae.pictures.latent_paths import Interpolation
from pyro_vae.pictures.plots import image_grid, latent_space, reconstructions, training_curves
from pyro_vae.training.run import CURVES, LATENT, SAMPLES


@dataclass
class Drawn:
    """Images drawn from a graph, ``(N, D)``, and how to picture them: ``picture(path, shape)``."""

    x: np.ndarray
    picture: Callable[[Path, tuple | None], Path]


def image_parts(graph: GraphProgram) -> list[str]:
    """The inputs that are parts of the image (a completion model's given part)."""
    return [n for n, v in graph.variables.items() if v.family is None and (v.data or "").startswith("x.")]


@torch.no_grad()
def draws(
    graph: GraphProgram, n: int, rows: torch.Tensor, given: dict[str, torch.Tensor] | None = None
) -> Drawn:
    """What a graph draws (module docstring): ``rows`` are data rows for a completion model's
    given parts; ``given`` classes one-hot ``(n, C)``."""
    given = given or {}
    inputs = image_parts(graph)
    if inputs:
        rows = rows[:n]
        bound = graph.bound_values(rows)
        completed = _image(graph, draw(graph, len(rows), {k: bound[k] for k in inputs}))
        truth = rows[:, : graph.data_dim]
        drawn = [
            k for k, v in graph.variables.items() if v.family is not None and (v.data or "").startswith("x.")
        ]
        title = f"{', '.join(drawn)} drawn given {', '.join(inputs)}, below the data"
        x = torch.cat([truth, completed]).cpu().numpy()
        m = len(rows)
        return Drawn(
            x, lambda path, shape: reconstructions(x[:m], x[m:], shape, path, title=title, what="completion")
        )
    free = [k for k in classes_of(graph) if k not in given]
    if free:
        name, classes = free[0], classes_of(graph)[free[0]]
        per = max(1, n // classes)
        device = rows.device
        images = []
        for c in range(classes):
            one_hot = torch.nn.functional.one_hot(torch.tensor(c, device=device), classes).to(rows.dtype)
            fixed = {**{k: v[:per] for k, v in given.items()}, name: one_hot.expand(per, -1)}
            images.append(_image(graph, draw(graph, per, fixed)))
        x = torch.cat(images).cpu().numpy()
        title = f"{per} samples of each class of {name} (a row each: {name} = 0 … {classes - 1})"
        return Drawn(x, lambda path, shape: image_grid(x, shape, path, title=title, ncols=per))
    x = _image(graph, draw(graph, n, given)).cpu().numpy()
    title = f"{n} samples" + (f" given {', '.join(given)}" if given else "")
    return Drawn(x, lambda path, shape: image_grid(x, shape, path, title=title))


@torch.no_grad()
def interpolate_graph(
    graph: GraphProgram, xa: torch.Tensor, xb: torch.Tensor, *, steps: int = 10
) -> Interpolation:
    """Decoded straight paths between the continuous latents' codes of pairs of rows ``xa``, ``xb``
    (P, D'), each path holding its first row's classes and inputs
    (:func:`~pyro_vae.models.graph.ancestral.encode`)."""
    a, b = encode(graph, xa), encode(graph, xb)
    moving = [n for n in graph.guide_order if not graph.variables[n].discrete]
    if not moving:
        raise DataError("the model has no continuous latent to move along a path")
    t = torch.linspace(0, 1, steps, dtype=xa.dtype, device=xa.device)
    images, codes = [], []
    for step in t:
        fixed = {**a, **{n: (1 - step) * a[n] + step * b[n] for n in moving}}
        images.append(_image(graph, draw(graph, len(xa), fixed)))
        codes.append(torch.cat([fixed[n] for n in moving], -1))
    d = graph.data_dim
    return Interpolation(
        xa=xa[:, :d],
        xb=xb[:, :d],
        t=t,
        codes={"linear": torch.stack(codes, 1)},
        images={"linear": torch.stack(images, 1)},
    )


def _image(graph: GraphProgram, values: dict) -> torch.Tensor:
    made = image(graph, values)
    if made is None:
        raise DataError('the model has no variable bound to the data point (data = "x" or a part of it)')
    return made


@torch.no_grad()
def write_graph_figures(run, data) -> list[Path]:
    """A graph's run directory: ``curves.png``, ``samples.png`` and ``latent.png``."""
    graph, out = run.graph, run.dir
    steps: list[tuple[str, Callable[[], Path]]] = [
        (CURVES, lambda: training_curves(run.history, out / CURVES)),
        (SAMPLES, lambda: draws(graph, 64, data.valid).picture(out / SAMPLES, data.image_shape)),
    ]
    latents = [n for n in graph.guide_order if not graph.variables[n].discrete and _from_data(graph, n)]
    if latents:
        steps.append((LATENT, lambda: _latent(graph, latents[0], data, out / LATENT)))
    written = []
    for name, picture in steps:
        try:
            written.append(picture())
        except (ValueError, DataError) as e:
            print(f"pyro-vae: skipped {name}: {e}", file=sys.stderr)
    return written


def _from_data(graph: GraphProgram, name: str) -> bool:
    return all(p not in graph.guide_spec for p in graph.guide_spec[name].given or [])


def _latent(graph: GraphProgram, name: str, data, path: Path) -> Path:
    rows, labels = data.valid[:5000], data.valid_labels
    bound = graph.bound_values(rows)
    given = graph.guide_spec[name].given or []
    q = graph.q[name](graph.q_nets[name](torch.cat([bound[p] for p in given], -1)))
    means = center(q)
    labels = None if labels is None else labels[:5000]
    return latent_space(means, labels, path, title=f"Posterior means of {name} on validation points")
