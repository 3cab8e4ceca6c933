"""Amortized guides q_φ(z|x): the encoder's output turned into a distribution over z.

A guide entry is called as ``entry(latent_dim, **options)`` and returns a
``torch.nn.Module`` with ``param_features`` (how many numbers per data point the
encoder must output) and ``forward(out)`` giving a reparameterizable distribution
with ``event_shape == (latent_dim,)`` whose ``log_prob`` is exact for the samples it
draws (importance sampling and the IWAE bound rely on it).
"""

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .config import PositiveFloat
from .registry import Registry

GUIDES = Registry("guide")
register_guide = GUIDES.register


@register_guide("normal")
class DiagonalNormal(nn.Module):
    """q_φ(z|x) = N(z; μ_φ(x), diag σ_φ(x)²), with σ = softplus(·) + ``min_scale``.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", appendix C.2.
    """

    def __init__(self, latent_dim: int, /, *, min_scale: PositiveFloat = 1e-4):
        super().__init__()
        self.param_features = 2 * latent_dim
        self.min_scale = min_scale

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = out.chunk(2, dim=-1)  # (..., Z) each
        return dist.Normal(loc, F.softplus(raw_scale) + self.min_scale).to_event(1)
