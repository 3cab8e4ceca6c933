"""Networks: the MLP, the gated dense layers and the convolutional encoder/decoder, their shapes
and their errors."""

import pytest
import torch
from torch import nn

from pyro_vae import VAE, ConfigError, ModelConfig
from pyro_vae.models.networks import conv, gated, mlp


def test_mlp_takes_counts_or_shapes():
    net = mlp((1, 8, 8), 10, hidden=[16])
    assert [m.in_features for m in net if isinstance(m, nn.Linear)] == [64, 16]
    assert net(torch.randn(3, 4, 64)).shape == (3, 4, 10)


def test_gated_layers_are_a_linear_map_times_a_sigmoid_gate():
    torch.manual_seed(0)
    net = gated((1, 8, 8), 10, hidden=[16, 12])
    x = torch.randn(3, 4, 64, dtype=torch.float64)
    net = net.double()
    h = x
    for linear in [m for m in net if isinstance(m, nn.Linear)][:-1]:
        w, v = linear.weight.chunk(2, 0)  # (units, in) each: the value's and the gate's
        b, c = linear.bias.chunk(2, 0)
        h = (h @ w.T + b) * torch.sigmoid(h @ v.T + c)  # Tomczak & Welling 2018, GatedDense
    out = net[-1]
    expected = h @ out.weight.T + out.bias
    assert torch.allclose(net(x), expected, rtol=1e-12, atol=1e-12)
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [32, 24, 10]


def test_gated_networks_build_the_vampprior_papers_vae():
    config = ModelConfig(
        latent_dim=40,
        data_dim=784,
        likelihood={"kind": "bernoulli"},
        encoder={"kind": "gated"},
        decoder={"kind": "gated"},
    )
    vae = VAE(config)
    sizes = [(m.in_features, m.out_features) for m in vae.modules() if isinstance(m, nn.Linear)]
    # encoder 784 → 300 → 300 → (μ, σ) of 40; decoder 40 → 300 → 300 → 784 logits
    assert sizes == [(784, 600), (300, 600), (300, 80), (40, 600), (300, 600), (300, 784)]


def test_conv_on_mnist_is_the_classic_tutorial_network():
    encoder = conv((1, 28, 28), 32)
    layers = [m for m in encoder.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [(m.in_channels, m.out_channels) for m in layers[:2]] == [(1, 32), (32, 64)]
    assert [(m.in_features, m.out_features) for m in layers[2:]] == [(3136, 256), (256, 32)]
    decoder = conv(16, (1, 28, 28))
    layers = [m for m in decoder.modules() if isinstance(m, nn.ConvTranspose2d | nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers[:2]] == [(16, 256), (256, 3136)]
    assert [(m.in_channels, m.out_channels) for m in layers[2:]] == [(64, 32), (32, 1)]


@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
@pytest.mark.parametrize(("channels", "height", "width"), [(1, 8, 8), (1, 28, 28), (3, 13, 17), (2, 32, 32)])
def test_conv_maps_any_image_size_both_ways_with_leading_dims(kernel_size, channels, height, width):
    d = channels * height * width
    encoder = conv((channels, height, width), 6, kernel_size=kernel_size, channels=[4, 8], hidden=12)
    assert encoder(torch.randn(2, 3, d)).shape == (2, 3, 6)  # (particles, data, features)
    # a decoder for a likelihood with P = 2 parameters per value: 2·C channels, parameter-major
    decoder = conv(5, (2 * channels, height, width), kernel_size=kernel_size, channels=[4, 8], hidden=12)
    assert decoder(torch.randn(2, 3, 5)).shape == (2, 3, 2 * d)


@pytest.mark.parametrize(
    ("shapes", "fragment"),
    [((10, 20), "needs an image on one side, but maps 10 to 20"), (((1, 8, 8), (1, 8, 8)), "not both")],
    ids=["no-image", "two-images"],
)
def test_conv_refuses_what_it_cannot_map(shapes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        conv(*shapes)


def test_a_vae_gives_conv_the_image_shape_and_the_likelihoods_parameters():
    config = ModelConfig(
        latent_dim=3,
        data_dim=64,
        image_shape=[8, 8],
        likelihood={"kind": "beta"},
        encoder={"kind": "conv", "channels": [4], "hidden": 8},
        decoder={"kind": "conv", "channels": [4], "hidden": 8},
    )
    vae = VAE(config)
    x = torch.rand(5, 64).clamp(0.01, 0.99)
    assert vae.encoder(x).shape == (5, 6)  # μ and σ of q(z|x)
    assert vae.decoder(torch.randn(5, 3)).shape == (5, 128)  # α and β for 64 values
    assert vae.reconstruct(x).shape == (5, 64)
    with pytest.raises(ConfigError, match="needs an image on one side"):
        VAE(ModelConfig(latent_dims=[4, 2], data_dim=64, image_shape=[8, 8], inner={"kind": "conv"}))
