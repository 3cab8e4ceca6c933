"""Reproducible draws for estimators: noise fixed by (seed, data point, sample, coordinate).

An importance-sampling estimate draws K samples for each of N data points, in chunks that
only bound memory. With the global random stream the draws would depend on the chunking.
Inside :class:`IndexedNoise`, a reparameterizable guide site instead draws its standard
normal noise ε from a counter-based generator: each ε is a hash of the seed, the data
point's index in the dataset, the sample's index among the K, the latent site's name and the coordinate
(splitmix64, Steele et al. 2014, then Box–Muller), so the same seed gives the same estimate
whatever the chunk and batch sizes. It covers Normal, MultivariateNormal, Independent and
TransformedDistribution guides; any other site draws from the global stream as usual.
"""

import math
import zlib

import torch
from pyro.distributions import Independent, MultivariateNormal, Normal, TransformedDistribution
from pyro.poutine.messenger import Messenger

from ..traces import PARTICLES

_M1, _M2 = -4658895280553007687, -7723592293110705685  # splitmix64 constants, as int64


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer, with int64's wrapping arithmetic."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def indexed_normal(seed: int, points, samples, coords, dtype=torch.float32) -> torch.Tensor:
    """Standard normals, one per broadcast (point, sample, coordinate) index triple.

    One 64-bit hash per value; its two 32-bit halves are the two uniforms of Box–Muller.
    """
    h = _mix(_mix(_mix(seed ^ points) + samples) + coords)
    u1 = (_shr(h, 32).to(dtype) + 0.5) / 2.0**32
    u2 = ((h & 0xFFFFFFFF).to(dtype) + 0.5) / 2.0**32
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


class IndexedNoise(Messenger):
    """Draw guide samples from :func:`indexed_normal` noise; see the module docstring.

    :param first_point: the dataset index of the batch's first data point.
    :param first_sample: the index of the chunk's first sample among the K.
    """

    def __init__(self, seed: int, first_point: int, first_sample: int, plate: str = "data"):
        super().__init__()
        self.seed, self.first_point, self.first_sample, self.plate = seed, first_point, first_sample, plate

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or not msg["fn"].has_rsample:
            return
        frames = {f.name: f.dim for f in msg["cond_indep_stack"] if f.vectorized}
        if PARTICLES not in frames or self.plate not in frames:
            return
        try:
            msg["value"] = _reparameterize(msg["fn"], lambda shape: self._noise(shape, msg, frames))
        except NotImplementedError:
            return

    def _noise(self, like: torch.Tensor, msg, frames) -> torch.Tensor:
        """ε shaped like ``like`` (batch then event dims of the site's base distribution)."""
        shape, batch = like.shape, len(msg["fn"].batch_shape)
        particle, point = batch + frames[PARTICLES], batch + frames[self.plate]
        index = [
            torch.arange(n, device=like.device).reshape([-1] + [1] * (len(shape) - i - 1))
            for i, n in enumerate(shape)
        ]
        coord = torch.zeros((), dtype=torch.int64, device=like.device)
        for i, n in enumerate(shape):
            if i not in (particle, point):
                coord = coord * n + index[i]  # row-major index over the other dimensions
        # each latent site gets its own stream: z₁ and z₂ of a hierarchical guide must not share ε
        seed = self.seed ^ (zlib.crc32(msg["name"].encode()) << 31)
        eps = indexed_normal(
            seed, self.first_point + index[point], self.first_sample + index[particle], coord
        )
        return eps.expand(shape).to(like.dtype)


def _reparameterize(fn, noise):
    """A reparameterized draw of ``fn`` from standard-normal noise ``noise(like)``."""
    if isinstance(fn, Independent):
        return _reparameterize(fn.base_dist, noise)
    if isinstance(fn, Normal):
        return fn.loc + fn.scale * noise(fn.loc)
    if isinstance(fn, MultivariateNormal):
        return fn.loc + (fn.scale_tril @ noise(fn.loc).unsqueeze(-1)).squeeze(-1)
    if isinstance(fn, TransformedDistribution):
        x = _reparameterize(fn.base_dist, noise)
        for transform in fn.transforms:
            x = transform(x)
        return x
    raise NotImplementedError
