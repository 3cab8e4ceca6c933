"""pyro_vae.inference.sites: which sites a trace holds, a program at given values, and a site's
log-density per (particle, data point)."""

import pytest
import torch
from ppca import D, Z
from pyro import poutine
from pyro.poutine.indep_messenger import CondIndepStackFrame
from test_traces import _by_hand, _setup  # the PPCA model and its densities written out

from pyro_vae.inference.sites import (
    PARTICLES,
    at_values,
    latent_sites,
    per_particle_datum,
    sample_sites,
)
from pyro_vae.inference.traces import local_terms


def _site(frames):
    return {"name": "s", "cond_indep_stack": tuple(CondIndepStackFrame(n, d, s, 0) for n, d, s in frames)}


def test_at_values_gives_log_q_at_the_given_z(f64):
    vae, x, q_loc, q_sd = _setup()
    z = torch.randn(3, len(x), Z, generator=torch.Generator().manual_seed(5))
    t = local_terms(vae.model, at_values(vae.guide, {"z": z}), x, particles=3, nesting=1)
    assert torch.equal(t.latent_sites["z"]["value"], z)
    recon, log_prior, log_q = _by_hand(vae, x, z, q_loc, q_sd)
    torch.testing.assert_close(t.log_q, log_q)
    torch.testing.assert_close(t.log_w, recon + log_prior - log_q)


def test_per_particle_datum_sums_all_other_dimensions():
    g = torch.Generator().manual_seed(0)
    k, B = 3, 4
    t = torch.randn(k, B, D, generator=g)
    site = _site([(PARTICLES, -3, k), ("data", -2, B)])
    torch.testing.assert_close(per_particle_datum(t, site, "data"), t.sum(-1))
    # data plate rightmost: (k, D, B) is moved to (k, B, D) before summing
    site = _site([(PARTICLES, -3, k), ("data", -1, B)])
    torch.testing.assert_close(per_particle_datum(t.transpose(1, 2), site, "data"), t.sum(-1))
    # no particle plate: one particle
    site = _site([("data", -2, B)])
    torch.testing.assert_close(per_particle_datum(t[0], site, "data"), t[0].sum(-1, keepdim=True).T)
    with pytest.raises(ValueError, match="not inside the plate 'data'"):
        per_particle_datum(t, _site([(PARTICLES, -3, k)]), "data")


def test_sample_and_latent_sites_filter():
    vae, x, _, _ = _setup()
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    assert "data" in model_trace.nodes  # the plate's subsample site
    assert list(sample_sites(model_trace)) == ["z", "x"]
    assert list(latent_sites(model_trace)) == ["z"]
    assert list(latent_sites(guide_trace)) == ["z"] == list(sample_sites(guide_trace))
