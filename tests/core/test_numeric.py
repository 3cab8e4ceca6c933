"""Numeric helpers against their definitions, including where the naive formula overflows."""

import math

import pytest
import torch
import torch.nn.functional as F

from pyro_vae.core.numeric import floored_softplus, log_mean_exp, masked, read_back, softplus_inverse


def test_softplus_inverse_undoes_softplus(f64):
    y = torch.tensor([1e-8, 1e-3, 0.5, 1.0, 20.0, 50.0])
    assert torch.allclose(F.softplus(softplus_inverse(y)), y, rtol=1e-12, atol=0)
    # log(exp(y) - 1), the definition, where it is still accurate
    assert softplus_inverse(torch.tensor(2.0)).item() == pytest.approx(math.log(math.expm1(2.0)), rel=1e-14)


def test_floored_softplus_is_softplus_plus_the_floor(f64):
    raw = torch.tensor([-30.0, 0.0, 3.0])
    assert torch.allclose(floored_softplus(raw, 0.01), torch.log1p(torch.exp(raw)) + 0.01, rtol=1e-14)
    assert floored_softplus(torch.tensor(-1e3), 0.01).item() == 0.01


def test_log_mean_exp_is_the_log_of_the_mean_of_exp(f64):
    t = torch.tensor([[0.1, -2.0, 3.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(log_mean_exp(t, dim=1), t.exp().mean(1).log(), rtol=1e-14)
    assert torch.allclose(log_mean_exp(t, dim=0), t.exp().mean(0).log(), rtol=1e-14)


def test_log_mean_exp_stays_finite_where_exp_overflows(f64):
    # log mean exp(1000 + s) = 1000 + log mean exp(s): shift invariance
    s = torch.tensor([0.0, -1.0, 2.0])
    assert log_mean_exp(1000 + s).item() == pytest.approx(1000 + math.log(s.exp().mean().item()), rel=1e-15)
    assert log_mean_exp(torch.full((4,), -2000.0)).item() == -2000.0


def test_masked_zeroes_masked_out_entries_broadcasting_from_the_right():
    value = torch.arange(6.0).reshape(2, 3)  # (batch, latent) with event_dims = 1
    mask = torch.tensor([True, False])
    assert masked(value, mask, event_dims=1).tolist() == [[0, 1, 2], [0, 0, 0]]
    assert masked(value, torch.tensor([False, True, True])).tolist() == [[0, 1, 2], [0, 4, 5]]
    assert masked(value, None) is value and masked(value, True) is value
    assert masked(value, False).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_read_back_keeps_integers_up_to_2_to_the_53_exact():
    big = 2**53 - 1
    assert read_back(torch.tensor(big, dtype=torch.int64), torch.tensor(0.25)) == [float(big), 0.25]
