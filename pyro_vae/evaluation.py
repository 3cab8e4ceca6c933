"""Measuring a trained model/guide pair, one number per data point.

ELBO and its parts, for each data point x_n with one draw z ~ q(z|x_n)::

    ELBO(x_n) = recon(x_n) − KL(x_n)
    recon(x_n) = log p(x_n | z)
    KL(x_n)    = KL(q(z|x_n) || p(z))            in closed form where one is registered,
               = log q(z|x_n) − log p(z)          its one-sample Monte-Carlo estimate otherwise.

Both are unbiased estimates of the same bound (Kingma & Welling 2014, eqs. 6–7); the
closed form only has less variance. Which one was used is reported.

The marginal likelihood by importance sampling with the guide as proposal::

    log p̂(x_n) = log (1/K) Σ_k p(x_n, z_k) / q(z_k | x_n),   z_k ~ q(z | x_n),

the IWAE bound with K samples (Burda et al. 2016): a stochastic lower bound on
log p(x_n) that rises to it as K grows.

All of this works for any Pyro model/guide pair whose sites live under one plate over
data points (named ``"data"`` by default); see :mod:`pyro_vae.traces`.
"""

import math
from dataclasses import dataclass

import pyro
import torch

from .noise import IndexedNoise
from .traces import local_terms, max_plate_nesting


@torch.no_grad()
def elbo_parts(
    model,
    guide,
    x: torch.Tensor,
    *,
    plate: str = "data",
    analytic_kl: bool = True,
    nesting: int | None = None,
) -> dict:
    """ELBO, reconstruction and KL per data point of one batch ``x``, shape ``(B,)`` each.

    With ``analytic_kl=False`` the KL is always the Monte-Carlo estimate, so that the
    ELBO is log p(x, z) − log q(z|x) at one z (exact at the true posterior, whatever z).
    Also returns ``"kl_estimator"``: ``"analytic"`` or ``"monte_carlo"``.
    """
    nesting = max_plate_nesting(model, guide, x) if nesting is None else nesting
    t = local_terms(model, guide, x, nesting=nesting, plate=plate, analytic_kl=analytic_kl)
    analytic = t.kl is not None
    kl = t.kl[0] if analytic else (t.log_q - t.log_prior)[0]
    recon = t.recon[0]
    return {
        "elbo": recon - kl,
        "recon": recon,
        "kl": kl,
        "kl_estimator": "analytic" if analytic else "monte_carlo",
    }


@torch.no_grad()
def evaluate_elbo(
    model,
    guide,
    data: torch.Tensor,
    *,
    batch_size: int = 1000,
    plate: str = "data",
    analytic_kl: bool = True,
    device=None,
) -> dict:
    """:func:`elbo_parts` over a whole dataset in batches; tensors of shape ``(N,)``.

    Batches are moved to ``device`` when given (data too large to hold there whole).
    """
    device = device or data.device
    nesting = max_plate_nesting(model, guide, data[:1].to(device))
    options = {"plate": plate, "analytic_kl": analytic_kl, "nesting": nesting}
    with pyro.validation_enabled(False):  # shapes were checked by max_plate_nesting's traces
        chunks = [
            elbo_parts(model, guide, data[i : i + batch_size].to(device), **options)
            for i in range(0, len(data), batch_size)
        ]
    out = {key: torch.cat([c[key] for c in chunks]) for key in ("elbo", "recon", "kl")}
    out["kl_estimator"] = chunks[0]["kl_estimator"]
    return out


def summarize(parts: dict) -> dict:
    """Means per data point and the standard error of the ELBO's mean, as floats (one host read)."""
    n = parts["elbo"].numel()
    stats = torch.stack(
        [parts["elbo"].mean(), parts["recon"].mean(), parts["kl"].mean(), parts["elbo"].std() / n**0.5]
    ).tolist()
    return dict(zip(("elbo", "recon", "kl", "elbo_stderr"), stats, strict=True))


@dataclass
class MarginalLikelihood:
    """An importance-sampling estimate of log p(x_n) for each data point, with diagnostics."""

    #: log p̂(x_n), shape (N,)
    log_px: torch.Tensor
    #: effective sample size of each data point's K weights, (Σ w)² / Σ w², shape (N,)
    ess: torch.Tensor
    #: Monte-Carlo standard error of each log p̂(x_n) from its weights (delta method), shape (N,)
    mc_stderr: torch.Tensor
    num_samples: int

    @property
    def mean(self) -> float:
        """The average log p̂(x) per data point."""
        return self.log_px.mean().item()

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over data points."""
        n = self.log_px.numel()
        return (self.log_px.std() / math.sqrt(n)).item() if n > 1 else float("nan")


@torch.no_grad()
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
    """Importance-sampling estimate of log p(x_n) with the guide as proposal.

    The K = ``num_samples`` weights of each data point are drawn ``chunk_size`` at a time
    for ``batch_size`` data points at a time, and combined by a running log-sum-exp, so
    that peak memory is set by ``chunk_size × batch_size``, whatever K. The weights'
    diagnostics: the effective sample size (Σ_k w_k)² / Σ_k w_k² (Kong 1992), and the
    delta-method standard error of log p̂, √((K / ESS − 1) / K).

    Each sample's noise is fixed by (``seed``, point index, sample index) (:mod:`pyro_vae.noise`),
    so chunk and batch sizes change memory, not the estimate; ``seed`` defaults to a draw from
    torch's global generator (``pyro.set_rng_seed`` fixes it).

    :param progress: optional callable called with the number of data points done.
    """
    device = device or data.device
    nesting = max_plate_nesting(model, guide, data[:1].to(device))  # with validation: shapes checked
    seed = int(torch.randint(2**62, ())) if seed is None else seed
    log_px, ess = [], []
    with pyro.validation_enabled(False):  # support checks on every chunk would read the device
        for i in range(0, len(data), batch_size):
            x = data[i : i + batch_size].to(device)
            sum_w = sum_w2 = torch.full((len(x),), -math.inf, device=device)  # log Σ w, log Σ w²
            for start in range(0, num_samples, chunk_size):
                k = min(chunk_size, num_samples - start)
                with IndexedNoise(seed, first_point=i, first_sample=start, plate=plate):
                    terms = local_terms(model, guide, x, particles=k, nesting=nesting, plate=plate)
                log_w = terms.log_w  # (k, B)
                sum_w = torch.logaddexp(sum_w, torch.logsumexp(log_w, 0))
                sum_w2 = torch.logaddexp(sum_w2, torch.logsumexp(2 * log_w, 0))
            log_px.append(sum_w - math.log(num_samples))
            ess.append(effective_sample_size(sum_w, sum_w2))
            if progress is not None:
                progress(len(x))
    log_px, ess = torch.cat(log_px), torch.cat(ess)
    mc_stderr = log_mean_stderr(ess, num_samples)
    return MarginalLikelihood(log_px=log_px, ess=ess, mc_stderr=mc_stderr, num_samples=num_samples)


def effective_sample_size(log_sum_w: torch.Tensor, log_sum_w2: torch.Tensor) -> torch.Tensor:
    """(Σ w)² / Σ w² from log Σ w and log Σ w² (Kong 1992)."""
    return torch.exp(2 * log_sum_w - log_sum_w2)


def log_mean_stderr(ess: torch.Tensor, k: int) -> torch.Tensor:
    """Delta-method standard error of log (1/K) Σ w: √((K / ESS − 1) / K).

    Var[ŵ]/E[ŵ]² for the mean of K weights, estimated from the weights themselves; it
    understates the error when K is so small that the heaviest weights were not drawn.
    """
    return ((k / ess - 1).clamp(min=0) / k).sqrt()


@torch.no_grad()
def active_units(encode, data: torch.Tensor, *, threshold: float = 0.01, batch_size: int = 1000) -> int:
    """How many latent dimensions the encoder uses (Burda et al. 2016, section 5.2).

    A dimension u is active when A_u = Cov_x(E_{q(z|x)}[z_u]) > ``threshold``: its
    posterior mean moves with the data point. ``encode`` maps a batch to posterior means.
    """
    means = torch.cat([encode(data[i : i + batch_size]) for i in range(0, len(data), batch_size)])
    return int((means.var(0) > threshold).sum().item())
