"""pyro_vae.inference.traces: per-particle, per-data-point log densities against hand-computed Normals."""

import pytest
import torch
from ppca import SIGMA, Z, ppca, two_layer_ppca
from pyro import poutine
from pyro.distributions import Normal

from pyro_vae.inference.sites import (
    latent_sites,
    max_plate_nesting,
)
from pyro_vae.inference.traces import closed_form_sites, local_terms

SHIFT, FACTOR = 0.3, 1.7  # a guide away from the exact posterior, so q ≠ p(z|x)


def _setup():
    vae, x, _, post_loc, post_sd = ppca(torch.device("cpu"), shift=SHIFT, scale_factor=FACTOR)
    return vae, x, post_loc + SHIFT, post_sd * FACTOR


def _by_hand(vae, x, z, q_loc, q_sd):
    """recon, log prior, log q at z (k, B, Z) from the model's definition."""
    W, b = vae.decoder[0].weight, vae.decoder[0].bias
    recon = Normal(z @ W.T + b, SIGMA).log_prob(x).sum(-1)
    log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q = Normal(q_loc, q_sd).log_prob(z).sum(-1)
    return recon, log_prior, log_q


@pytest.mark.parametrize("k", [1, 3])
def test_local_terms_equal_hand_computed_densities(f64, k):
    vae, x, q_loc, q_sd = _setup()
    nesting = max_plate_nesting(vae.model, vae.guide, x)
    t = local_terms(vae.model, vae.guide, x, particles=k, nesting=nesting)
    assert list(t.latent_sites) == ["z"]
    z = t.latent_sites["z"]["value"]
    assert z.shape == (k, len(x), Z)
    recon, log_prior, log_q = _by_hand(vae, x, z, q_loc, q_sd)
    for got, want in [(t.recon, recon), (t.log_prior, log_prior), (t.log_q, log_q)]:
        assert got.shape == (k, len(x))
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(t.log_w, recon + log_prior - log_q)
    assert t.scale == 1.0 and t.kl is None


def test_scale_is_returned_separately_and_densities_are_unscaled(f64):
    vae, x, q_loc, q_sd = _setup()
    model, guide = poutine.scale(vae.model, scale=2.0), poutine.scale(vae.guide, scale=2.0)
    t = local_terms(model, guide, x, particles=2, nesting=1)
    assert t.scale == 2.0
    recon, log_prior, log_q = _by_hand(vae, x, t.latent_sites["z"]["value"], q_loc, q_sd)
    torch.testing.assert_close(t.recon, recon)
    torch.testing.assert_close(t.log_prior, log_prior)
    torch.testing.assert_close(t.log_q, log_q)


def test_masked_points_contribute_zero(f64):
    vae, x, q_loc, q_sd = _setup()
    mask = torch.arange(len(x)) % 3 != 0
    t = local_terms(poutine.mask(vae.model, mask=mask), vae.guide, x, particles=2, nesting=1)
    recon, log_prior, log_q = _by_hand(vae, x, t.latent_sites["z"]["value"], q_loc, q_sd)
    assert (t.recon[:, ~mask] == 0).all() and (t.log_prior[:, ~mask] == 0).all()
    torch.testing.assert_close(t.recon[:, mask], recon[:, mask])
    torch.testing.assert_close(t.log_prior[:, mask], log_prior[:, mask])
    torch.testing.assert_close(t.log_q, log_q)  # the guide was not masked


def test_closed_form_sites_only_the_top_layer_of_two():
    vae, x, _ = two_layer_ppca(torch.device("cpu"))
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    latents = list(latent_sites(model_trace))
    assert len(latents) == 2 and latents[0] == vae.sites[-1]
    assert closed_form_sites(model_trace, guide_trace) == {vae.sites[-1]}
    one, y, *_ = ppca(torch.device("cpu"))
    guide_trace = poutine.trace(one.guide).get_trace(y)
    model_trace = poutine.trace(poutine.replay(one.model, trace=guide_trace)).get_trace(y)
    assert closed_form_sites(model_trace, guide_trace) == {"z"}
