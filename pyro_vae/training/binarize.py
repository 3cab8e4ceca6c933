"""A fresh binarization of the training points every epoch (``data.binarize = "dynamic"``).

Burda et al. (2016) train on MNIST binarized afresh whenever a point is drawn: each grey value
p ∈ [0, 1] is the probability of a 1, and every epoch sees a new Bernoulli draw of every point.
On the fixed binarization of Larochelle & Murray (2011) their models overfit by about 3.5 nats
and score about 2 nats worse (github.com/yburda/iwae, README).

The bit of pixel d of point n in epoch e is a function of (train.seed, e, n, d) alone: it is 1
when ε < Φ⁻¹(p), with ε the standard normal that
:func:`~pyro_vae.inference.noise.indexed_normal` keys by (seed, point n, sample e, coordinate d)
on a stream of its own, so that P(1) = Φ(Φ⁻¹(p)) = p. No random state is read or moved: a point
gets the same bits in an epoch whatever the batch size, the order, the number of processes, and
a run resumed within an epoch draws what the uninterrupted run drew.
"""

import zlib

import torch

from pyro_vae.data.datasets import Data
from pyro_vae.inference.noise import indexed_normal

#: the stream of the draws, apart from the guide's noise (keyed by step seeds and site names)
_STREAM = zlib.crc32(b"data.binarize") << 31


def fresh_bits(probs: torch.Tensor, index: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """One Bernoulli draw of ``probs`` (B, D), the grey values of the points of dataset indices
    ``index`` (B,), for epoch ``epoch`` of a run seeded ``seed``: 0/1 values of ``probs``'s dtype."""
    assert probs.dim() == 2 and index.shape == probs.shape[:1], (probs.shape, index.shape)
    coords = torch.arange(probs.shape[1], device=probs.device)  # (D,)
    eps = indexed_normal(seed ^ _STREAM, index.reshape(-1, 1), epoch, coords)  # (B, D)
    return (eps < torch.special.ndtri(probs)).to(probs.dtype)  # ndtri(0) = -inf, ndtri(1) = inf


class DynamicBinarization:
    """The minibatch of :func:`~pyro_vae.training.loop.fit` under ``data.binarize = "dynamic"``:
    the fresh draw of the points ``index`` in ``epoch`` (``x``, the fixed draw that
    :func:`~pyro_vae.data.datasets.load_data` made, is replaced; columns past the grey values,
    a graph's label, are kept)."""

    def __init__(self, probs: torch.Tensor, seed: int):
        self.probs, self.seed = probs, seed

    def __call__(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        # the grey values may be pinned on the host while the step runs on a GPU
        probs = self.probs[index.to(self.probs.device)].to(x.device, non_blocking=True)
        bits = fresh_bits(probs, index.to(x.device), self.seed, epoch)
        return bits if x.shape[1] == bits.shape[1] else torch.cat([bits, x[:, bits.shape[1] :]], 1)


def dynamic_binarization(data: Data, seed: int) -> DynamicBinarization | None:
    """The minibatch hook for ``data``: None unless it was loaded with ``data.binarize = "dynamic"``."""
    return None if data.train_probs is None else DynamicBinarization(data.train_probs, seed)
