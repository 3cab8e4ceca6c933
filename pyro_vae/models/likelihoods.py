"""Likelihoods p_θ(x|z): the decoder's output turned into a distribution over a data point.

A likelihood entry is called as ``entry(data_dim, **options)`` and returns a
``torch.nn.Module`` with

* ``param_features``: how many numbers per data point the decoder must output, a multiple
  P × ``data_dim`` laid out **parameter-major**: ``out[..., p*D:(p+1)*D]`` holds parameter p
  for all D values, so ``out.unflatten(-1, (P, D))`` is ``(..., P, D)``. A convolutional
  decoder produces P×C channels and relies on this layout;
* ``forward(out)``: the distribution of x given those numbers, ``event_shape == (data_dim,)``;
  it runs in every training step, so it reads nothing back from the device;
* ``mean(out)``: E[x | z], what pictures of reconstructions and samples show;
* ``check_data(x, name)``: raise :class:`~pyro_vae.core.errors.DataError` unless every value of
  ``x`` lies in the distribution's support, so that the reported log-likelihood is that
  of a proper density for the data at hand;
* optionally ``initialize(x)``: set data-dependent starting values from the training data.

Leading dimensions of ``out`` (particles, data points) pass through to the batch shape.
"""

from collections.abc import Callable
from typing import Annotated, Literal

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.core.errors import DataError
from pyro_vae.core.numeric import floored_softplus, read_back, softplus_inverse
from pyro_vae.core.options import PositiveFloat, Range
from pyro_vae.core.registry import LIKELIHOODS
from pyro_vae.models.distributions import ContinuousBernoulliLogits

register_likelihood = LIKELIHOODS.register


def span(lo: float, hi: float) -> str:
    """``[lo, hi]`` for an error message."""
    return f"[{lo:g}, {hi:g}]"


@register_likelihood("bernoulli")
class Bernoulli(nn.Module):
    """p(x|z) = Π_d Bernoulli(x_d; sigmoid(f_θ(z)_d)) for binary x.

    With ``relaxed = true`` it also accepts x in [0, 1] as the usual "binary
    cross-entropy" loss; that is not a normalised density for non-binary x, so its
    log-likelihoods are not comparable with those of a proper likelihood.
    """

    def __init__(self, data_dim: int, /, *, relaxed: bool = False):
        super().__init__()
        self.param_features = data_dim
        self.relaxed = relaxed

    def forward(self, logits: torch.Tensor) -> dist.Distribution:
        # the relaxed use evaluates log_prob outside {0, 1}, which validation would refuse
        return dist.Bernoulli(logits=logits, validate_args=False if self.relaxed else None).to_event(1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def check_data(self, x: torch.Tensor, name: str) -> None:
        lo, hi, not_binary = read_back(x.min(), x.max(), ((x != 0) & (x != 1)).sum())
        if self.relaxed:
            if lo < 0 or hi > 1:
                raise DataError(
                    f"relaxed bernoulli likelihood needs data in [0, 1], but {name} spans {span(lo, hi)}"
                )
            return
        if not_binary:
            raise DataError(
                f"bernoulli likelihood needs binary data (0 or 1), but {name} has values in "
                f'{span(lo, hi)} that are not 0 or 1; use likelihood = {{ kind = "gaussian" }} '
                "for real-valued data, or set likelihood.relaxed = true to use Bernoulli "
                "cross-entropy anyway (not a proper density: its log-likelihoods are not comparable)"
            )


@register_likelihood("continuous_bernoulli")
class ContinuousBernoulli(nn.Module):
    """p(x|z) = Π_d CB(x_d; λ_d) = Π_d C(λ_d) λ_d^{x_d} (1 − λ_d)^{1 − x_d} for x in [0, 1],
    λ = sigmoid(f_θ(z)).

    C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) (and C(½) = 2) normalises the "binary cross-entropy"
    of grey-level data into a proper density on [0, 1] (Loaiza-Ganem & Cunningham 2019,
    "The continuous Bernoulli: fixing a pervasive error in variational autoencoders").
    Its mean is not λ: E[x] = λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ)), which ``mean`` returns.

    The density is unbounded: CB(0; η) grows like |η| as the logit η → −∞. On pixels that
    are 0 in every training image the decoder drives η there without limit, and a held-out
    image with a little ink on such a pixel then costs |η| nats for it: on the MNIST test
    images the validation ELBO fell from +4600 to −160000 while the training ELBO kept
    rising. So the logits are bounded smoothly, η = m · tanh(f_θ(z) / m) with m =
    ``max_logit`` (at most log m + O(e^{−m}) nats per value, as the Gaussian's ``min_scale``
    bounds its density); ``max_logit`` unset leaves them free.
    """

    def __init__(self, data_dim: int, /, *, max_logit: PositiveFloat | None = 10.0):
        super().__init__()
        self.param_features = data_dim
        self.max_logit = max_logit

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        m = self.max_logit
        return out if m is None else m * torch.tanh(out / m)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return ContinuousBernoulliLogits(logits=self.logits(out)).to_event(1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return ContinuousBernoulliLogits(logits=self.logits(out)).mean

    def check_data(self, x: torch.Tensor, name: str) -> None:
        lo, hi = read_back(x.min(), x.max())
        if lo < 0 or hi > 1:
            hint = "; set data.divide_by to scale it into [0, 1] (255 for 8-bit images)" if hi > 1 else ""
            raise DataError(
                f"continuous_bernoulli likelihood needs data in [0, 1], but {name} spans {span(lo, hi)}{hint}"
            )


class LocationScale(nn.Module):
    """p(x|z) = Π_d family(x_d; μ_d = f_θ(z)_d, s_d): the decoder gives the location, s is shared.

    ``scale`` is a fixed s shared by all dimensions, or ``"learned"``: one s_d per
    dimension, s_d = softplus(r_d) + ``min_scale``, learned with the decoder. The floor
    keeps the density bounded on dimensions the data never varies in (the blank border
    of an image), where a free s_d would shrink to 0 and the log-likelihood diverge.

    A subclass names the ``family`` and, in ``ml_scale``, the maximum-likelihood scale of
    a decoder that predicts every point by one location per dimension.
    """

    family: Callable[[torch.Tensor, torch.Tensor], dist.TorchDistribution]  # (loc, scale) -> p(x_d|z)
    fixed_scale: torch.Tensor  # a buffer, when the scale is fixed

    def __init__(
        self,
        data_dim: int,
        /,
        *,
        scale: PositiveFloat | Literal["learned"] = "learned",
        min_scale: PositiveFloat = 1e-2,
    ):
        super().__init__()
        self.param_features = data_dim
        self.min_scale = min_scale
        if scale == "learned":
            init = softplus_inverse(torch.tensor(1.0 - min_scale)) if min_scale < 1 else torch.tensor(0.0)
            self.raw_scale = nn.Parameter(init.expand(data_dim).clone())
        else:
            self.register_buffer("fixed_scale", torch.full((data_dim,), float(scale)))

    def ml_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The maximum-likelihood s_d of the data ``x`` (N, D) under one location per dimension, (D,)."""
        raise NotImplementedError

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Start a learned s_d at :meth:`ml_scale` of the training data.

        That is the best s_d of a decoder that ignores z, so training starts from a
        sensible density instead of spending thousands of steps shrinking s from an
        arbitrary value.
        """
        if hasattr(self, "raw_scale"):
            target = self.ml_scale(x).clamp(min=2 * self.min_scale) - self.min_scale
            self.raw_scale.copy_(softplus_inverse(target.to(self.raw_scale)))

    def scale(self) -> torch.Tensor:
        if hasattr(self, "raw_scale"):
            return floored_softplus(self.raw_scale, self.min_scale)
        return self.fixed_scale

    def forward(self, loc: torch.Tensor) -> dist.Distribution:
        return self.family(loc, self.scale()).to_event(1)

    def mean(self, loc: torch.Tensor) -> torch.Tensor:
        return loc

    def check_data(self, x: torch.Tensor, name: str) -> None:
        """Every finite real number lies in the support; finiteness is checked on loading."""


@register_likelihood("gaussian")
class Gaussian(LocationScale):
    """p(x|z) = Π_d N(x_d; f_θ(z)_d, σ_d²); options ``scale`` and ``min_scale`` as in
    :class:`LocationScale`.
    """

    family = dist.Normal

    def ml_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The standard deviation: the ML σ_d of a decoder that predicts the data mean."""
        return x.std(0)


@register_likelihood("laplace")
class Laplace(LocationScale):
    """p(x|z) = Π_d (2 b_d)⁻¹ exp(−|x_d − f_θ(z)_d| / b_d); options ``scale`` and
    ``min_scale`` as in :class:`LocationScale`.

    Its negative log is an L1 reconstruction error plus Σ_d log 2b_d, so it is the proper
    density behind "L1 loss" decoders, and heavier-tailed than the Gaussian (Kotz,
    Kozubowski & Podgórski 2001, "The Laplace Distribution and Generalizations").
    """

    family = dist.Laplace

    def ml_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The mean absolute deviation from the median: the ML b_d of a decoder predicting the
        median (the ML location; ``torch.median``'s lower median of an even count is one too,
        as Σ|x − m| is flat between the two middle values).
        """
        return (x - x.median(0).values).abs().mean(0)


@register_likelihood("beta")
class Beta(nn.Module):
    """p(x|z) = Π_d Beta(x_d; α_d, β_d) = Π_d x_d^{α_d − 1} (1 − x_d)^{β_d − 1} / B(α_d, β_d)
    for x in (0, 1) (Johnson, Kotz & Balakrishnan 1995, "Continuous Univariate Distributions",
    vol. 2, ch. 25).

    The decoder outputs 2D numbers, parameter-major: α = softplus(out[:D]) + ``min_concentration``
    and β = softplus(out[D:]) + ``min_concentration``. The floor keeps α, β > 0 where softplus
    underflows to 0 (out < −88 in float32), which would make lgamma infinite. Its default,
    1e-3, restricts nothing data can ask for: a Beta(1e-3, 1) puts 92% of its mass below
    1e-38, float32's smallest normal number (P(x < ε) = ε^α), so no stored data point needs
    an α that small, while U-shaped densities (α, β < 1) for near-binary pixels stay allowed.
    """

    def __init__(self, data_dim: int, /, *, min_concentration: PositiveFloat = 1e-3):
        super().__init__()
        self.data_dim = data_dim
        self.param_features = 2 * data_dim
        self.min_concentration = min_concentration

    def concentrations(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """α and β, each (..., D), from the decoder's (..., 2D)."""
        conc = floored_softplus(out, self.min_concentration)  # (..., 2D)
        alpha, beta = conc.unflatten(-1, (2, self.data_dim)).unbind(-2)  # (..., D) each
        return alpha, beta

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return dist.Beta(*self.concentrations(out)).to_event(1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.concentrations(out)
        return alpha / (alpha + beta)

    def check_data(self, x: torch.Tensor, name: str) -> None:
        lo, hi = read_back(x.min(), x.max())
        if lo <= 0 or hi >= 1:
            hint = (
                "set data.divide_by to scale it into [0, 1] (255 for 8-bit images), then " if hi > 1 else ""
            )
            raise DataError(
                f"beta likelihood needs data strictly inside (0, 1), but {name} spans {span(lo, hi)} "
                f"(its density is 0 or infinite at 0 and 1); {hint}use likelihood = "
                '{ kind = "continuous_bernoulli" } for data in [0, 1] that reach 0 or 1'
            )


@register_likelihood("categorical")
class Categorical(nn.Module):
    """p(x|z) = Π_d softmax(ℓ_d)[x_d] for integer x_d in {0, …, ``levels`` − 1}.

    The discrete likelihood of 8-bit images, one ``levels``-way softmax per value (van den
    Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"); its log
    p(x) is in nats of the discrete data, so it is never compared with a density's. The
    decoder outputs ``levels`` × D logits, parameter-major: ℓ_{d,k} = out[k·D + d]. Data
    stay in level units (``data.divide_by = 1`` for raw 8-bit pixels).
    """

    def __init__(self, data_dim: int, /, *, levels: Annotated[int, Range(lo=2)] = 256):
        super().__init__()
        self.data_dim = data_dim
        self.levels = levels
        self.param_features = levels * data_dim

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """ℓ, (..., D, levels), from the decoder's (..., levels·D)."""
        return out.unflatten(-1, (self.levels, self.data_dim)).movedim(-2, -1)

    def forward(self, out: torch.Tensor) -> dist.Distribution:
        return dist.Categorical(logits=self.logits(out)).to_event(1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """Σ_k k softmax(ℓ_d)_k, in level units, (..., D)."""
        probs = self.logits(out).softmax(-1)  # (..., D, levels)
        return probs @ torch.arange(self.levels, dtype=probs.dtype, device=probs.device)

    def check_data(self, x: torch.Tensor, name: str) -> None:
        lo, hi, fractional = read_back(x.min(), x.max(), (x != x.round()).sum())
        top = self.levels - 1
        if fractional:
            raise DataError(
                f"categorical likelihood needs integer levels 0..{top}, but {name} has "
                f"{fractional:.0f} values that are not integers (values in {span(lo, hi)}); "
                "keep data.divide_by = 1 for raw 8-bit pixels"
            )
        if lo < 0 or hi > top:
            fix = f"set likelihood.levels = {hi + 1:.0f}" if lo >= 0 else "shift the data to start at 0"
            raise DataError(
                f"categorical likelihood with levels = {self.levels} needs integers in [0, {top}], "
                f"but {name} spans {span(lo, hi)}; {fix}"
            )
