"""Networks for the encoder x -> (parameters of q(z|x)) and decoder z -> (parameters of p(x|z)).

A network entry is called as ``entry(in_features, out_features, **options)`` and
returns a ``torch.nn.Module`` mapping ``(..., in_features)`` to ``(..., out_features)``;
leading dimensions (particles, data) pass through untouched, which is what lets
objectives vectorize over particles.
"""

import itertools
from typing import Literal

from torch import nn

from .config import PositiveInt
from .registry import Registry

NETWORKS = Registry("network")
register_network = NETWORKS.register

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}
Activation = Literal["relu", "tanh", "elu", "gelu", "silu", "softplus", "leaky_relu", "sigmoid"]


@register_network("mlp")
def mlp(
    in_features: int,
    out_features: int,
    /,
    *,
    hidden: list[PositiveInt] = (256, 256),
    activation: Activation = "tanh",
) -> nn.Sequential:
    """A multilayer perceptron; ``hidden = []`` is a single affine map ``W x + b``."""
    sizes = [in_features, *hidden, out_features]
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
