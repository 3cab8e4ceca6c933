"""Likelihoods p_θ(x|z): the decoder's output turned into a distribution over a data point.

A likelihood entry is called as ``entry(data_dim, **options)`` and returns a
``torch.nn.Module`` with

* ``param_features``: how many numbers per data point the decoder must output;
* ``forward(out)``: the distribution of x given those numbers, ``event_shape == (data_dim,)``;
* ``mean(out)``: E[x | z], what pictures of reconstructions and samples show;
* ``check_data(x, name)``: raise :class:`~pyro_vae.errors.DataError` unless every value of
  ``x`` lies in the distribution's support, so that the reported log-likelihood is that
  of a proper density for the data at hand;
* optionally ``initialize(x)``: set data-dependent starting values from the training data.
"""

from typing import Literal

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .config import PositiveFloat
from .errors import DataError
from .registry import Registry

LIKELIHOODS = Registry("likelihood")
register_likelihood = LIKELIHOODS.register


def softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y, for y > 0: log(exp(y) - 1), written to stay finite."""
    return y + torch.log(-torch.expm1(-y))


@register_likelihood("bernoulli")
class Bernoulli(nn.Module):
    """p(x|z) = Π_d Bernoulli(x_d; sigmoid(f_θ(z)_d)) for binary x.

    With ``relaxed = true`` it also accepts x in [0, 1] as the usual "binary
    cross-entropy" loss; that is not a normalised density for non-binary x, so its
    log-likelihoods are not comparable with those of a proper likelihood.
    """

    def __init__(self, data_dim: int, /, *, relaxed: bool = False):
        super().__init__()
        self.param_features = data_dim
        self.relaxed = relaxed

    def forward(self, logits: torch.Tensor) -> dist.Distribution:
        # the relaxed use evaluates log_prob outside {0, 1}, which validation would refuse
        return dist.Bernoulli(logits=logits, validate_args=False if self.relaxed else None).to_event(1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def check_data(self, x: torch.Tensor, name: str) -> None:
        lo, hi = x.min().item(), x.max().item()
        if self.relaxed:
            if lo < 0 or hi > 1:
                raise DataError(
                    f"relaxed bernoulli likelihood needs data in [0, 1], but {name} spans [{lo:g}, {hi:g}]"
                )
            return
        if not bool(((x == 0) | (x == 1)).all()):
            raise DataError(
                f"bernoulli likelihood needs binary data (0 or 1), but {name} has values in "
                f'[{lo:g}, {hi:g}] that are not 0 or 1; use likelihood = {{ kind = "gaussian" }} '
                "for real-valued data, or set likelihood.relaxed = true to use Bernoulli "
                "cross-entropy anyway (not a proper density: its log-likelihoods are not comparable)"
            )


@register_likelihood("gaussian")
class Gaussian(nn.Module):
    """p(x|z) = Π_d N(x_d; f_θ(z)_d, σ_d²).

    ``scale`` is a fixed σ shared by all dimensions, or ``"learned"``: one σ_d per
    dimension, σ_d = softplus(s_d) + ``min_scale``, learned with the decoder. The floor
    keeps the density bounded on dimensions the data never varies in (the blank border
    of an image), where a free σ_d would shrink to 0 and the log-likelihood diverge.
    """

    def __init__(
        self,
        data_dim: int,
        /,
        *,
        scale: PositiveFloat | Literal["learned"] = "learned",
        min_scale: PositiveFloat = 1e-2,
    ):
        super().__init__()
        self.param_features = data_dim
        self.min_scale = min_scale
        if scale == "learned":
            init = softplus_inverse(torch.tensor(1.0 - min_scale)) if min_scale < 1 else torch.tensor(0.0)
            self.raw_scale = nn.Parameter(init.expand(data_dim).clone())
        else:
            self.register_buffer("fixed_scale", torch.full((data_dim,), float(scale)))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Start a learned σ_d at the data's standard deviation in dimension d.

        That is the maximum-likelihood σ_d of a decoder that predicts the data mean, so
        training starts from a sensible density instead of spending thousands of steps
        shrinking σ from an arbitrary value.
        """
        if hasattr(self, "raw_scale"):
            target = x.std(0).clamp(min=2 * self.min_scale) - self.min_scale
            self.raw_scale.copy_(softplus_inverse(target.to(self.raw_scale)))

    def scale(self) -> torch.Tensor:
        if hasattr(self, "raw_scale"):
            return F.softplus(self.raw_scale) + self.min_scale
        return self.fixed_scale

    def forward(self, loc: torch.Tensor) -> dist.Distribution:
        return dist.Normal(loc, self.scale()).to_event(1)

    def mean(self, loc: torch.Tensor) -> torch.Tensor:
        return loc

    def check_data(self, x: torch.Tensor, name: str) -> None:
        """Every finite real number lies in the support; finiteness is checked on loading."""
