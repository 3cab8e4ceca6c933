"""Per-data-point evaluation of a model/guide pair: the ELBO and its two parts.

For each data point x_n, with one draw z ~ q(z|x_n)::

    ELBO(x_n) = recon(x_n) − KL(x_n)
    recon(x_n) = log p(x_n | z)
    KL(x_n)    = KL(q(z|x_n) || p(z))            in closed form where one is registered,
               = log q(z|x_n) − log p(z)          its one-sample Monte-Carlo estimate otherwise.

Both are unbiased estimates of the same bound (Kingma & Welling 2014, eqs. 6–7);
the closed form only has less variance. Which one was used is reported.

This works for any Pyro model/guide pair whose sites live under one plate over data
points (named ``"data"`` by default): log-densities are summed over every dimension
but that plate's, giving one number per data point. Scale factors (``poutine.scale``,
subsampled plates) are left out, so the numbers are per data point whatever the
model's own scaling.
"""

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence


def per_datum(log_prob: torch.Tensor, site: dict, plate: str) -> torch.Tensor:
    """Sum a site's log-density over all dimensions but the data plate's: shape ``(B,)``."""
    frame = next((f for f in site["cond_indep_stack"] if f.name == plate), None)
    if frame is None:
        raise ValueError(
            f"site {site['name']!r} is not inside the plate {plate!r}: per-data-point bounds "
            "need every latent and observed site under the data plate"
        )
    size = frame.size  # the (sub)sampled batch, not the full dataset size
    batch_dims = len(site["fn"].batch_shape)
    log_prob = log_prob.expand(site["fn"].batch_shape) if log_prob.dim() < batch_dims else log_prob
    return log_prob.movedim(frame.dim, -1).reshape(-1, size).sum(0)


@torch.no_grad()
def elbo_parts(model, guide, x: torch.Tensor, *, plate: str = "data", analytic_kl: bool = True) -> dict:
    """ELBO, reconstruction and KL per data point of one batch ``x``, shape ``(B,)`` each.

    With ``analytic_kl=False`` the KL is always the Monte-Carlo estimate, so that the
    ELBO is log p(x, z) − log q(z|x) at one z (exact at the true posterior, whatever z).
    Also returns ``"kl_estimator"``: ``"analytic"`` when every latent site had a closed
    form KL, ``"monte_carlo"`` when none did, ``"mixed"`` otherwise.
    """
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    recon = torch.zeros(x.shape[0], device=x.device)
    kl = torch.zeros(x.shape[0], device=x.device)
    used = set()
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            recon = recon + per_datum(site["fn"].log_prob(site["value"]), site, plate)
            continue
        q_site = guide_trace.nodes[name]
        try:
            if not analytic_kl:
                raise NotImplementedError
            site_kl = kl_divergence(q_site["fn"], site["fn"])
            used.add("analytic")
        except NotImplementedError:
            z = q_site["value"]
            site_kl = q_site["fn"].log_prob(z) - site["fn"].log_prob(z)
            used.add("monte_carlo")
        kl = kl + per_datum(site_kl, q_site, plate)
    estimator = used.pop() if len(used) == 1 else ("mixed" if used else "none")
    return {"elbo": recon - kl, "recon": recon, "kl": kl, "kl_estimator": estimator}


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
    chunks = [
        elbo_parts(
            model,
            guide,
            data[i : i + batch_size].to(device or data.device),
            plate=plate,
            analytic_kl=analytic_kl,
        )
        for i in range(0, len(data), batch_size)
    ]
    out = {key: torch.cat([c[key] for c in chunks]) for key in ("elbo", "recon", "kl")}
    out["kl_estimator"] = chunks[0]["kl_estimator"]
    return out


def summarize(parts: dict) -> dict:
    """Means per data point and the standard error of the ELBO's mean, as floats (one host read)."""
    n = parts["elbo"].numel()
    stats = torch.stack(
        [
            parts["elbo"].mean(),
            parts["recon"].mean(),
            parts["kl"].mean(),
            parts["elbo"].std() / n**0.5,
        ]
    ).tolist()
    return dict(zip(("elbo", "recon", "kl", "elbo_stderr"), stats, strict=True))
