"""A user's own Pyro model and guide, written by hand (``pyro.param``, no VAE class): one latent
factor z ~ N(0, 1) behind three observed values x = z·w + 0.3 ε, as tests of training take it."""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from pyro_vae.data.datasets import Data

W_TRUE = torch.tensor([2.0, -1.0, 0.5])


def model(x):
    w = pyro.param("w", torch.ones(3))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        pyro.sample("x", dist.Normal(z * w, 0.3).to_event(1), obs=x)


def guide(x):
    a = pyro.param("a", torch.zeros(3))
    s = pyro.param("s", torch.tensor(1.0), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal((x @ a).unsqueeze(-1), s).to_event(1))


def data(n: int, valid: int, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n + valid, 1, generator=g)
    x = z * W_TRUE + 0.3 * torch.randn(n + valid, 3, generator=g)
    return Data(name="toy", train=x[:n], valid=x[n:])
