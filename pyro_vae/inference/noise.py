"""Reproducible draws: noise fixed by (seed, data point, sample, coordinate).

An importance-sampling estimate draws K samples for each of N data points, in chunks that
only bound memory. With the global random stream the draws would depend on the chunking.
Inside :class:`IndexedNoise`, a reparameterizable guide site instead draws its standard
normal noise ε from a counter-based generator: each ε is a hash of the seed, the data
point's index in the dataset, the sample's index among the K, the latent site's name and the coordinate
(splitmix64, Steele et al. 2014, then Box–Muller), so the same seed gives the same estimate
whatever the chunk and batch sizes. It covers Normal, MultivariateNormal, Independent and
TransformedDistribution guides, and a class (``OneHotCategorical``: argmax of the logits plus
Gumbel noise −log(−log Φ(ε)); Gumbel 1954) drawn by a ``score`` or ``relaxed`` categorical
guide; any other site draws from the global stream as usual. A
point mass (the ``delta`` guide) draws nothing, so there is nothing to key, and it is not
reported as missed.

Training draws the same way, with the seed of each step :func:`step_seed` (train.seed, step):
a point's noise in a step then does not depend on its place in the minibatch, nor on which
process of several holds it (:mod:`pyro_vae.core.distributed`), so N processes train the model
one process trains. A site outside a ``"particles"`` plate (a one-particle ELBO) is particle 0.
"""

import functools
import math
import zlib

import torch
from pyro.distributions import (
    Independent,
    MultivariateNormal,
    Normal,
    OneHotCategorical,
    TransformedDistribution,
)
from pyro.poutine.messenger import Messenger
from torch.fx.experimental.proxy_tensor import get_proxy_mode

from pyro_vae.inference.sites import PARTICLES
from pyro_vae.models.graph.categorical import one_hot_from_uniform
from pyro_vae.models.kl import is_point_mass

_M1, _M2 = -4658895280553007687, -7723592293110705685  # splitmix64 constants, as int64
_GAMMA = -7046029254386353131  # 0x9E3779B97F4A7C15, the golden gamma, as int64


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finalizer, with int64's wrapping arithmetic."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def _int64(x: int) -> int:
    """A Python integer as int64 arithmetic wraps it."""
    x %= 2**64
    return x - 2**64 if x >= 2**63 else x


def _scramble(x: int) -> int:
    """splitmix64 of a Python integer, on the host, as an int64 value."""
    x %= 2**64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) % 2**64
    return _int64(x ^ (x >> 31))


def step_seed(seed: int, step):
    """The noise seed of training step ``step`` of a run seeded ``seed``: splitmix64 of both.

    ``step`` may be an int64 tensor (a compiled step's input), giving the same value as a tensor.
    """
    run = _scramble((seed + 1) * 0x9E3779B97F4A7C15)
    return _mix(step + run) if torch.is_tensor(step) else _scramble(run + step)


def indexed_normal(seed: int, points, samples, coords, dtype=torch.float32) -> torch.Tensor:
    """Standard normals, one per broadcast (point, sample, coordinate) index triple.

    The point keys a splitmix64 stream, ``mix(scramble(seed) ^ point)``, and (sample,
    coordinate) is the position in it: one more finalizer of the key plus that counter times
    the golden gamma, as SplitMix64 steps (Steele et al. 2014). The seed is scrambled first, so
    that seeds s and s' do not share draws at points p and p ^ s ^ s'. The hash's two 32-bit
    halves are the two uniforms of Box–Muller. Samples and coordinates must be below 2³¹.
    ``seed`` may be an int64 tensor (a compiled step's input).
    """
    counter = coords + (samples << 32)
    offset = counter * _GAMMA if torch.is_tensor(counter) else _int64(counter * _GAMMA)
    key = _mix(seed) if torch.is_tensor(seed) else _scramble(seed)
    h = _mix(_mix(key ^ points) + offset)
    u1 = (_shr(h, 32).to(dtype) + 0.5) * 2.0**-32
    u2 = ((h & 0xFFFFFFFF).to(dtype) + 0.5) * 2.0**-32
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


class IndexedNoise(Messenger):
    """Draw guide samples from :func:`indexed_normal` noise; see the module docstring.

    :param first_point: the dataset index of the batch's first data point, or a ``(B,)``
        tensor of the dataset indices of the batch's points.
    :param first_sample: the index of the chunk's first sample among the K.
    :param missed: called once with a site's name when its draw cannot be keyed (not
        reparameterizable, or a distribution it does not cover), which then draws from the
        global stream.
    """

    def __init__(self, seed: int, first_point, first_sample: int = 0, plate: str = "data", missed=None):
        super().__init__()
        self.seed, self.first_point, self.first_sample, self.plate = seed, first_point, first_sample, plate
        self.missed = missed

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None:
            return
        frames = {f.name: f.dim for f in msg["cond_indep_stack"] if f.vectorized}
        if self.plate not in frames or is_point_mass(msg["fn"]):
            return  # a point mass's value is its parameter: no noise to draw
        if isinstance(msg["fn"], OneHotCategorical):  # a class drawn by a score or relaxed guide
            u = torch.special.ndtr(self._noise(msg["fn"].logits, msg, frames))  # uniforms, keyed
            msg["value"] = one_hot_from_uniform(msg["fn"], u)
            return
        if not msg["fn"].has_rsample:
            self._missed(msg)
            return
        try:
            msg["value"] = _reparameterize(msg["fn"], lambda shape: self._noise(shape, msg, frames))
        except NotImplementedError:
            self._missed(msg)

    def _missed(self, msg) -> None:
        if self.missed is not None:
            self.missed(msg["name"])

    def _noise(self, like: torch.Tensor, msg, frames) -> torch.Tensor:
        """ε shaped like ``like`` (batch then event dims of the site's base distribution)."""
        batch = len(msg["fn"].batch_shape)
        point = batch + frames[self.plate]
        particle = batch + frames[PARTICLES] if PARTICLES in frames else None
        where, counter = _layout(tuple(like.shape), point, particle, like.device)
        # each latent site gets its own stream: z₁ and z₂ of a hierarchical guide must not share ε
        seed = self.seed ^ (zlib.crc32(msg["name"].encode()) << 31)
        if torch.is_tensor(self.first_point):  # the dataset index of each point
            points = self.first_point.reshape(where)
        else:
            points = self.first_point + torch.arange(like.shape[point], device=like.device).reshape(where)
        if torch.is_tensor(self.first_sample) or self.first_sample:  # a tensor: a compiled chunk's input
            counter = counter + (self.first_sample << 32)
        return indexed_normal(seed, points, 0, counter).expand(like.shape).to(like.dtype)


def _layout(shape: tuple, point: int, particle: int | None, device: torch.device):
    """For noise of ``shape``: the shape that puts a ``(B,)`` tensor of points on its point
    dimension, and each value's position in its point's stream: (particle, row-major index over
    the other dimensions) as ``particle << 32 | coordinate``. Made once per shape, but made
    anew while a step is being captured (:mod:`pyro_vae.training.compiled`): the tensors are then the
    graph's, which the compiler folds into the hash's loop."""
    if get_proxy_mode() is not None:
        return _counters(shape, point, particle, device)
    return _cached_counters(shape, point, particle, device)


def _counters(shape: tuple, point: int, particle: int | None, device: torch.device):
    where = [1] * len(shape)
    where[point] = shape[point]
    coord = torch.zeros((), dtype=torch.int64, device=device)
    for i, n in enumerate(shape):
        if i not in (particle, point):
            coord = coord * n + torch.arange(n, device=device).reshape([-1] + [1] * (len(shape) - i - 1))
    if particle is not None:
        k = torch.arange(shape[particle], device=device).reshape([-1] + [1] * (len(shape) - particle - 1))
        coord = coord + (k << 32)
    return tuple(where), coord


_cached_counters = functools.lru_cache(maxsize=64)(_counters)


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
