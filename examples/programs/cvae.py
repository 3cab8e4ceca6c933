"""A conditional VAE written as a Pyro program and registered for pyro-vae (Sohn, Lee & Yan 2015,
"Learning structured output representation using deep conditional generative models"): the
bottom half of an image given its top half, the task of Pyro's own examples/cvae.

    pyro-vae train --plugins examples/programs/cvae.py --model.program.kind cvae --data.name digits
    pyro-vae evaluate RUN        # log p(bottom | top), by importance sampling
    pyro-vae sample RUN          # draw(x): validation images completed from their top halves

The same model can be declared without code: examples/graphs/cvae_completion.toml.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyro_vae


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


@pyro_vae.register_program("cvae")
class CVAE(nn.Module):
    """p(z | top) p(bottom | z, top) with q(z | top, bottom), for square grey images in [0, 1]."""

    def __init__(self, data_dim: int, /, *, latent: int = 16, hidden: int = 256):
        super().__init__()
        side = math.isqrt(data_dim)
        self.cut = side * (side // 2)  # the top rows' pixels come first in a flattened image
        top, bottom = self.cut, data_dim - self.cut
        self.prior_net = mlp(top, hidden, 2 * latent)
        self.recognition_net = mlp(top + bottom, hidden, 2 * latent)
        self.generation_net = mlp(latent + top, hidden, bottom)

    @staticmethod
    def gaussian(out: torch.Tensor) -> dist.Distribution:
        loc, raw = out.chunk(2, -1)
        return dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1)

    def model(self, x: torch.Tensor) -> None:
        top, bottom = x[:, : self.cut], x[:, self.cut :]
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", self.gaussian(self.prior_net(top)))  # (..., B, latent): particles may lead
            logits = self.generation_net(torch.cat([z, top.expand(*z.shape[:-1], -1)], -1))
            pyro.sample(
                "bottom", dist.ContinuousBernoulli(logits=logits.clamp(-10, 10)).to_event(1), obs=bottom
            )

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", len(x)):
            pyro.sample("z", self.gaussian(self.recognition_net(x)))

    @torch.no_grad()
    def draw(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's top half, then a bottom half drawn given it (its expected value)."""
        top = x[:, : self.cut]
        z = self.gaussian(self.prior_net(top)).sample()
        logits = self.generation_net(torch.cat([z, top], -1)).clamp(-10, 10)
        return torch.cat([top, dist.ContinuousBernoulli(logits=logits).mean], -1)
