"""What ``pyro-vae sample`` draws from a run of a declared graph: a completion model's
completions of validation points, a row for each class of a model with a class, or ancestral
draws (:func:`pyro_vae.training.graph_figures.draws`), with ``--given NAME=CLASS`` holding a class
fixed."""

import pyro
import torch

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import show
from pyro_vae.evaluation.checks import data_of, split_of
from pyro_vae.models.graph.ancestral import classes_of
from pyro_vae.training.build import graph_data
from pyro_vae.training.graph_figures import Drawn, draws
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


def graph_draws(run: Run, n: int, *, given: dict[str, int], seed: int) -> Drawn:
    """What ``pyro-vae sample`` draws from a graph's run: ``n`` draws, ``given`` classes fixed."""
    graph = run.graph
    assert graph is not None
    fixed = classes_given(run, given, n)
    rows = split_of(graph_data(run.config, data_of(run)), "valid")
    device = next(graph.buffers(), rows).device
    pyro.set_rng_seed(seed)
    return draws(graph, n, rows.to(device), {k: v.to(device) for k, v in fixed.items()})
