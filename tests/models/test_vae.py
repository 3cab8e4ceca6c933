"""The VAE's two Pyro programs: their sites, shapes and densities written out by hand, its
parameters declared as the module's own tensors, and the helpers encode/decode/center."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_vae.config.sections import ModelConfig
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.models.guides import GUIDES
from pyro_vae.models.vae import VAE, center, load_weights

B, D, Z = 5, 6, 2
MLP = {"kind": "mlp", "hidden": [8]}


def bernoulli_vae(**model) -> VAE:
    config = ModelConfig(
        latent_dim=Z, data_dim=D, likelihood={"kind": "bernoulli"}, encoder=MLP, decoder=MLP, **model
    )
    return VAE(config)


def traces(vae: VAE, x: torch.Tensor):
    guide = poutine.trace(vae.bare_guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.bare_model, trace=guide)).get_trace(x)
    guide.compute_log_prob()
    model.compute_log_prob()
    return model, guide


def test_sites_shapes_and_the_observed_data(f64):
    vae = bernoulli_vae()
    x = torch.bernoulli(torch.full((B, D), 0.3))
    model, guide = traces(vae, x)
    assert [n for n, s in model.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)] == [
        "z",
        "x",
    ]
    assert [n for n, s in guide.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)] == ["z"]
    assert (
        model.nodes["z"]["value"].shape == (B, Z) and model.nodes["z"]["value"] is guide.nodes["z"]["value"]
    )
    assert model.nodes["x"]["is_observed"] and torch.equal(model.nodes["x"]["value"], x)
    assert model.nodes["data"]["value"].tolist() == list(range(B))  # the plate over data points


def test_each_sites_density_is_the_one_written_out(f64):
    """log p(z) = Σ log N(z_j; 0, 1); log p(x|z) = Σ x log σ(o) + (1 − x) log(1 − σ(o)) with o
    the decoder's output; log q(z|x) = Σ log N(z_j; μ_j, σ_j²) with (μ, softplus⁻¹ σ) the encoder's."""
    vae = bernoulli_vae()
    x = torch.bernoulli(torch.full((B, D), 0.3))
    model, guide = traces(vae, x)
    z = guide.nodes["z"]["value"]
    log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    o = vae.decoder(z)
    log_px_z = (x * F.logsigmoid(o) + (1 - x) * F.logsigmoid(-o)).sum(-1)
    loc, raw = vae.encoder(x).chunk(2, -1)
    scale = F.softplus(raw) + vae.q.min_scale
    log_qz = (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(model.nodes["z"]["log_prob"], log_pz, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.nodes["x"]["log_prob"], log_px_z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(guide.nodes["z"]["log_prob"], log_qz, rtol=1e-12, atol=1e-12)
    # and log p(x|z) is the likelihood part's own density
    torch.testing.assert_close(model.nodes["x"]["log_prob"], vae.likelihood(o).log_prob(x), rtol=0, atol=0)


def test_particles_pass_through_the_networks():
    vae = bernoulli_vae()
    x = torch.bernoulli(torch.full((B, D), 0.3))
    with pyro.plate("particles", 3, dim=-2):
        model, guide = traces(vae, x)
    assert guide.nodes["z"]["value"].shape == (3, B, Z)
    assert model.nodes["x"]["log_prob"].shape == (3, B)


def test_param_sites_are_the_modules_own_tensors_and_the_store_stays_empty():
    vae = bernoulli_vae()
    x = torch.zeros(B, D)
    for program, parts in ((vae.model, ("decoder",)), (vae.guide, ("encoder", "q"))):
        trace = poutine.trace(program, param_only=True).get_trace(x)
        own = {n: p for n, p in vae.named_parameters() if n.split(".")[0] in parts}
        assert set(trace.nodes) == set(own)
        assert all(trace.nodes[n]["value"] is p for n, p in own.items())
    assert list(pyro.get_param_store().keys()) == []


def test_two_vaes_in_one_process_keep_their_own_parameters():
    a, b = bernoulli_vae(), bernoulli_vae()
    x = torch.zeros(B, D)
    ta = poutine.trace(a.guide, param_only=True).get_trace(x)
    tb = poutine.trace(b.guide, param_only=True).get_trace(x)
    weight = "encoder.0.weight" if "encoder.0.weight" in ta.nodes else next(iter(ta.nodes))
    assert ta.nodes[weight]["value"] is not tb.nodes[weight]["value"]
    assert not torch.equal(ta.nodes[weight]["value"], tb.nodes[weight]["value"])


def test_a_config_without_data_dim_is_refused():
    with pytest.raises(ConfigError, match=r"model\.data_dim is not set"):
        VAE(ModelConfig(latent_dim=Z))


def test_encode_decode_and_reconstruct_are_the_means(f64):
    vae = bernoulli_vae()
    x = torch.bernoulli(torch.full((B, D), 0.5))
    loc, _ = vae.encoder(x).chunk(2, -1)
    torch.testing.assert_close(vae.encode(x), loc, rtol=0, atol=0)
    z = torch.randn(4, Z)
    torch.testing.assert_close(vae.decode(z), torch.sigmoid(vae.decoder(z)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vae.reconstruct(x), torch.sigmoid(vae.decoder(loc)), rtol=1e-12, atol=1e-12)
    assert vae.sample(7).shape == (7, D) and set(vae.sample(7, mean=False).unique().tolist()) <= {0.0, 1.0}


def test_center_of_a_flow_is_the_flow_applied_to_its_base_mean(f64):
    q = GUIDES.get("iaf")(3, flows=2, context=4, hidden=[16])
    with torch.no_grad():
        for p in q.parameters():
            p.add_(0.3 * torch.randn_like(p))
    d = q(torch.randn(4, q.param_features))
    z = d.base_dist.mean
    for t in d.transforms:
        z = t(z)
    torch.testing.assert_close(center(d), z, rtol=0, atol=0)
    assert (z - d.base_dist.mean).abs().max() > 1e-3
    normal = dist.Normal(torch.randn(3), 1.0).to_event(1)
    assert torch.equal(center(normal), normal.mean)


def test_weights_of_another_model_are_refused_in_one_line():
    small, large = bernoulli_vae(), VAE(ModelConfig(latent_dim=3, data_dim=D, encoder=MLP, decoder=MLP))
    with pytest.raises(RunDirError) as info:
        load_weights(small, large.state_dict(), where="run/checkpoint.pt")
    message = str(info.value)
    assert message.startswith("run/checkpoint.pt does not fit the model its config describes: ")
    assert "\n" not in message
    state = {k: v + 1 for k, v in small.state_dict().items()}
    load_weights(small, state, where="x")
    assert all(torch.equal(small.state_dict()[k], v) for k, v in state.items())
