"""Discrete variables: a class among C, as a one-hot vector.

In the model, ``categorical`` is p(y) = Cat(π) at a root (π uniform, as M2's p(y); Kingma et al.
2014) and p(y | parents) = Cat(softmax f_θ(parents)) otherwise. In the guide,
q(y | ·) = Cat(softmax f_φ(·)) is handled by one of three estimators, chosen per variable:

* ``enumerate`` (the default): every class is summed exactly, in parallel (Pyro's
  ``poutine.enum``), so nothing is drawn and the bound's gradient is exact in y:
  E_q[f(y)] = Σ_c q(c) f(c). The cost is C times the work of the sites that depend on y.
* ``score``: y is drawn and its gradient is the score-function estimator
  f(y) ∇ log q(y) (Williams 1992), with a decaying-average baseline under ``tracegraph``.
* ``relaxed``: y is drawn as a one-hot vector whose gradient is that of the Gumbel-softmax
  relaxation softmax((log π + g) / τ) (Jang et al. 2017; Maddison et al. 2017), the
  straight-through estimator. Its value stays a class, so every bound and log-density is
  exact; only the gradient is biased.

The values are one-hot, so a network reads a class the way it reads any other parent.
"""

from typing import Literal

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.core.options import PositiveFloat
from pyro_vae.core.registry import GUIDES

Estimator = Literal["enumerate", "score", "relaxed"]


class StraightThrough(dist.OneHotCategorical):
    """A one-hot class whose reparameterized draw is hard forward and Gumbel-softmax backward.

    ``log_prob`` is the categorical probability of the class, so the value and every density
    are those of Cat(softmax(logits)); ``rsample`` adds ``soft − soft.detach()`` to the hard
    one-hot of argmax(logits + g), g ~ Gumbel(0, 1).
    """

    has_rsample = True

    def __init__(self, logits: torch.Tensor, temperature: float, validate_args=None):
        super().__init__(logits=logits, validate_args=validate_args)
        self.temperature = temperature

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance=_instance or StraightThrough.__new__(StraightThrough))
        new.temperature = self.temperature
        return new

    def rsample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
        return self.from_uniform(u)

    def from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        """The draw for uniforms ``u`` shaped like the value (keyed noise passes its own)."""
        tiny = torch.finfo(u.dtype).tiny
        g = -torch.log(-torch.log(u.clamp(tiny, 1 - 1e-7)))
        scores = self.logits + g
        hard = nn.functional.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores.dtype)
        soft = torch.softmax(scores / self.temperature, -1)
        return hard + (soft - soft.detach())  # exactly the one-hot forward: soft − soft is 0


def one_hot_from_uniform(fn: dist.OneHotCategorical, u: torch.Tensor) -> torch.Tensor:
    """A draw of ``fn`` (argmax of logits plus Gumbel noise) from uniforms shaped like its value."""
    if isinstance(fn, StraightThrough):
        return fn.from_uniform(u)
    with torch.no_grad():
        tiny = torch.finfo(u.dtype).tiny
        scores = fn.logits - torch.log(-torch.log(u.clamp(tiny, 1 - 1e-7)))
        return nn.functional.one_hot(scores.argmax(-1), scores.shape[-1]).to(fn.logits.dtype)


class CategoricalFamily(nn.Module):
    """``categorical`` in the model: p(y) = Cat(1/C) at a root, Cat(softmax(out)) given parents."""

    classes: int

    def __init__(self, classes: int, /):
        super().__init__()
        self.classes = self.features = self.param_features = classes
        self.register_buffer("uniform", torch.zeros(classes))

    def forward(self, logits: torch.Tensor) -> dist.Distribution:
        return dist.OneHotCategorical(logits=logits)

    def root(self) -> dist.Distribution:
        return dist.OneHotCategorical(logits=self.get_buffer("uniform"))

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, -1)


@GUIDES.register("categorical")
class CategoricalGuide(nn.Module):
    """q(y | ·) = Cat(softmax(out)) for a discrete latent of a declared graph; see the module
    docstring for the three ``estimator`` choices (``temperature`` τ is the relaxation's)."""

    classes: int
    #: a guide of a discrete variable (a class), never of the preset model's continuous z
    discrete = True

    def __init__(
        self, classes: int, /, *, estimator: Estimator = "enumerate", temperature: PositiveFloat = 0.5
    ):
        super().__init__()
        self.classes = self.param_features = classes
        self.estimator, self.temperature = estimator, temperature

    @property
    def infer(self) -> dict:
        """The Pyro ``infer`` options of its site."""
        if self.estimator == "enumerate":
            return {"enumerate": "parallel"}
        if self.estimator == "score":
            return {"baseline": {"use_decaying_avg_baseline": True}}
        return {}

    def forward(self, logits: torch.Tensor) -> dist.Distribution:
        if self.estimator == "relaxed":
            return StraightThrough(logits, self.temperature)
        return dist.OneHotCategorical(logits=logits)
