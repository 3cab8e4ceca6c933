"""A captured training step (:class:`~pyro_vae.training.capture.Program`), its graph run as
recorded (every ATen operation Pyro's program made, replayed without Pyro, no compiler), gives
the eager step's loss and gradients, over the grid of parts and for every objective: that is
what capturing can get wrong. Compiling the graph is tested in test_compiled.py."""

import os

import pytest
import torch

from pyro_vae import make_objective
from pyro_vae.training.capture import Program
from pyro_vae.training.step import TrainStep
from tests.models.test_parts_grid import GUIDES, LIKELIHOODS, PRIORS, build, data_for
from tests.training.test_compiled import T, eager_loss_and_grads, sgd_step


def captured_loss_and_grads(step: TrainStep, x, index, t, inputs):
    """The captured graph, run as recorded (no compiler)."""
    values = {k: torch.tensor(float(v)) for k, v in inputs.items()}
    program = Program(step, x, index, torch.tensor(t), values, reduce=False)
    with torch.no_grad():
        out = program.graph(*program.inputs(x, index, torch.tensor(t), values))
    grads = iter(out[1:])
    return out[0], [next(grads) if used else None for used in program.used]


def assert_same(eager, captured, rtol=1e-5):
    (loss, grads), (c_loss, c_grads) = eager, captured
    torch.testing.assert_close(c_loss, loss, rtol=rtol, atol=rtol * loss.abs().item())
    assert len(grads) == len(c_grads)
    for g, c in zip(grads, c_grads, strict=True):
        assert (g is None) == (c is None)
        if g is not None:
            torch.testing.assert_close(c, g, rtol=rtol, atol=rtol * g.abs().max().item())


# Every prior with every guide (a VampPrior evaluates the guide; an IAF guide's inverse is a
# loop), each likelihood with several of them (it reads only the decoder's output); the whole
# product with PYRO_VAE_FULL_GRID=1.
PAIRS = [(p, g) for p in PRIORS for g in GUIDES]
if os.environ.get("PYRO_VAE_FULL_GRID"):
    GRID = [(p, g, lik) for p, g in PAIRS for lik in LIKELIHOODS]
else:
    GRID = [(p, g, list(LIKELIHOODS)[i % len(LIKELIHOODS)]) for i, (p, g) in enumerate(PAIRS)]


@pytest.mark.parametrize("prior,guide,likelihood", GRID, ids=["-".join(c) for c in GRID])
def test_captured_step_equals_eager_over_the_grid(prior, guide, likelihood):
    torch.manual_seed(0)
    vae, x = build(prior, guide, likelihood), data_for(likelihood)
    step = sgd_step(vae, make_objective("elbo"))
    index = torch.arange(100, 100 + len(x))
    eager = eager_loss_and_grads(step, x, index, T, {})
    assert_same(eager, captured_loss_and_grads(step, x, index, T, {}))
    # the step number is an input, not a constant: another step draws other noise
    other = captured_loss_and_grads(step, x, index, T + 1, {})
    assert abs(other[0] - eager[0]) > 1e-4 * abs(eager[0])


OBJECTIVES = {
    "elbo": {},
    "meanfield": {},
    "beta": {"beta": 4.0},
    "iwae": {"particles": 5},
    "iwae_dreg": {"particles": 3},
    "elbo_stl": {},
    "renyi": {"alpha": 0.5, "particles": 4},
    "tail_adaptive": {"particles": 4},
    "tracegraph": {},
    "elbo+warmup+free_bits": {"kl_warmup": 4, "free_bits": 0.2},
    "autoencoder": {},  # with the normal guide; the delta guide's step: test_autoencoder.py
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_captured_step_equals_eager_for_every_objective(name):
    torch.manual_seed(0)
    vae, x = build("normal", "normal", "bernoulli"), data_for("bernoulli")
    objective = make_objective(name.split("+")[0], **OBJECTIVES[name])
    step = sgd_step(vae, objective)
    index = torch.arange(len(x))
    inputs = step.inputs(epoch=1.0, step=T)  # kl_weight 0.25 under warm-up: an input of the graph
    assert_same(
        eager_loss_and_grads(step, x, index, T, inputs), captured_loss_and_grads(step, x, index, T, inputs)
    )


def test_the_objective_list_covers_every_registered_objective():
    from pyro_vae.inference.objectives import OBJECTIVES as registry

    assert {n.split("+")[0] for n in OBJECTIVES} == {
        n for n in registry.names() if registry.get(n).__module__.startswith("pyro_vae.")
    }
