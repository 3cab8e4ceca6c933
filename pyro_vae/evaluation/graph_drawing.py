"""What ``pyro-vae sample`` draws from a run of a declared graph: a completion model's
completions of validation points, a row for each class of a model with a class, or ancestral
draws (:func:`pyro_vae.training.graph_figures.draws`), with ``--given NAME=CLASS`` holding a class
fixed."""

from pathlib import Path

import numpy as np
import pyro
import torch

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.files import atomic_write, make_dir
from pyro_vae.core.options import show
from pyro_vae.evaluation.checks import data_of, split_of, where
from pyro_vae.models.graph.ancestral import classes_of
from pyro_vae.training.build import graph_data
from pyro_vae.training.graph_figures import draws
from pyro_vae.training.run import Run


def classes_given(run: Run, given: dict[str, int], n: int) -> dict[str, torch.Tensor]:
    """``--given NAME=CLASS`` as one-hot values ``(n, C)``, each checked against the model."""
    assert run.graph is not None
    classes = classes_of(run.graph)
    fixed = {}
    for name, value in given.items():
        if name not in classes:
            allowed = ", ".join(classes) or "none"
            raise ConfigError(
                f"--given {name}={value}: {name} is not a class of the model; its classes: {allowed}"
            )
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < classes[name]:
            raise ConfigError(
                f"--given {name}={show(value)} is not allowed: expected a class from 0 to {classes[name] - 1}"
            )
        fixed[name] = torch.nn.functional.one_hot(torch.tensor(value), classes[name]).float().expand(n, -1)
    return fixed


def sample_graph(run: Run, n: int, out: Path, *, given: dict[str, int], seed: int, run_dir) -> Path:
    """Draw ``n`` from a graph's run and write ``out``: a ``.png`` picture or a ``.npy`` array."""
    graph = run.graph
    assert graph is not None
    fixed = classes_given(run, given, n)
    rows = split_of(graph_data(run.config, data_of(run)), "valid")
    device = next(graph.buffers(), rows).device
    pyro.set_rng_seed(seed)
    drawn = draws(graph, n, rows.to(device), {k: v.to(device) for k, v in fixed.items()})
    make_dir(out.parent, where(out, run_dir))
    if out.suffix == ".npy":
        atomic_write(out, lambda tmp: _save(tmp, drawn.x))
        return out
    shape = run.config.data.image_shape
    return drawn.picture(out, tuple(shape) if shape else None)


def _save(path: Path, x: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save given a name would add ".npy" to the temporary one
        np.save(f, x)
