"""Networks for the encoder x -> (parameters of q(z|x)) and decoder z -> (parameters of p(x|z)).

A network entry is called as ``entry(in_features, out_features, **options)`` and
returns a ``torch.nn.Module`` mapping ``(..., prod(in_features))`` to
``(..., prod(out_features))``. Each of ``in_features`` and ``out_features`` is a count,
or the shape those features have when they are an image: ``(C, H, W)`` for the data
side of a model on images, and ``(P·C, H, W)`` for a decoder whose likelihood takes P
parameters per pixel (laid out parameter-major, see :mod:`pyro_vae.models.likelihoods`).
Networks that see no structure (``mlp``) only use the product. Leading dimensions
(particles, data) pass through untouched, which is what lets objectives vectorize
over particles.
"""

import itertools
import math
from typing import Annotated, Literal, cast

import torch
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import PositiveInt, Range
from pyro_vae.core.registry import NETWORKS

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
Features = int | tuple[int, ...]


def count(features: Features) -> int:
    """The number of values in ``features`` (a count or a shape)."""
    return math.prod(features) if isinstance(features, tuple) else features


@register_network("mlp")
def mlp(
    in_features: Features,
    out_features: Features,
    /,
    *,
    # the annotation is the option's config type (options.check_value takes a list or a tuple);
    # the default is a tuple so that it cannot be mutated
    hidden: list[PositiveInt] = (256, 256),  # type: ignore[assignment]
    activation: Activation = "tanh",
) -> nn.Sequential:
    """A multilayer perceptron; ``hidden = []`` is a single affine map ``W x + b``."""
    sizes = [count(in_features), *hidden, count(out_features)]
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@register_network("gated")
def gated(
    in_features: Features,
    out_features: Features,
    /,
    *,
    hidden: list[PositiveInt] = (300, 300),  # type: ignore[assignment]  # as mlp's hidden
) -> nn.Sequential:
    """Gated dense layers, then an affine map to the outputs.

    Each hidden layer is h = (W x + b) ⊙ σ(V x + c), a gated linear unit (Dauphin et al.
    2017, "Language Modeling with Gated Convolutional Networks"), the ``GatedDense`` layers of
    Tomczak & Welling (2018), "VAE with a VampPrior", section 4: two of 300 units in the
    encoder and in the decoder. W and V are one ``Linear`` of twice the width, split by
    ``nn.GLU``, so that a layer is one matrix product.
    """
    sizes = [count(in_features), *hidden]
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, 2 * n_out), nn.GLU(dim=-1)]  # [W; V] x + [b; c], then h ⊙ σ(g)
    layers.append(nn.Linear(sizes[-1], count(out_features)))
    return nn.Sequential(*layers)


def _conv_out(n: int, kernel: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // 2 + 1


class _Images(nn.Module):
    """Apply ``body`` to ``(..., prod(shape))`` vectors seen as ``(N, *shape)`` images and back."""

    def __init__(self, body: nn.Module, in_shape: tuple[int, ...]):
        super().__init__()
        self.body, self.in_shape = body, in_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.body(x.reshape(-1, *self.in_shape))  # (N, ...)
        return y.reshape(*lead, -1)


@register_network("conv")
def conv(
    in_features: Features,
    out_features: Features,
    /,
    *,
    channels: list[PositiveInt] = (32, 64),  # type: ignore[assignment]  # as mlp's hidden
    kernel_size: Annotated[int, Range(lo=2)] = 3,
    hidden: PositiveInt = 256,
    activation: Activation = "relu",
) -> nn.Module:
    """A convolutional encoder (image in) or decoder (image out).

    Encoder: one stride-2 convolution per entry of ``channels`` (each halves the image,
    rounding up), then a linear layer to ``hidden`` units and one to the outputs. For
    1×28×28 MNIST with the defaults: Conv 1→32 (14×14), Conv 32→64 (7×7), Linear
    3136→256, Linear 256→out, as in the classic convolutional VAE tutorials.

    Decoder: the transposed mirror: Linear in→``hidden``, Linear →64×7×7, then stride-2
    transposed convolutions 64→32→(P·C), with output padding chosen so that the last
    layer gives exactly the image size. Any image size works (square or not).
    """
    is_image = [isinstance(f, tuple) and len(f) == 3 for f in (in_features, out_features)]
    if is_image == [False, False]:
        raise ConfigError(
            f"network kind 'conv' needs an image on one side, but maps {in_features} to {out_features} "
            "features: use it as the encoder or decoder of image data (model.image_shape, which "
            "pyro_vae.train fills in from the data; data.image_shape for flat files), and mlp elsewhere"
        )
    if is_image == [True, True]:
        raise ConfigError("network kind 'conv' maps an image to features or features to an image, not both")
    act = ACTIVATIONS[activation]
    padding = (kernel_size - 1) // 2
    image = in_features if is_image[0] else out_features
    assert isinstance(image, tuple)  # checked above: one side is a (C, H, W) shape
    sizes = [image[1:]]  # (H, W) after each convolution
    for _ in channels:
        sizes.append(tuple(_conv_out(n, kernel_size, padding) for n in sizes[-1]))
    flat = channels[-1] * math.prod(sizes[-1])

    if is_image[0]:
        layers, c_in = [], image[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, kernel_size, stride=2, padding=padding), act()]
            c_in = c
        layers += [nn.Flatten(), nn.Linear(flat, hidden), act(), nn.Linear(hidden, count(out_features))]
        return _Images(nn.Sequential(*layers), image)

    layers = [nn.Linear(count(in_features), hidden), act(), nn.Linear(hidden, flat), act()]
    layers.append(nn.Unflatten(1, (channels[-1], *sizes[-1])))
    outs = [*reversed(channels[:-1]), image[0]]
    for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs, strict=True)):
        source, target = sizes[-1 - i], sizes[-2 - i]
        # a transposed convolution gives 2(n−1) − 2p + k (+ output padding) per side
        extra = tuple(
            t - (2 * (s - 1) - 2 * padding + kernel_size) for s, t in zip(source, target, strict=True)
        )
        if not all(0 <= e < 2 for e in extra):
            raise ConfigError(
                f"kind 'conv': kernel_size = {kernel_size} cannot mirror the encoder's sizes {sizes}"
            )
        extra_hw = cast(tuple[int, int], extra)  # one entry per side of the (H, W) image
        layers.append(
            nn.ConvTranspose2d(c_in, c_out, kernel_size, stride=2, padding=padding, output_padding=extra_hw)
        )
        if i < len(channels) - 1:
            layers.append(act())
    return _Images(nn.Sequential(*layers), (count(in_features),))
