"""log p(x) by importance sampling with the guide as proposal.

    log p̂(x_n) = log (1/K) Σ_k p(x_n, z_k) / q(z_k | x_n),   z_k ~ q(z | x_n),

the IWAE bound with K samples (Burda et al. 2016): a stochastic lower bound on log p(x_n)
(E[p̂] = p(x), so E[log p̂] ≤ log p(x) by Jensen) that rises to it as K grows. The weights
come from :func:`pyro_vae.inference.traces.local_terms` (``log_w``), so masks, scales and every
model/guide pair with one data plate are handled as in training. The chunks are sized to
keep memory traffic low, and compiled for long estimates (:mod:`pyro_vae.inference.estimators.chunks`).
"""

import math
from typing import Literal

import pyro
import torch

from pyro_vae.core.options import PositiveInt
from pyro_vae.inference.estimators.base import MarginalLikelihood, register_estimator, require_density
from pyro_vae.inference.estimators.chunks import Chunks, chunk_length
from pyro_vae.inference.estimators.pooled_tail import TailFit
from pyro_vae.inference.estimators.weights import WeightStats
from pyro_vae.inference.sites import max_plate_nesting


@register_estimator("is")
@torch.no_grad()
def importance_sampling(
    model,
    guide,
    x: torch.Tensor,
    /,
    *,
    seed: int | None = None,
    batch_size: int = 100,
    device=None,
    progress=None,
    plate: str = "data",
    first_point: int = 0,
    samples: PositiveInt = 5000,
    chunk_size: PositiveInt = 500,
    compile: Literal["auto"] | bool = "auto",
) -> MarginalLikelihood:
    """Importance sampling with the guide as proposal: the IWAE bound with K = ``samples``.

    The K weights of each data point are drawn ``chunk_size`` at a time for ``batch_size``
    points at a time and combined by a running log-sum-exp, so that peak memory is set by
    ``chunk_size × batch_size`` whatever K, and less where the data are wide: chunks are cut
    to keep their tensors where the allocator reuses memory (:mod:`pyro_vae.inference.estimators.chunks`,
    which with ``compile`` compiles them: ``"auto"`` when the estimate would take minutes).
    Each sample's noise is fixed by (``seed``, point
    index, sample index) (:mod:`pyro_vae.inference.noise`), so chunk and batch sizes change
    memory, not the estimate; ``seed`` defaults to a draw from torch's global generator
    (``pyro.set_rng_seed`` fixes it), and ``first_point`` is the index of ``x[0]`` among the
    points measured (a process's share). The error of each point's estimate and its weights'
    Pareto k̂ are :class:`~pyro_vae.inference.estimators.weights.WeightStats`', the tail's shape
    learnt from all the points measured (:mod:`~pyro_vae.inference.estimators.pooled_tail`).
    """
    device = device or x.device
    require_density(guide, x[:1].to(device), "is")  # the proposal is q: a point mass has no density
    nesting = max_plate_nesting(model, guide, x[:1].to(device))  # with validation: shapes checked
    seed = int(torch.randint(2**62, ())) if seed is None else seed
    length = chunk_length(samples, chunk_size, min(batch_size, len(x)), math.prod(x.shape[1:]))
    planned = math.ceil(len(x) / batch_size) * math.ceil(samples / length)
    chunks = Chunks(model, guide, seed=seed, nesting=nesting, plate=plate, mode=compile, planned=planned)
    parts, fits = [], []
    with pyro.validation_enabled(False):  # support checks on every chunk would read the device
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device)
            stats = WeightStats(len(xb), samples, device=device, dtype=xb.dtype)
            for start in range(0, samples, length):
                k = min(length, samples - start)
                stats.add(chunks(xb, first_point + i, start, k), start)  # (k, B)
            parts.append(stats.finish())
            fits.append(stats.fit)
            if progress is not None:
                progress(len(xb))
    log_px, ess, mc_stderr, k_hat = (torch.cat(t) for t in zip(*parts, strict=True))
    result = MarginalLikelihood(
        log_px, ess, mc_stderr, num_samples=samples, pareto_k=k_hat, tail=TailFit.cat(fits)
    )
    return result.pooled()


def log_marginal_likelihood(
    model,
    guide,
    data: torch.Tensor,
    *,
    num_samples: int = 5000,
    chunk_size: int = 500,
    batch_size: int = 100,
    plate: str = "data",
    device=None,
    seed: int | None = None,
    progress=None,
) -> MarginalLikelihood:
    """:func:`importance_sampling` with K = ``num_samples``, by its earlier name."""
    return importance_sampling(
        model,
        guide,
        data,
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=progress,
        plate=plate,
        samples=num_samples,
        chunk_size=chunk_size,
    )


__all__ = ["importance_sampling", "log_marginal_likelihood"]
