"""KL divergences: the closed forms torch and Pyro do not register, and the choice between
closed form and Monte Carlo (:func:`site_kl`).

Importing this module registers them with ``torch.distributions.kl.register_kl``, so
``kl_divergence`` (and Pyro's ``TraceMeanField_ELBO``, our ``meanfield`` objective and
``local_terms(analytic_kl=True)``) finds them; :mod:`pyro_vae.models.guides` imports it, so they
are active whenever ``pyro_vae`` is. Registration is on torch's classes, which Pyro's
``MultivariateNormal`` and ``Independent`` subclass, so both dispatch here.

A point mass q = δ_v (the ``delta`` guide, :func:`is_point_mass`) has no KL to a prior with a
density: KL(δ_v ‖ p) = +∞. Pyro registers KL(Delta ‖ p) = −log p(v), the cross-entropy term
alone (δ's differential entropy, −∞, left out), which is finite and would read as a KL;
:func:`site_kl` refuses it instead.
"""

import torch
from pyro.distributions import Delta
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence
from torch.distributions.kl import register_kl

from pyro_vae.core.errors import NotDefined


@register_kl(MultivariateNormal, Independent)
def _kl_mvn_diagonal_normal(mvn: MultivariateNormal, diag: Independent) -> torch.Tensor:
    r"""KL(N(μ_q, Σ_q) ‖ N(μ_p, Σ_p)) for a full-covariance q and a diagonal p = Π_i N(μ_p,i, s_i²).

    The Gaussian KL (e.g. Kingma & Welling 2019, "An Introduction to Variational
    Autoencoders", or any text on the multivariate normal):

        KL = ½ [tr(Σ_p⁻¹ Σ_q) + (μ_p − μ_q)ᵀ Σ_p⁻¹ (μ_p − μ_q) − Z + log|Σ_p| − log|Σ_q|],

    which with Σ_q = L Lᵀ (L lower-triangular) and Σ_p = diag(s²) is

        KL = ½ [Σ_ij L_ij² / s_i² + Σ_i ((μ_p,i − μ_q,i) / s_i)² − Z] + Σ_i log s_i − Σ_i log L_ii,

    with no matrix inverse or factorisation. Batch shapes broadcast, so a ``(K, B)`` guide
    against a prior with batch shape ``()`` gives ``(K, B)``. Only ``Independent(Normal, 1)``
    is handled; any other ``Independent`` raises ``NotImplementedError``, which callers read
    as "use a Monte-Carlo estimate".
    """
    if diag.reinterpreted_batch_ndims != 1 or not isinstance(diag.base_dist, Normal):
        raise NotImplementedError
    if mvn.event_shape != diag.event_shape:
        raise ValueError(
            f"KL divergence between event shapes {tuple(mvn.event_shape)} and "
            f"{tuple(diag.event_shape)} is undefined"
        )
    loc_p, scale_p = diag.base_dist.loc, diag.base_dist.scale  # (..., Z)
    # scale_tril is a broadcast view: no (K, B, Z, Z) copy beyond what the sums need
    tril = mvn.scale_tril  # (..., Z, Z)
    trace = (tril / scale_p.unsqueeze(-1)).pow(2).sum((-2, -1))  # row i of L is divided by s_i
    mahalanobis = ((loc_p - mvn.loc) / scale_p).pow(2).sum(-1)
    half_log_det_q = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    half_log_det_p = scale_p.log().sum(-1)
    kl = 0.5 * (trace + mahalanobis - mvn.event_shape[0]) + half_log_det_p - half_log_det_q
    return kl.expand(torch.broadcast_shapes(mvn.batch_shape, diag.batch_shape))


def site_kl(q, p, z: torch.Tensor, closed_form: bool, log_densities=None) -> tuple[torch.Tensor, bool]:
    """KL(q ‖ p) of one latent site, and whether it is the closed form.

    The closed form ``kl_divergence(q, p)`` where ``closed_form`` allows it (it is unbiased
    there: :func:`pyro_vae.inference.traces.closed_form_sites`) and torch or pyro-vae registers one;
    otherwise its one-sample Monte-Carlo estimate log q(z) − log p(z) at the guide's draw z.
    Both are unbiased estimates of the same expectation; the closed form has less variance.
    This is the one place pyro-vae makes that choice (the ELBO's metrics, ``meanfield``,
    ``beta``, KL warm-up and free bits all call it).

    :param log_densities: ``(log q(z), log p(z))`` where the caller has them already, so that
        the Monte-Carlo estimate costs nothing more (a VampPrior's density is expensive).
    :raises NotDefined: for a point mass q, whose KL to a density is infinite (module docstring).
    """
    if is_point_mass(q):
        raise NotDefined(
            "KL(q(z|x) || p(z)) is not defined: q is a point mass (the delta guide, "
            "q(z|x) = δ(z − f(x)), has no density), so the KL to a prior with a density is infinite",
            reason=POINT_MASS,
        )
    if closed_form:
        try:
            return kl_divergence(q, p), True
        except NotImplementedError:
            pass
    log_q, log_p = log_densities if log_densities is not None else (q.log_prob(z), p.log_prob(z))
    return log_q - log_p, False


#: why a density, a KL or log p(x) is absent for a point-mass guide, in a few words
POINT_MASS = "the delta guide is a point estimate: q(z|x) has no density"


def is_point_mass(fn) -> bool:
    """Whether a distribution is a point mass: Pyro's ``Delta``, or one reshaped, masked or
    pushed through a transform (anything whose ``base_dist`` chain ends at one)."""
    while not isinstance(fn, Delta) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, Delta)
