"""Flow layers: each is invertible with the log-determinant autograd finds, and starts at the
identity (exactly for affine layers, within Pyro's fixed end slopes for splines)."""

import pyro.distributions as dist
import pytest
import torch

from pyro_vae.models.flows import FLOW_LAYERS, start_at_identity
from pyro_vae.models.priors import Flow

FLOWS = list(FLOW_LAYERS)


def layer(transform: str, dim: int = 4, i: int = 1):
    """A layer moved off the identity (its last layers start at zero)."""
    t = FLOW_LAYERS[transform](dim, [8], i)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.4 * torch.randn_like(p))
    return t


@pytest.mark.parametrize("transform", FLOWS)
def test_inverse_after_forward_is_the_identity(f64, transform):
    t = layer(transform)
    u = 1.5 * torch.randn(10, 4)
    z = t(u)
    assert (z - u).abs().max() > 1e-2  # the layer is not the identity, so the check has teeth
    torch.testing.assert_close(t.inv(z.detach().clone()), u, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("transform", FLOWS)
def test_the_log_determinant_is_autograds(f64, transform):
    t = layer(transform)
    u = 1.5 * torch.randn(6, 4)
    jacobians = torch.stack([torch.autograd.functional.jacobian(t, ui) for ui in u])  # (6, Z, Z)
    expected = torch.linalg.slogdet(jacobians)[1]
    log_det = t.log_abs_det_jacobian(u, t(u))
    if t.event_dim == 0:  # the elementwise spline: one term per coordinate
        log_det = log_det.sum(-1)
    torch.testing.assert_close(log_det, expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("transform", FLOWS)
def test_start_at_identity_makes_each_layer_the_identity_map(f64, transform):
    t = layer(transform)
    start_at_identity(t)
    u = 2 * torch.randn(50, 4)
    # affine layers: scale exp(0) = 1, shift 0; splines: equal bins and unit inner slopes, with
    # Pyro's end slopes fixed at 1 − 1e-3
    tol = 0.0 if "affine" in transform else 1e-3
    assert (t(u) - u).abs().max() <= tol
    assert t.log_abs_det_jacobian(u, t(u)).abs().max() <= 4 * tol


def test_autoregressive_layers_alternate_their_order():
    first, second = (
        FLOW_LAYERS["affine_autoregressive"](4, [8], 0),
        FLOW_LAYERS["affine_autoregressive"](4, [8], 1),
    )
    assert first.arn.permutation.tolist() == [0, 1, 2, 3]
    assert second.arn.permutation.tolist() == [3, 2, 1, 0]


@pytest.mark.parametrize("transform", FLOWS)
def test_flow_starts_as_its_base(f64, transform):
    prior = Flow(3, transform=transform, layers=2, hidden=[12])
    z = 2 * torch.randn(50, 3)
    gap = (prior().log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z).sum(-1)).abs().max()
    # affine layers start exactly at the identity; Pyro fixes a spline's end slopes at 1 − 1e-3
    assert gap <= (1e-12 if "affine" in transform else 2 * 3 * 1.001e-3)
