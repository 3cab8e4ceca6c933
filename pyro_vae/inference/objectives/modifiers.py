"""KL annealing, free bits and a classification term: modifiers that combine with any objective.

Each objective's bound B(x) holds a KL term, explicitly (the ELBO family) or inside its
weights (IWAE, Rényi). The modifiers move that KL by a correction outside the bound:

    B̃(x) = B(x) + b · (KL(x) − β_t · FB_λ(x)),     FB_λ(x) = Σ_j max(λ, KL̄_j),

with KL(x) = Σ_j KL_j(x), KL_j(x) = KL(q(z_j|x) || p(z_j)) for each latent dimension j
(each latent site, where q or p does not factorize over dimensions), in closed form where
one is registered and estimated at one draw z ~ q(z|x) otherwise, and KL̄_j its mean
over the minibatch, and b the weight the bound itself puts on its KL (β for the
β-VAE's recon − β·KL, 1 otherwise). For the ELBO this is E_q[log p(x|z)] − β_t · FB_λ (exactly when the
bound's KL is the same closed form, as ``meanfield``'s; in expectation otherwise):

* KL annealing (warm-up): β_t rises linearly from 0 to 1 over the first ``kl_warmup``
  epochs (or steps), so the decoder learns to use z before the KL presses q toward the
  prior (Bowman et al. 2016; Sønderby et al. 2016);
* free bits: no gradient pushes KL̄_j below λ = ``free_bits`` nats, so that dimensions
  are not switched off early (Kingma et al. 2016, eq. 15). KL̄_j is the mean over the
  global minibatch, summed across processes when there are several.

A semi-supervised graph (:mod:`pyro_vae.models.graph.program`) carries Kingma et al.'s (2014)
classification term log q(y|x) on its labelled rows as an auxiliary factor of value 0; ``classify``
is its weight α, so that the loss's gradient gains α Σ_labelled ∇ log q(y_n|x_n) while every
bound the loss reports stays the model's own (their eq. 9 with α = ``classify``).

The correction, like every scale factor, is applied outside any log-mean-exp. It costs
one more pass of the guide and the model per step. β_t is an input of the loss:
``pyro_vae.train`` passes ``kl_weight`` = :meth:`Modified.kl_weight_at` of its progress to
each step (:meth:`Modified.schedule_inputs`); a user's own loop (``pyro.infer.SVI``) may
instead call ``set_progress`` once per step, which the loss reads when no weight is given.
"""

import math

import pyro.distributions as dist
import pyro.infer
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch.distributions import Independent

from pyro_vae.core.distributed import world
from pyro_vae.core.numeric import masked
from pyro_vae.inference.sites import latent_sites
from pyro_vae.inference.traces import closed_form_sites, site_scale
from pyro_vae.models.graph.program import AUXILIARY
from pyro_vae.models.kl import site_kl


class Modified(pyro.infer.ELBO):
    """An objective with KL warm-up and/or free bits; see the module docstring."""

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("a Modified objective runs its base objective's traces")

    def __init__(
        self,
        base,
        *,
        kl_warmup: int = 0,
        kl_warmup_unit: str = "epochs",
        free_bits: float = 0.0,
        classify: float = 1.0,
        plate: str = "data",
    ):
        super().__init__(num_particles=base.num_particles)
        self.base = base
        self.kl_warmup, self.kl_warmup_unit, self.free_bits = kl_warmup, kl_warmup_unit, free_bits
        self.classify, self.plate = classify, plate
        self.epoch, self.step = 0.0, 0

    def kl_weight_at(self, epoch: float, step: int) -> float:
        """β_t after ``epoch`` completed epochs (fractional) and ``step`` updates."""
        if self.kl_warmup == 0:
            return 1.0
        done = epoch if self.kl_warmup_unit == "epochs" else step
        return min(1.0, done / self.kl_warmup)

    def schedule_inputs(self, epoch: float, step: int) -> dict:
        """What the loss takes from training progress: ``{"kl_weight": β_t}``."""
        return {"kl_weight": self.kl_weight_at(epoch, step)}

    def set_progress(self, *, epoch: float, step: int) -> None:
        """Progress for a user's own loop, read by a loss called without ``kl_weight``."""
        self.epoch, self.step = epoch, step

    @property
    def kl_weight(self) -> float:
        """β_t at the progress last given to :meth:`set_progress`."""
        return self.kl_weight_at(self.epoch, self.step)

    def differentiable_loss(self, model, guide, x: torch.Tensor, *, kl_weight: float | None = None):
        kl_weight = self.kl_weight if kl_weight is None else kl_weight
        if self.classify != 1.0:
            model = weighted(model, self.classify)
        loss = self.base.differentiable_loss(model, guide, x)
        if not (self.kl_warmup or self.free_bits):
            return loss
        kl, scale = kl_by_dimension(model, guide, x, plate=self.plate)  # (B, J)
        total = kl.sum()
        free = self._free_bits(kl) if self.free_bits else total
        # the base bound's own KL weight (β for the β-VAE, 1 otherwise) is what the schedule moves
        b = getattr(self.base, "kl_scale", 1.0)
        return loss - scale * b * (total - kl_weight * free)

    def _free_bits(self, kl: torch.Tensor) -> torch.Tensor:
        """FB_λ summed over this batch's points, B · Σ_j max(λ, KL̄_j), as a sum over points.

        With KL̄_j the mean over the *global* batch (all processes' shares, one all-reduce),
        each process's part Σ_j [a_j Σ_n KL_nj + (1 − a_j) λ b], a_j = 1[KL̄_j ≥ λ] and b its
        points, sums to the one-process value, and its gradient is the clamp's.
        """
        sums = torch.cat([kl.sum(0), kl.new_full((1,), len(kl))])  # (J + 1,), no host copy
        total = world().sum(sums.detach())
        active = (total[:-1] / total[-1] >= self.free_bits).to(kl.dtype)  # (J,)
        return (active * sums[:-1] + (1 - active) * self.free_bits * len(kl)).sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


def weighted(model, alpha: float):
    """``model`` with its auxiliary factors (the classification term) multiplied by ``alpha``."""
    return _Weighted(alpha)(model)


class _Weighted(Messenger):
    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def _pyro_sample(self, msg):
        if msg["infer"].get(AUXILIARY):
            msg["fn"] = dist.Unit(self.alpha * msg["fn"].log_factor, has_rsample=True)


def kl_by_dimension(model, guide, x: torch.Tensor, *, plate: str = "data") -> tuple[torch.Tensor, float]:
    """KL(q(z_j|x_n) || p(z_j)) for every data point n and latent dimension j: ``(B, J)``.

    Closed form where registered, log q − log p at one draw otherwise. A latent site
    whose guide or prior does not factorize over its dimensions counts as one group.
    """
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    groups, sites = [], []
    closed = closed_form_sites(model_trace, guide_trace)
    for name, site in latent_sites(model_trace).items():
        q_site = guide_trace.nodes[name]
        sites += [site, q_site]
        q, p = _factors(q_site["fn"], site["fn"])
        kl, _ = site_kl(q, p, q_site["value"], name in closed)
        kl = masked(kl, q_site["mask"], event_dims=kl.dim() - len(q_site["fn"].batch_shape))
        groups.append(_by_datum(kl, q_site, plate))
    return torch.cat(groups, dim=1), site_scale(sites)


def _factors(q, p):
    """The per-dimension factors of q and p when both are Independent over the same shape."""
    independent = isinstance(q, Independent) and isinstance(p, Independent)
    if independent and q.base_dist.event_shape == () == p.base_dist.event_shape:
        return q.base_dist, p.base_dist
    return q, p


def _by_datum(kl: torch.Tensor, site: dict, plate: str) -> torch.Tensor:
    """``(batch..., dims...)`` -> ``(B, J)``: keep the data plate and the latent dimensions."""
    batch = len(site["fn"].batch_shape)
    frame = next(f for f in site["cond_indep_stack"] if f.name == plate)
    kl = kl.expand(torch.broadcast_shapes(kl.shape, site["fn"].batch_shape + kl.shape[batch:]))
    kl = kl.movedim(batch + frame.dim, 0)  # data first
    dims = math.prod(kl.shape[batch:])  # the factors' own dimensions (1 for a whole site)
    return kl.reshape(kl.shape[0], -1, dims).sum(1)
