"""Normalizing-flow layers for the ``flow`` prior: Pyro's transforms, built and started at the identity."""

import math
from collections.abc import Callable
from typing import Literal

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import AutoRegressiveNN, DenseNN
from torch import nn

FlowTransform = Literal["affine_autoregressive", "spline_coupling", "affine_coupling", "spline"]
COUPLING = ("spline_coupling", "affine_coupling")


def _affine_autoregressive(dim: int, hidden: list[int], i: int) -> T.AffineAutoregressive:
    order = torch.arange(dim)
    # the variable order alternates, so that the layers' triangular Jacobians do not compose to
    # a triangular one: every coordinate of z comes to depend on every other
    permutation = order if i % 2 == 0 else order.flip(0)
    # Pyro annotates permutation as torch.LongTensor, which no tensor is to a type checker
    net = AutoRegressiveNN(dim, hidden, permutation=permutation)  # type: ignore[arg-type]
    return T.AffineAutoregressive(net)


FLOW_LAYERS: dict[str, Callable[[int, list[int], int], dist.TransformModule]] = {
    "affine_autoregressive": _affine_autoregressive,
    "spline_coupling": lambda dim, hidden, i: T.spline_coupling(dim, hidden_dims=hidden),
    "affine_coupling": lambda dim, hidden, i: T.affine_coupling(dim, hidden_dims=hidden),
    "spline": lambda dim, hidden, i: T.spline(dim),
}


# Pyro's splines have knot slopes softplus(·) + 1e-3 (its ``min_derivative``): this raw value gives 1
_UNIT_SLOPE = math.log(math.expm1(1.0 - 1e-3))


def start_at_identity(layers: nn.Module) -> None:
    """Make every layer the identity map, so that the flow starts as its base N(0, I).

    A network whose last layer is zero outputs zeros: an affine layer then has scale
    exp(0) = 1 and shift 0, and a spline layer equal bins; the knot slopes are set to 1,
    with which a rational spline on equal bins is the identity. (Pyro fixes the slopes at the
    bounds ±3 to 1 − 10⁻³, so a spline starts within 10⁻³ nats of the identity's log-density.)
    """
    for m in layers.modules():
        if isinstance(m, DenseNN | AutoRegressiveNN):
            last = m.layers[-1]
            assert isinstance(last, nn.Linear)  # DenseNN's nn.Linear, AutoRegressiveNN's MaskedLinear
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
    for m in layers.modules():
        if isinstance(m, T.Spline):
            for p in m.parameters():
                nn.init.zeros_(p)
            nn.init.constant_(m.unnormalized_derivatives, _UNIT_SLOPE)
        elif isinstance(m, T.ConditionalSpline):  # its network outputs (widths, heights, slopes, λ)
            nn.init.constant_(m.nn.layers[-1].bias[m.nn.param_slices[2]], _UNIT_SLOPE)
