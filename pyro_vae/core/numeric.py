"""Numeric helpers shared by the parts, objectives and estimators."""

import math

import torch
import torch.nn.functional as F


def floored_softplus(raw: torch.Tensor, floor: float) -> torch.Tensor:
    """softplus(raw) + ``floor``: a positive scale (or concentration) from an unconstrained
    number, bounded away from 0 so that densities stay bounded."""
    return F.softplus(raw) + floor


def softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y, for y > 0: log(exp(y) - 1), written to stay finite."""
    return y + torch.log(-torch.expm1(-y))


def log_mean_exp(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/k) Σ_k exp(t_k) along ``dim``, stably."""
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])


def masked(value: torch.Tensor, mask, event_dims: int = 0) -> torch.Tensor:
    """``value`` with 0 where a Pyro site's ``mask`` is False (None or True keeps everything).

    A tensor mask broadcasts against the batch shape, from the right, as Pyro's masks do;
    ``event_dims`` trailing dimensions of ``value`` beyond it (a KL per latent dimension) share
    each mask entry.
    """
    if mask is None or mask is True:
        return value
    if mask is False:
        return torch.zeros_like(value)
    mask = mask.reshape(mask.shape + (1,) * event_dims)
    return torch.where(mask, value, torch.zeros_like(value))


def read_back(*values: torch.Tensor) -> list[float]:
    """Scalars computed on the data's device, read to the host in one transfer (as float64,
    so that counts up to 2⁵³ stay exact)."""
    return torch.stack([v.to(torch.float64) for v in values]).tolist()
