"""Amortized guides q_φ(z|x): the encoder's output turned into a distribution over z.

A guide entry is called as ``entry(latent_dim, **options)`` and returns a
``torch.nn.Module`` with ``param_features`` (how many numbers per data point the
encoder must output) and ``forward(out)`` giving a reparameterizable distribution
with ``event_shape == (latent_dim,)`` whose ``log_prob`` is exact for the samples it
draws (importance sampling and the IWAE bound rely on it). The one exception is the
point mass ``delta``, which has no density at all: an entry that is one says so with
``has_density = False``, and what needs q's density refuses it (objectives, log p(x)
estimators, the ELBO and KL of the metrics); an entry without it has a density.

Registered here: ``normal`` (diagonal Gaussian), ``full_normal`` (full-covariance Gaussian),
``iaf`` (inverse autoregressive flow) and ``delta`` (a point estimate: the plain autoencoder).
"""

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.numeric import floored_softplus
from pyro_vae.core.options import PositiveFloat, PositiveInt
from pyro_vae.core.registry import GUIDES
from pyro_vae.models import kl  # noqa: F401 (registers closed-form KLs, e.g. full_normal against N(0, I))
from pyro_vae.models.distributions import BroadcastingFlow

register_guide = GUIDES.register


@register_guide("normal")
class DiagonalNormal(nn.Module):
    """q_φ(z|x) = N(z; μ_φ(x), diag σ_φ(x)²), with σ = softplus(·) + ``min_scale``.

    Kingma & Welling (2014), "Auto-Encoding Variational Bayes", appendix C.2.
    """

    def __init__(self, latent_dim: int, /, *, min_scale: PositiveFloat = 1e-4):
        super().__init__()
        self.param_features = 2 * latent_dim
        self.min_scale = min_scale

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        loc, raw_scale = out.chunk(2, dim=-1)  # (..., Z) each
        return dist.Normal(loc, floored_softplus(raw_scale, self.min_scale)).to_event(1)


@register_guide("full_normal")
class FullNormal(nn.Module):
    """q_φ(z|x) = N(z; μ_φ(x), L_φ(x) L_φ(x)ᵀ), L lower-triangular with a positive diagonal.

    Samples are z = μ + L ε with ε ~ N(0, I), and
    log q(z|x) = −½ |L⁻¹(z − μ)|² − Σ_i log L_ii − (Z/2) log 2π
    (Kingma & Welling 2019, "An Introduction to Variational Autoencoders", section 2.5.2).

    The encoder gives Z + Z(Z+1)/2 numbers per data point, laid out as::

        [ μ (Z) | raw diagonal of L (Z) | strictly-lower entries of L (Z(Z−1)/2) ]

    with L_ii = softplus(raw_i) + ``min_scale`` and the strictly-lower entries taken as they
    are, in row-major order (``torch.tril_indices(Z, Z, -1)``: L_10, L_20, L_21, L_30, ...).
    The first 2Z numbers mean what they mean for ``normal``, so a zero lower part is the
    diagonal guide.
    """

    rows_cols: torch.Tensor  # a buffer

    def __init__(self, latent_dim: int, /, *, min_scale: PositiveFloat = 1e-4):
        super().__init__()
        self.latent_dim = latent_dim
        self.param_features = latent_dim + latent_dim * (latent_dim + 1) // 2
        self.min_scale = min_scale
        # not persistent: derived from latent_dim, but moved by .to(device) with the module
        rows_cols = torch.tril_indices(latent_dim, latent_dim, -1)  # (2, Z(Z-1)/2)
        self.register_buffer("rows_cols", rows_cols, persistent=False)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        z = self.latent_dim
        # (..., Z), (..., Z), (..., Z(Z-1)/2)
        loc, raw_diag, lower = out.split([z, z, z * (z - 1) // 2], dim=-1)
        rows, cols = self.rows_cols
        tril = out.new_zeros(*out.shape[:-1], z, z)  # (..., Z, Z)
        tril[..., rows, cols] = lower
        tril = tril + torch.diag_embed(floored_softplus(raw_diag, self.min_scale))
        return dist.MultivariateNormal(loc, scale_tril=tril)


@register_guide("iaf")
class InverseAutoregressiveFlow(nn.Module):
    """q_φ(z|x): a diagonal Gaussian pushed through ``flows`` affine autoregressive layers.

    Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), "Improved variational
    inference with inverse autoregressive flow", section 4 and algorithm 1. The encoder gives
    μ(x), a raw σ(x) and a context h(x) (2Z + ``context`` numbers, in that order); then::

        z₀ = μ(x) + σ(x) ⊙ ε,                  ε ~ N(0, I),  σ = softplus(·) + min_scale
        [m_t, s_t] = AR_t(z_{t−1}, h)           t = 1 … T = ``flows``
        σ_t = sigmoid(s_t + 2)
        z_t = σ_t ⊙ z_{t−1} + (1 − σ_t) ⊙ m_t   (the numerically stable form, their eq. 14)

    which is z_t = μ_t + σ_t ⊙ z_{t−1} with μ_t = (1 − σ_t) ⊙ m_t. AR_t is a masked
    autoencoder (MADE; Germain et al. 2015) with ``hidden`` layers: output i depends on the
    inputs before i in the layer's variable order, and on all of h. Each layer's Jacobian
    is therefore triangular with diagonal σ_t, and exactly

        log q(z_T|x) = log N(z₀; μ, diag σ²) − Σ_t Σ_i log σ_t,i.

    The variable order is reversed from one layer to the next, so that with two or more
    layers every coordinate depends on every other.

    Cost: sampling is one pass of each AR_t, and ``log_prob`` of the value just sampled
    reads each layer's cached (input, output, log σ_t): also cheap. ``log_prob`` of any other
    tensor (``z.detach()`` in the STL/DReG estimators, a point proposed by AIS, a mixture
    prior built from the guide) inverts each layer, which is Z sequential passes of AR_t per
    layer instead of one: exact, but about Z times the work.

    The last layer of each AR_t starts at zero (Pyro's starts random), so m_t = s_t = 0 and
    the flow starts as z_T = sigmoid(2)^T z₀ (0.78 z₀ for T = 2): the identity up to a scale
    that σ(x) absorbs. The +2 keeps σ_t near 1, as Kingma et al. advise for eq. 14.

    :param flows: the number T of autoregressive layers.
    :param context: the number of context features h(x) the encoder gives each layer.
    :param hidden: hidden layer sizes of each AR_t, each at least Z; unset means [10·Z].
    :param min_scale: the floor on the base σ(x), as for ``normal``.
    """

    #: the bias added to s_t before the sigmoid (Pyro's default; Kingma et al. suggest +1 or +2)
    sigmoid_bias = 2.0

    def __init__(
        self,
        latent_dim: int,
        /,
        *,
        flows: PositiveInt = 2,
        context: PositiveInt = 16,
        hidden: list[PositiveInt] | None = None,
        min_scale: PositiveFloat = 1e-4,
    ):
        super().__init__()
        hidden = [10 * latent_dim] if hidden is None else list(hidden)
        if min(hidden) < latent_dim:
            raise ConfigError(
                f"model.guide.hidden = {hidden} is not allowed for iaf: each autoregressive layer needs at "
                f"least latent_dim = {latent_dim} units"
            )
        self.latent_dim, self.context = latent_dim, context
        self.param_features = 2 * latent_dim + context
        self.min_scale = min_scale
        order = torch.arange(latent_dim)
        self.layers = nn.ModuleList()
        #: each layer's variable order, as Python integers (see forward)
        self.orders = [tuple(range(latent_dim))[:: 1 if t % 2 == 0 else -1] for t in range(flows)]
        for t in range(flows):
            # Pyro annotates permutation as torch.LongTensor, which no tensor is to a type checker
            arn = ConditionalAutoRegressiveNN(
                latent_dim,
                context,
                hidden,
                permutation=order if t % 2 == 0 else order.flip(0),  # type: ignore[arg-type]
            )
            last = arn.layers[-1]
            assert isinstance(last, nn.Linear)  # a MaskedLinear
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            layer = T.ConditionalAffineAutoregressive(arn, stable=True, sigmoid_bias=self.sigmoid_bias)
            self.layers.append(layer)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        loc, raw_scale, h = out.split([self.latent_dim, self.latent_dim, self.context], dim=-1)
        # batch shape (...,), event shape (Z,)
        base = dist.Normal(loc, floored_softplus(raw_scale, self.min_scale)).to_event(1)
        # condition() builds fresh transforms, so each distribution has its own (x, y) caches
        # a ModuleList's items are typed as plain Modules, whose attributes are Tensor | Module
        flows = [layer.condition(h) for layer in self.layers]  # type: ignore[operator]
        for flow, order in zip(flows, self.orders, strict=True):
            # the inverse (log q at a point it did not draw, as a VampPrior asks) loops over the
            # order: over Python integers, a graph capture follows it (a tensor's are data to it)
            flow.arn.permutation = order
        return BroadcastingFlow(base, flows)


@register_guide("delta")
class PointEstimate(nn.Module):
    """q_φ(z|x) = δ(z − f_φ(x)): the encoder's output is the code, z = f_φ(x), with no noise.

    Pyro's ``Delta(f_φ(x), event_dim=1)``; the encoder gives Z numbers per data point. With
    the ``autoencoder`` objective (the reconstruction term alone) this is the standard,
    deterministic autoencoder (Hinton & Salakhutdinov 2006; Goodfellow, Bengio & Courville
    2016, ch. 14), trained and compared within the same framework as the VAEs.

    A point mass has no density with respect to Lebesgue measure on ℝ^Z, and so

        KL(δ_{f(x)} ‖ p) = ∫ log(dδ/dp) dδ = +∞       for any p with a density,

    (δ is not absolutely continuous with respect to p), the ELBO
    E_q[log p(x|z)] − KL(q ‖ p) is −∞, and log p(x) by importance sampling with q as the
    proposal, E_q[p(x, z) / q(z|x)], does not exist: there is no q(z|x) to divide by.
    Pyro's ``Delta.log_prob`` is 0 at its own value, which would make log p(x|z) + log p(z)
    look like an ELBO and −log p(z) like a KL; pyro-vae reports both as not defined instead
    (``has_density = False``), and its log p(x) estimators refuse this guide. What is defined
    is the reconstruction term log p(x | f(x)), which the metrics keep.
    """

    has_density = False

    def __init__(self, latent_dim: int, /):
        super().__init__()
        self.param_features = latent_dim

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return dist.Delta(out, event_dim=1)  # batch shape (...,), event shape (Z,)
