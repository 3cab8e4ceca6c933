"""Priors p(z) over the latent code.

A prior entry is called as ``entry(latent_dim, **options)`` and returns a
``torch.nn.Module`` whose ``forward()`` gives a distribution with
``event_shape == (latent_dim,)`` and empty batch shape; the model's data plate
broadcasts it over data points. Its parameters and buffers live on the module, so
``vae.to(device)`` moves them with the rest of the model. A prior may also have

* ``attach(posterior, data_dim)``: called by the VAE once its guide exists, for a prior
  defined through the guide (the VampPrior); ``posterior(x)`` is q_φ(z|x) for a batch x;
* ``initialize(x)``: set data-dependent starting values from the training data.

``forward()`` runs in every training step, so it reads no tensor values on the host.

Of these priors only ``normal`` and ``learned_normal`` have a closed-form KL divergence
from the diagonal Gaussian guide (``kl_divergence`` raises ``NotImplementedError`` for
the others, and the objectives estimate the KL by sampling).
"""

import math
import warnings
from collections.abc import Callable
from typing import Annotated, get_args

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.distributions import Transform

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.numeric import floored_softplus, softplus_inverse
from pyro_vae.core.options import PositiveInt, Range, check_value, show
from pyro_vae.core.registry import PRIORS
from pyro_vae.models.distributions import DiagonalNormalMixture, is_diagonal_normal
from pyro_vae.models.flows import COUPLING, FLOW_LAYERS, FlowTransform, start_at_identity

register_prior = PRIORS.register

#: a floor on a learned prior scale; below 1, since learned scales start at 1
ScaleFloor = Annotated[float, Range(lo=0, hi=1, lo_open=True, hi_open=True)]


@register_prior("normal")
class StandardNormal(nn.Module):
    """p(z) = N(0, I)."""

    loc: torch.Tensor  # buffers
    scale: torch.Tensor

    def __init__(self, latent_dim: int, /):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


def _unit_raw_scale(min_scale: float, shape: tuple[int, ...]) -> torch.Tensor:
    """The unconstrained s with softplus(s) + ``min_scale`` = 1, filled into ``shape``."""
    # also checked here, not only by the config: softplus⁻¹ of a non-positive number is NaN
    min_scale = check_value("model.prior.min_scale", min_scale, ScaleFloor)
    return softplus_inverse(torch.tensor(1.0 - min_scale)).expand(shape).clone()


@register_prior("learned_normal")
class LearnedNormal(nn.Module):
    """p(z) = N(z; μ, diag σ²) with learned μ and σ = softplus(s) + ``min_scale``, starting at N(0, I).

    The empirical-Bayes Gaussian prior. Against the diagonal Gaussian guide the KL divergence
    is closed-form, KL = Σ_i [log(σ_i/s_i) + (s_i² + (m_i − μ_i)²) / (2σ_i²) − ½] for
    q = N(m, diag s²) (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", appendix B,
    with a general Gaussian prior), which torch registers for ``Independent(Normal)`` pairs.
    The floor keeps log p bounded if the guide and the prior shrink a dimension together.
    """

    def __init__(self, latent_dim: int, /, *, min_scale: ScaleFloor = 1e-3):
        super().__init__()
        self.min_scale = min_scale
        self.loc = nn.Parameter(torch.zeros(latent_dim))  # (Z,)
        self.raw_scale = nn.Parameter(_unit_raw_scale(min_scale, (latent_dim,)))  # (Z,)

    def scale(self) -> torch.Tensor:
        return floored_softplus(self.raw_scale, self.min_scale)

    def forward(self) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale()).to_event(1)


@register_prior("mog")
class MixtureOfGaussians(nn.Module):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), π = softmax(logits), σ_k = softplus(s_k) + ``min_scale``.

    A learned Gaussian-mixture prior (Dilokthanakul et al. 2016, "Deep Unsupervised
    Clustering with Gaussian Mixture Variational Autoencoders"; the "MoG" prior that
    Tomczak & Welling 2018, "VAE with a VampPrior", compare with). Its KL divergence from a
    Gaussian guide has no closed form.

    It starts with equal weights, σ_k = 1, and means μ_k ~ N(0, I) drawn from the global
    torch RNG (seeded by training): the means then spread like draws of the standard prior,
    where an encoder's codes lie early in training; unit scales make neighbouring components
    overlap, so that every component receives gradient from the codes (a component far from
    all of them would be starved and never move); and distinct means break the symmetry that
    would otherwise give every component the same gradient forever.
    """

    def __init__(self, latent_dim: int, /, *, components: PositiveInt = 10, min_scale: ScaleFloor = 1e-3):
        super().__init__()
        self.min_scale = min_scale
        self.logits = nn.Parameter(torch.zeros(components))  # (K,)
        self.locs = nn.Parameter(torch.randn(components, latent_dim))  # (K, Z)
        self.raw_scales = nn.Parameter(_unit_raw_scale(min_scale, (components, latent_dim)))  # (K, Z)

    def scales(self) -> torch.Tensor:
        return floored_softplus(self.raw_scales, self.min_scale)  # (K, Z)

    def forward(self) -> dist.Distribution:
        parts = dist.Normal(self.locs, self.scales()).to_event(1)  # batch (K,), event (Z,)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits), parts)


@register_prior("vamp")
class VampPrior(nn.Module):
    """p(z) = (1/K) Σ_k q_φ(z | u_k): the guide's posteriors at K learned pseudo-inputs u_k.

    The variational mixture of posteriors prior of Tomczak & Welling (2018), "VAE with a
    VampPrior", with K = ``components``. It needs the guide: the VAE calls
    ``attach(posterior, data_dim)`` once built, after which the pseudo-inputs are the
    parameter ``pseudo_inputs`` of shape ``(K, data_dim)``. Gradients of log p(z) reach both
    the pseudo-inputs and the encoder, through which p(z) is defined. Its KL divergence from
    the guide has no closed form.

    ``initialize(x)`` sets the u_k to K random training points; until then they are
    N(0, 0.01²) noise (the authors' code draws them from N(−0.05, 0.01²)): distinct, so the
    components receive different gradients (identical pseudo-inputs would stay identical),
    and close to 0, which lies within the usual data scalings (pixels in [0, 1], standardised
    features), so the prior starts close to the single Gaussian q(z | u = 0).

    Cost: each ``forward()`` runs the encoder on all K pseudo-inputs, and ``log_prob`` of z of
    shape ``(..., B, Z)`` evaluates every component at every z: elementwise tensors of shape
    ``(..., B, K, Z)`` (with 50 particles, B = 100, K = 500, Z = 32: 80 M numbers each).
    """

    pseudo_inputs: nn.Parameter  # created by attach()

    def __init__(self, latent_dim: int, /, *, components: PositiveInt = 500):
        super().__init__()
        self.latent_dim = latent_dim
        self.components = components
        self.posterior: Callable[[torch.Tensor], dist.TorchDistribution] | None = None

    def attach(self, posterior: Callable[[torch.Tensor], dist.TorchDistribution], data_dim: int) -> None:
        """Define p(z) through ``posterior`` (x of shape ``(K, data_dim)`` → q(z|x), batch ``(K,)``).

        Creates the pseudo-inputs, or keeps those already there (a re-attach), so a state dict
        loads into any attached VampPrior of the same shape.
        """
        # A plain attribute even if it is a module: it is a method of the VAE that owns this
        # prior, and registering it as a submodule would make the module tree a cycle.
        object.__setattr__(self, "posterior", posterior)
        shape = (self.components, data_dim)
        if "pseudo_inputs" in self._parameters:
            if tuple(self.pseudo_inputs.shape) != shape:
                raise ValueError(
                    f"VampPrior already has pseudo-inputs of shape {tuple(self.pseudo_inputs.shape)}, "
                    f"cannot attach with data_dim = {data_dim}"
                )
            return
        self.pseudo_inputs = nn.Parameter(0.01 * torch.randn(shape))  # (K, D)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set the pseudo-inputs to K distinct training points ``x`` ``(N, data_dim)``, drawn at random.

        With fewer than K points every point is used ⌊K/N⌋ or ⌈K/N⌉ times; copies of one point
        get equal gradients and stay equal, so the prior is then a weighted mixture over N.
        """
        self._check_attached("initialize(x)")
        k, d = self.pseudo_inputs.shape
        if x.dim() != 2 or x.shape[1] != d:
            raise ValueError(f"VampPrior.initialize needs data of shape (N, {d}), got {tuple(x.shape)}")
        n = x.shape[0]
        if n < k:
            warnings.warn(
                f"VampPrior: {k} components but only {n} training points; points are repeated",
                stacklevel=2,
            )
        rows = torch.randperm(n).repeat(math.ceil(k / n))[:k]  # (K,) distinct while n >= K
        self.pseudo_inputs.copy_(x[rows.to(x.device)])

    def forward(self) -> dist.Distribution:
        self._check_attached("forward()")
        assert self.posterior is not None  # checked just above
        parts = self.posterior(self.pseudo_inputs)  # batch (K,), event (Z,)
        if parts.batch_shape != (self.components,) or parts.event_shape != (self.latent_dim,):
            raise ValueError(
                f"VampPrior: posterior(pseudo_inputs) must have batch shape ({self.components},) and "
                f"event shape ({self.latent_dim},), got {tuple(parts.batch_shape)} and "
                f"{tuple(parts.event_shape)}"
            )
        uniform = dist.Categorical(logits=self.pseudo_inputs.new_zeros(self.components))
        if is_diagonal_normal(parts):
            return DiagonalNormalMixture(uniform, parts)
        return dist.MixtureSameFamily(uniform, parts)

    def _check_attached(self, what: str) -> None:
        if self.posterior is None:
            raise RuntimeError(
                f"VampPrior.{what} before attach(posterior, data_dim): the VampPrior is defined "
                "through the guide q(z|x), which the VAE attaches when it is built"
            )


@register_prior("flow")
class Flow(nn.Module):
    r"""p(z) = N(u; 0, I) |det ∂u/∂z| with u = f⁻¹(z), f = f_L ∘ … ∘ f_1 learned bijections.

    A normalizing-flow prior (Rezende & Mohamed 2015, "Variational Inference with
    Normalizing Flows"; as a learned VAE prior, Chen et al. 2017, "Variational Lossy
    Autoencoder"), with L = ``layers`` layers of one ``transform``:

    * ``affine_autoregressive``: masked autoregressive flow (Papamakarios et al. 2017, "Masked
      Autoregressive Flow for Density Estimation"), u_i = z_i exp(α_i(z_<i)) + m_i(z_<i), with
      MADE networks (Germain et al. 2015) whose variable order is reversed every layer. It runs
      in the density direction: log p(z) takes one network pass per layer, drawing a sample
      takes Z sequential passes. Works for any latent_dim; the default.
    * ``affine_coupling``: Real NVP (Dinh et al. 2017, "Density estimation using Real NVP"):
      the second half of z is scaled and shifted as a function of the first.
    * ``spline_coupling``: as ``affine_coupling`` with monotone rational splines in place of
      the affine map (Durkan et al. 2019, "Neural Spline Flows"; Pyro's linear rational
      splines, Dolatabadi et al. 2020); Pyro's layer also splines the first half elementwise.
    * ``spline``: an elementwise monotone spline per coordinate: no dependence between
      coordinates, but exact in one dimension.

    A coupling layer conditions on the first h = ⌊Z/2⌋ coordinates and transforms each of the
    others elementwise, so it needs latent_dim Z ≥ 2. Between coupling layers the coordinates
    are rotated by h (z_i moves to position (i − h) mod Z): the part that conditioned one layer
    is transformed by the next, and the conditioning window slides along z. Two layers
    transform every coordinate; with 4 (the default; 3 for even Z) every coordinate of z
    depends on every coordinate of u. (Reversing the order instead would keep the middle
    coordinate of an odd Z in the transformed part for ever, never conditioning the rest.)

    Splines are the identity outside [−3, 3], so the tails stay Gaussian. ``hidden`` are the
    hidden widths of each layer's network (unset: [10·latent_dim]; an autoregressive network
    needs every width ≥ latent_dim); ``spline`` has no network.

    Every layer starts as the identity map (see :func:`start_at_identity`), so the prior
    starts as N(0, I), the standard VAE's (spline layers to within 10⁻³ nats per layer and
    coordinate), and learns away from it.

    On a GPU, Pyro's spline layers index with a boolean mask (the identity outside the
    bound) and so synchronise with the host in every ``log_prob``; the affine layers do not.
    """

    loc: torch.Tensor  # buffers
    scale: torch.Tensor
    rotation: torch.Tensor

    def __init__(
        self,
        latent_dim: int,
        /,
        *,
        transform: FlowTransform = "affine_autoregressive",
        layers: PositiveInt = 4,
        hidden: list[PositiveInt] | None = None,
    ):
        super().__init__()
        if transform in COUPLING and latent_dim < 2:
            allowed = ", ".join(show(t) for t in get_args(FlowTransform) if t not in COUPLING)
            raise ConfigError(
                f"model.prior.transform = {show(transform)} is not allowed with latent_dim = 1 (a "
                f"coupling layer transforms one part of z given another); allowed: {allowed}"
            )
        hidden = [10 * latent_dim] if hidden is None else list(hidden)
        if transform != "spline" and (not hidden or min(hidden) < latent_dim):
            raise ConfigError(
                f"model.prior.hidden = {show(hidden)} is not allowed for a {transform} flow: give one "
                f"or more hidden widths, each at least latent_dim = {latent_dim}"
            )
        self.kind = transform
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        # pyro's Permute holds a plain tensor that .to(device) would not move: it is built from
        # this buffer in forward()
        self.register_buffer("rotation", (torch.arange(latent_dim) + latent_dim // 2) % latent_dim)
        self.transforms = nn.ModuleList(FLOW_LAYERS[transform](latent_dim, hidden, i) for i in range(layers))
        start_at_identity(self.transforms)

    def forward(self) -> dist.Distribution:
        base = dist.Normal(self.loc, self.scale).to_event(1)  # batch (), event (Z,)
        steps: list[Transform] = []
        # a layer caches its last (input, output): a fresh distribution must not reuse one
        # computed with other parameter values, or without gradients
        for m in self.transforms.modules():
            if isinstance(m, Transform) and m._cache_size == 1:
                m._cached_x_y = None, None
        for i, layer in enumerate(self.transforms):
            assert isinstance(layer, Transform)  # a Pyro TransformModule, from FLOW_LAYERS
            if i > 0 and self.kind in COUPLING:
                steps.append(T.Permute(self.rotation))
            # an autoregressive layer is used inverted: its fast direction maps z to u
            steps.append(layer.inv if self.kind == "affine_autoregressive" else layer)
        return dist.TransformedDistribution(base, steps)
