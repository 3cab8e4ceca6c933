"""The families a declared variable is drawn from: ``family = { kind = ... }`` in
``[model.variables.NAME]``.

A family entry is called as ``entry(size, /, **options)`` (``size``: values per draw, or classes
for a discrete family) and returns a ``torch.nn.Module`` with

* ``param_features``: how many numbers a network from the variable's parents must output;
* ``forward(out)``: the distribution given those numbers (event shape ``(size,)``);
* optionally ``root()``: its distribution without parents (a standard normal, a uniform class);
  a family without it needs parents;
* optionally ``features`` (how many numbers a child's network reads from a value, ``size``
  when absent), ``classes`` (a discrete family) and ``mean(out)`` and ``check_data(x, name)``
  as a likelihood has them (:mod:`pyro_vae.models.likelihoods`).

Every likelihood is a family under its own name (``bernoulli``, ``gaussian``, ``laplace``,
``beta``, ``continuous_bernoulli``), except the 256-level ``categorical`` of pixel values, which
is ``levels`` here: in a graph ``categorical`` is a class. A user adds a family the same way::

    from pyro_vae import register_family

    @register_family("student_t")
    class StudentT(torch.nn.Module):
        def __init__(self, size, /, *, df: float = 3.0): ...
"""

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.core.numeric import floored_softplus
from pyro_vae.core.options import PositiveFloat
from pyro_vae.core.registry import FAMILIES
from pyro_vae.models import likelihoods
from pyro_vae.models.graph.categorical import CategoricalFamily

register_family = FAMILIES.register

register_family("categorical", CategoricalFamily)
register_family("bernoulli", likelihoods.Bernoulli)
register_family("continuous_bernoulli", likelihoods.ContinuousBernoulli)
register_family("gaussian", likelihoods.Gaussian)
register_family("laplace", likelihoods.Laplace)
register_family("beta", likelihoods.Beta)
register_family("levels", likelihoods.Categorical)


@register_family("normal")
class Normal(nn.Module):
    """N(0, I) at a root; N(μ(parents), diag σ(parents)²) given parents, σ = softplus(·) +
    ``min_scale`` (a Gaussian layer of a deep latent model; Rezende et al. 2014)."""

    loc: torch.Tensor  # buffers
    scale: torch.Tensor

    def __init__(self, size: int, /, *, min_scale: PositiveFloat = 1e-4):
        super().__init__()
        self.param_features, self.min_scale = 2 * size, min_scale
        self.register_buffer("loc", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = out.chunk(2, dim=-1)  # (..., Z) each
        return dist.Normal(loc, floored_softplus(raw_scale, self.min_scale)).to_event(1)

    def root(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out.chunk(2, dim=-1)[0]


def features(part, size: int) -> int:
    """How many numbers a child's network reads from a value of ``part``."""
    return getattr(part, "features", size)


def classes(part) -> int | None:
    """The number of classes of a discrete family or guide, None for a continuous one."""
    return getattr(part, "classes", None)
