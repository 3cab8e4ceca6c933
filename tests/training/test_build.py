"""What a run trains, built from its resolved config (:mod:`pyro_vae.training.build`): the VAE
or a user's pair, the parameters the optimizer holds, Adam with its schedule and the eager
step, checked by value."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from pyro_vae import Config
from pyro_vae.core.distributed import World
from pyro_vae.core.errors import ConfigError, DataError
from pyro_vae.data.datasets import Data
from pyro_vae.inference.objectives import make_objective
from pyro_vae.training.build import build, build_vae, trained_params
from pyro_vae.training.resolve import Resolved, resolve_config
from pyro_vae.training.step import TrainStep

N, D, Z, H = 40, 6, 3, 8  # points, values per point, latent size, hidden units
CPU = torch.device("cpu")


def toy_data(train: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> Data:
    """Real-valued points whose value d has spread d + 1."""
    g = torch.Generator().manual_seed(0)
    spread = torch.arange(1.0, D + 1)
    train = torch.randn(N, D, generator=g) * spread if train is None else train
    valid = torch.randn(N // 4, D, generator=g) * spread if valid is None else valid
    return Data("toy", train, valid)


def tiny(**overrides) -> Config:
    hidden = {"model.encoder.hidden": [H], "model.decoder.hidden": [H]}
    return Config().override({"model.latent_dim": Z, **hidden, "train.device": "cpu", **overrides})


def resolved(config: Config, data: Data, *, custom_model: bool = False) -> Resolved:
    config = resolve_config(config, data, custom_model=custom_model, run_dir="never-written")
    return Resolved(config, data, CPU, World())


def test_build_makes_the_vae_of_the_config_with_the_datas_size():
    data = toy_data()
    built = build(resolved(tiny(), data), None, None)
    vae = built.vae
    assert vae is not None
    assert (vae.config.latent_dim, vae.config.data_dim) == (Z, D)
    assert vae.encode(data.train).shape == (N, Z) and vae.sample(5).shape == (5, D)
    # an MLP D → H → 2Z (q's loc and scale) and Z → H → D, and the learned σ_d: counted by hand
    count = (D * H + H + H * 2 * Z + 2 * Z) + (Z * H + H + H * D + D) + D
    assert sum(p.numel() for p in vae.parameters()) == count
    # the programs without param sites (the optimizer holds the parameters), and the data as given
    assert (built.model, built.guide) == (vae.bare_model, vae.bare_guide)
    assert torch.equal(built.data.train, data.train) and torch.equal(built.data.valid, data.valid)
    assert built.data.train.device == CPU


def test_the_optimizer_holds_exactly_the_vaes_parameters_at_the_configs_rate():
    config = tiny(**{"train.lr": 0.003, "train.clip_norm": 2.5, "train.seed": 11})
    built = build(resolved(config, toy_data()), None, None)
    assert built.vae is not None
    named = list(built.vae.named_parameters())
    assert list(built.params) == [name for name, _ in named]
    assert all(built.params[name] is p and p.requires_grad for name, p in named)
    optimizer = built.state.optimizer
    assert type(optimizer) is torch.optim.Adam and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert [id(p) for p in group["params"]] == [id(p) for _, p in named]
    assert group["lr"] == 0.003 and group["fused"] is True  # float CPU tensors: one fused kernel
    assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0 and not group["amsgrad"]
    # the eager step: that optimizer, the run's clip and seed, the programs built
    eager = built.eager
    assert isinstance(eager, TrainStep) and eager.optimizer is optimizer
    assert (eager.clip_norm, eager.seed) == (2.5, 11)
    assert eager.model is built.model and eager.guide is built.guide
    assert (built.state.epoch, built.state.step, built.state.batch) == (0, 0, 0)


def test_the_schedule_is_the_configs_on_that_optimizer():
    config = tiny(**{"train.lr": 0.004, "train.lr_schedule": {"kind": "exponential", "gamma": 0.5}})
    state = build(resolved(config, toy_data()), None, None).state
    assert isinstance(state.scheduler, torch.optim.lr_scheduler.ExponentialLR)
    assert state.scheduler.optimizer is state.optimizer
    rates = [state.lr]
    for _ in range(2):
        state.optimizer.step()  # no gradients: nothing moves; the schedule counts an epoch
        state.scheduler.step()
        rates.append(state.lr)
    assert rates == pytest.approx([0.004, 0.002, 0.001], rel=1e-12)


def test_build_starts_from_the_runs_seed():
    data = toy_data()

    def start(seed: int) -> dict[str, torch.Tensor]:
        built = build(resolved(tiny(**{"train.seed": seed}), data), None, None)
        return {k: p.detach().clone() for k, p in built.params.items()}

    first = start(11)
    torch.manual_seed(999)  # the global stream's state before build does not matter
    assert all(torch.equal(first[k], p) for k, p in start(11).items())
    assert any(not torch.equal(first[k], p) for k, p in start(12).items())
    pyro.set_rng_seed(11)  # build_vae after seeding by hand: the same start
    vae = build_vae(resolved(tiny(), data).config, data, CPU)
    assert all(torch.equal(first[k], p.detach()) for k, p in vae.named_parameters())


def test_build_vae_starts_a_learned_sigma_at_the_datas_spread():
    data = toy_data()
    vae = build_vae(resolved(tiny(), data).config, data, CPU)
    assert vae.config.likelihood.params["scale"] == "learned"
    # σ_d = softplus(r_d) + min_scale starts at the ML σ of a decoder that predicts the mean
    torch.testing.assert_close(vae.likelihood.scale(), data.train.std(0), rtol=1e-5, atol=1e-6)
    assert vae.likelihood.scale()[-1].item() > 3 * vae.likelihood.scale()[0].item()


@pytest.mark.parametrize("bad", ["train", "valid"])
def test_build_vae_refuses_data_outside_the_likelihoods_support_naming_the_split(bad):
    binary = (torch.arange(N * D).reshape(N, D) % 3 == 0).float()
    splits = {"train": binary.clone(), "valid": binary[:10].clone()}
    splits[bad][0, 0] = 0.5
    data = toy_data(**splits)
    config = resolved(tiny(**{"model.likelihood.kind": "bernoulli"}), data).config
    with pytest.raises(DataError) as refused:
        build_vae(config, data, CPU)
    message = str(refused.value)
    assert f"the {bad} data of 'digits'" in message and "not 0 or 1" in message
    assert message.endswith("(model.likelihood.kind = 'bernoulli')")
    build_vae(config, toy_data(binary, binary[:10]), CPU)  # binary data: built


def test_build_refuses_an_objective_that_needs_a_density_with_the_delta_guide():
    config = tiny(**{"model.guide.kind": "delta"})
    needs = r'objective\.kind = "elbo" needs the density of q\(z\|x\), which model\.guide\.kind = "delta"'
    with pytest.raises(ConfigError, match=needs):
        build(resolved(config, toy_data()), None, None)
    built = build(resolved(config.override({"objective.kind": "autoencoder"}), toy_data()), None, None)
    assert built.vae is not None and built.vae.config.guide.kind == "delta"


# ---------------------------------------------------------------------------------------------
# A user's own model and guide
# ---------------------------------------------------------------------------------------------


def users_pair():
    """p(z) p(x|z) = N(z; 0, I) N(x; w, I) and q(z) = N(loc, scale²), from Pyro's param store."""

    def model(x):
        w = pyro.param("w", torch.zeros(D))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(torch.zeros(Z), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(w, 1.0).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(Z))
        scale = pyro.param("scale", torch.full((Z,), 0.5), constraint=constraints.positive)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def test_trained_params_of_a_users_pair_are_the_unconstrained_params_it_declares():
    model, guide = users_pair()
    params = trained_params(None, model, guide, make_objective("elbo"), toy_data().train[:10])
    assert sorted(params) == ["loc", "scale", "w"]
    store = pyro.get_param_store()
    assert all(params[name] is store[name].unconstrained() for name in params)
    # the positive scale is trained as its logarithm
    torch.testing.assert_close(params["scale"].detach(), torch.full((Z,), math.log(0.5)))


def test_build_trains_a_users_pair_with_no_vae():
    data = toy_data()
    model, guide = users_pair()
    built = build(resolved(tiny(**{"train.lr": 0.02}), data, custom_model=True), model, guide)
    assert built.vae is None and (built.model, built.guide) == (model, guide)
    group = built.state.optimizer.param_groups[0]
    assert sorted(built.params) == ["loc", "scale", "w"]
    assert {id(p) for p in group["params"]} == {id(p) for p in built.params.values()} and group["lr"] == 0.02
