"""One training step: schedule inputs, the loss it returns, the SGD update it makes."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_vae import make_objective
from pyro_vae.core.errors import PyroVAEError
from pyro_vae.training.step import TrainStep, check_programs, declared_params, stepping
from tests.ppca import ppca

LR = 0.05


def test_warmup_inputs():
    vae, *_ = ppca("cpu")
    objective = make_objective("elbo", kl_warmup=4)
    step = TrainStep(objective, vae.model, vae.guide, torch.optim.SGD(vae.parameters(), lr=LR))
    assert step.inputs(epoch=1.0, step=0) == {"kl_weight": 0.25}
    assert step.inputs(epoch=0.0, step=99) == {"kl_weight": 0.0}
    assert step.inputs(epoch=10.0, step=0) == {"kl_weight": 1.0}


def test_plain_objective_has_no_inputs():
    vae, *_ = ppca("cpu")
    step = TrainStep(make_objective("elbo"), vae.model, vae.guide, torch.optim.SGD(vae.parameters(), lr=LR))
    assert step.inputs(epoch=1.0, step=3) == {}


def test_step_loss_and_update_match_a_manual_sgd_step():
    vae, x, *_ = ppca("cpu", shift=0.3, scale_factor=0.7)
    ref = copy.deepcopy(vae)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    objective = make_objective("elbo", kl_warmup=4)
    model, guide = vae.programs(param_sites=False)
    step = TrainStep(objective, model, guide, torch.optim.SGD(vae.parameters(), lr=LR))

    rng = torch.get_rng_state()
    with stepping():
        loss = step(x, epoch=1.0, step=0)
    torch.set_rng_state(rng)
    ref_model, ref_guide = ref.programs(param_sites=False)
    with stepping():
        expected = objective.differentiable_loss(ref_model, ref_guide, x, kl_weight=0.25)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-6, atol=0)
    # the schedule's weight matters: another weight at the same draws gives another loss
    torch.set_rng_state(rng)
    with torch.no_grad(), stepping():
        full = objective.differentiable_loss(ref_model, ref_guide, x, kl_weight=1.0)
    assert abs(full.item() - expected.item()) > 1e-3

    expected.backward()
    moved = 0
    for (name, p), (ref_name, q) in zip(vae.named_parameters(), ref.named_parameters(), strict=True):
        assert name == ref_name
        assert q.grad is not None, name
        want = before[name] - LR * q.grad
        torch.testing.assert_close(p.detach(), want, rtol=1e-6, atol=1e-7)
        moved += int(not torch.equal(p.detach(), before[name]))
    assert moved > 0


def test_bare_programs_declare_no_params_and_give_the_same_loss():
    vae, x, *_ = ppca("cpu", shift=0.2)
    bare_model, bare_guide = vae.programs(param_sites=False)
    assert (bare_model, bare_guide) != (vae.model, vae.guide)
    for program in (bare_model, bare_guide):
        trace = poutine.trace(program, param_only=True).get_trace(x)
        assert list(trace.nodes) == []
    # the programs with param sites do declare them
    assert len(poutine.trace(vae.guide, param_only=True).get_trace(x).nodes) > 0
    assert vae.programs() == (vae.model, vae.guide)

    objective = make_objective("elbo")
    rng = torch.get_rng_state()
    with_params = objective.differentiable_loss(vae.model, vae.guide, x)
    torch.set_rng_state(rng)
    bare = objective.differentiable_loss(bare_model, bare_guide, x)
    assert torch.equal(with_params, bare)
    with pytest.raises(PyroVAEError, match="no parameters"):
        declared_params(bare_model, bare_guide, objective, x)


def test_declared_params_are_the_modules_parameters():
    vae, x, *_ = ppca("cpu")
    params = declared_params(vae.model, vae.guide, make_objective("elbo"), x)
    names = dict(vae.named_parameters())
    assert set(params) == set(names)
    for name, p in params.items():
        assert p is names[name], name


def test_check_programs_raises_pyros_shape_error():
    vae, x, *_ = ppca("cpu")
    objective = make_objective("elbo")
    check_programs(vae.model, vae.guide, objective, x)  # a matching pair passes

    def bad_guide(x):
        with pyro.plate("data", x.shape[0]):
            # batch shape (B, Z): the latent dimension is left in the plate's place
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 3), 1.0))

    with pytest.raises(ValueError, match=r"Shape mismatch inside plate\('data'\) at site z"):
        check_programs(vae.model, bad_guide, objective, x)


@pytest.mark.parametrize("objective", ["elbo", "elbo:free_bits=0.25", "iwae:k=3"])
def test_an_empty_share_adds_a_zero_loss_on_every_parameter(objective):
    """A process with no points of a global minibatch (fewer points than processes): its loss
    is 0 and every parameter gets a zero gradient, so that DDP's all-reduce has its part."""
    from pyro_vae.inference.objectives import parse_objective
    from pyro_vae.training.step import Loss

    vae, x, *_ = ppca("cpu")
    loss = Loss(make_objective(**parse_objective(objective)[1]), *vae.programs(param_sites=False), [vae])
    with stepping():
        value = loss(x[:0], torch.arange(0), 7, **({"kl_weight": 1.0} if "free" in objective else {}))
    value.backward()
    assert value.item() == 0.0
    grads = [p.grad for p in vae.parameters()]
    assert grads and all(g is not None and not g.any() for g in grads)
