"""Discrete latents summed exactly: per-configuration terms and their two reductions.

A guide site marked ``infer={"enumerate": "parallel"}`` is not drawn: Pyro's ``poutine.enum``
gives it every value of its support at once, along a dimension of its own to the left of the
particles, and the model replays those values (Pyro's ``TraceEnum_ELBO`` machinery). Every
log-density then holds one value per configuration c of the enumerated variables y; with the
continuous latents z_c ~ q(z | x, c) drawn for each,

    f_c = log p(x, c, z_c) − log q(z_c | x, c),        q_c = Π_y q(y = c_y | ·).

Two reductions make the ``(k, B)`` terms every objective and estimator reads
(:func:`pyro_vae.inference.traces.local_terms`):

* the ELBO, an expectation over q(y) taken exactly (Kingma et al. 2014, eq. 7):
  Σ_c q_c (f_c − log q_c), with its recon, prior and q parts each the same expectation;
* the importance weight, the sum over the classes q can take:
  w = Σ_{c: q_c > 0} exp(f_c), an unbiased estimate of Σ_c p(x, c) for each particle (each c
  is a stratum drawn with probability 1). With q(y) of full support that is p(x); where q(y)
  is a point mass at an observed label it is p(x, y). IWAE, Rényi and importance sampling of
  log p(x) use it, so the classes are summed inside every particle's weight.

Rows where q_c = 0 contribute exactly 0 to both, gradients included (never 0 · ∞).
"""

import torch

from pyro_vae.core.numeric import masked


def enumerated_dims(guide_trace) -> dict[str, int]:
    """The guide's enumerated sites and the dimension each enumerates along."""
    return {
        name: site["infer"]["_enumerate_dim"]
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None
    }


def per_config(
    log_prob: torch.Tensor, site: dict, *, plate: str, particle_dim: int, rank: int
) -> torch.Tensor:
    """A site's log-density as ``(E…, k, B)``: its enumeration dimensions kept (size 1 where it
    does not depend on them), the particles and data points last, every other plate summed.

    :param rank: how many dimensions to the left the enumerated sites reach (−their leftmost dim).
    """
    log_prob = masked(log_prob, site["mask"])
    frames = {f.name: f for f in site["cond_indep_stack"] if f.vectorized}
    log_prob = log_prob.reshape((1,) * (rank - log_prob.dim()) + log_prob.shape)
    sizes = list(log_prob.shape)
    for f in frames.values():
        sizes[rank + f.dim] = f.size
    log_prob = log_prob.expand(sizes)
    n_enum = rank + particle_dim  # the dimensions left of the particles
    out = log_prob.movedim((rank + particle_dim, rank + frames[plate].dim), (n_enum, n_enum + 1))
    return out.reshape(*out.shape[: n_enum + 2], -1).sum(-1)  # (E…, k, B)


def _expect(q: torch.Tensor, f: torch.Tensor, support: torch.Tensor, n_enum: int) -> torch.Tensor:
    """Σ_c q_c f_c over the leading ``n_enum`` dimensions, 0 where q_c = 0 (gradients too)."""
    f = torch.where(support, f, torch.zeros_like(f))
    value = torch.where(support, q * f, torch.zeros_like(f))
    return value.reshape(-1, *value.shape[n_enum:]).sum(0)


def reduce(terms: dict[str, torch.Tensor], log_q_enum: torch.Tensor, n_enum: int) -> dict[str, torch.Tensor]:
    """The ``(k, B)`` terms from per-configuration ones (module docstring).

    :param terms: ``recon``, ``log_prior``, ``log_q`` (the continuous sites' log q), ``kl`` and
        ``log_p_enum`` (the model's log-density of the enumerated sites), each ``(E…, k, B)``.
    :param log_q_enum: Σ over enumerated sites of log q(y | ·), ``(E…, k, B)``.
    """
    shape = torch.broadcast_shapes(log_q_enum.shape, *(t.shape for t in terms.values()))
    lq = log_q_enum.expand(shape)
    support = lq > -torch.inf
    safe_lq = torch.where(support, lq, torch.zeros_like(lq))
    q = torch.where(support, safe_lq.exp(), torch.zeros_like(lq))
    recon, log_prior, log_q = (terms[n].expand(shape) for n in ("recon", "log_prior", "log_q"))
    log_w = recon + log_prior - log_q
    kept = torch.where(support, log_w, torch.full_like(log_w, -torch.inf))
    return {
        "recon": _expect(q, recon, support, n_enum),
        "log_prior": _expect(q, log_prior, support, n_enum),
        "log_q": _expect(q, log_q + safe_lq, support, n_enum),
        "kl": _expect(
            q, terms["kl"].expand(shape) + safe_lq - terms["log_p_enum"].expand(shape), support, n_enum
        ),
        "log_w": kept.reshape(-1, *shape[n_enum:]).logsumexp(0),
    }
