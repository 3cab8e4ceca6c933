"""Drawing from a declared graph's programs: ancestral draws with some values held fixed, the
codes the guide gives data rows, and the data point the values make (pictures, ``sample``,
``interpolate``)."""

from typing import Any

import torch
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.models.graph.program import GraphProgram, joined
from pyro_vae.models.vae import center


def classes_of(graph: GraphProgram) -> dict[str, int]:
    """The discrete variables (latent or input) and their numbers of classes."""
    return {
        n: graph.sizes[n]
        for n, v in graph.variables.items()
        if v.discrete or (v.data == "label" and v.family is None)
    }


@torch.no_grad()
def draw(
    graph: GraphProgram, n: int, given: dict[str, torch.Tensor] | None = None, *, mean: bool = True
) -> dict:
    """Ancestral draws of every variable, ``(n, size)`` each, the ``given`` values held fixed
    (a class one-hot); an observed variable is its family's mean where ``mean`` (what pictures
    show). Every input must be given."""
    values = dict(given or {})
    for name in graph.order:
        v = graph.variables[name]
        if name in values:
            continue
        if v.family is None:
            raise ConfigError(f"{name} is an input of the model: give its value to draw the others")
        part: Any = graph.families[name]
        if not v.given:
            values[name] = part.root().sample((n,))
            continue
        out = graph.nets[name](joined([values[p] for p in v.given]))
        observed = not v.latent
        values[name] = part.mean(out) if observed and mean and hasattr(part, "mean") else part(out).sample()
    return values


@torch.no_grad()
def encode(graph: GraphProgram, row: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows' inputs and a code for each latent, in the guide's order: the centre of q for a
    continuous one, the most probable class for a discrete one (one-hot)."""
    values = graph.bound_values(row)
    given = {n: values[n] for n, v in graph.variables.items() if v.family is None}
    for name in graph.guide_order:
        out = graph.q_params(name, values)
        if graph.variables[name].discrete:
            values[name] = nn.functional.one_hot(out.argmax(-1), out.shape[-1]).to(out.dtype)
        else:
            values[name] = center(graph.q[name](out))
        given[name] = values[name]
    return given


def image(graph: GraphProgram, values: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The data point the values make: the variable bound to ``"x"``, or the image put
    together from its parts; None where no variable is bound to the data point."""
    name = graph.image_variable()
    if name is not None:
        return values[name]
    parts = [
        (n, getattr(graph, f"columns_{n}"))
        for n, v in graph.variables.items()
        if (v.data or "").startswith("x.")
    ]
    if not parts:
        return None
    first = values[parts[0][0]]
    out = first.new_zeros(*first.shape[:-1], graph.data_dim)
    for n, columns in parts:
        out[..., columns] = values[n]
    return out
