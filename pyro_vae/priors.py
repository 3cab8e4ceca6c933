"""Priors p(z) over the latent code.

A prior entry is called as ``entry(latent_dim, **options)`` and returns a
``torch.nn.Module`` whose ``forward()`` gives a distribution with
``event_shape == (latent_dim,)`` and empty batch shape; the model's data plate
broadcasts it over data points. Its parameters and buffers live on the module, so
``vae.to(device)`` moves them with the rest of the model.
"""

import pyro.distributions as dist
import torch
from torch import nn

from .registry import Registry

PRIORS = Registry("prior")
register_prior = PRIORS.register


@register_prior("normal")
class StandardNormal(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int, /):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)
