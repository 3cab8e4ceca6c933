"""The compiled step computes the eager step: the same loss, gradients and updates.

The grid of parts and every objective are checked on the captured graph run as it is (every
ATen operation Pyro's program made, recorded once and replayed without Pyro): that is what
capturing can get wrong. A few programs are also compiled by Inductor, and the policy of
:class:`~pyro_vae.training.compiled.CompiledStep` (auto, fallbacks, shapes) is checked with
``torch.compile`` replaced by the captured graph itself, which is quick.
"""

import os
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae
from pyro_vae import VAE, Config, make_objective
from pyro_vae.inference.noise import step_seed
from pyro_vae.training import capture
from pyro_vae.training.capture import Program, Uncompilable
from pyro_vae.training.compiled import CompiledStep
from pyro_vae.training.step import TrainStep, stepping
from tests.models.test_parts_grid import build, data_for

SEED, T = 7, 11  # the run's seed and the step whose keyed noise both paths draw


def eager_loss_and_grads(step: TrainStep, x, index, t, inputs):
    params = [p for g in step.optimizer.param_groups for p in g["params"]]
    with stepping():
        loss = step.loss(x, index, step_seed(step.seed, t), **inputs)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), grads


def sgd_step(vae, objective, **kw) -> TrainStep:
    model, guide = vae.programs(param_sites=False)
    return TrainStep(objective, model, guide, torch.optim.SGD(vae.parameters(), lr=0.01), seed=SEED, **kw)


def side_by_side(step: CompiledStep, eager: TrainStep, x: torch.Tensor, steps: int) -> None:
    """``steps`` updates on ``x`` by ``step`` and by its eager twin, in turn."""
    index = torch.arange(len(x))
    with stepping():
        for t in range(steps):
            step(x, index=index, epoch=0.0, step=t)
            eager(x, index=index, epoch=0.0, step=t)


def test_a_schedule_value_is_an_input_of_the_graph():
    torch.manual_seed(0)
    vae, x = build("normal", "normal", "bernoulli"), data_for("bernoulli")
    step = sgd_step(vae, make_objective("elbo", kl_warmup=4))
    index = torch.arange(len(x))
    values = {"kl_weight": torch.tensor(0.25)}
    program = Program(step, x, index, torch.tensor(T), values, reduce=False)
    for weight in (0.25, 1.0):  # one graph, two weights, each the eager loss at that weight
        values["kl_weight"].fill_(weight)
        with torch.no_grad():
            loss = program.graph(*program.inputs(x, index, torch.tensor(T), values))[0]
        expected, _ = eager_loss_and_grads(step, x, index, T, {"kl_weight": weight})
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Compiled by Inductor
# ---------------------------------------------------------------------------------------------


def small_config(**train) -> Config:
    overrides = {"model.latent_dim": 3, "model.encoder.hidden": [16], "model.decoder.hidden": [16]}
    return Config().override({**overrides, "train.epochs": 3, "train.batch_size": 100, **train})


@pytest.mark.slow
def test_compiled_training_gives_the_eager_metrics(tmp_path):
    """A few epochs compiled by Inductor (KL warm-up's weight an input, clipping and Adam in the
    graph, the partial last batch eager) against eager."""
    objective = {"kind": "iwae", "particles": 3, "kl_warmup": 2}
    rows = {}
    for mode in (True, False):
        config = small_config(**{"train.compile": mode, "train.clip_norm": 50.0}).override(
            {f"objective.{k}": v for k, v in objective.items()}
        )
        run = pyro_vae.train(config.override({"train.run_dir": str(tmp_path / str(mode))}), quiet=True)
        rows[mode] = run.history
    assert [r["step_path"] for r in rows[True][1:]] == ["compiled"] * 3
    assert [r["step_path"] for r in rows[False][1:]] == ["eager"] * 3
    assert rows[True][1]["compile_seconds"] > 0 and rows[True][2]["compile_seconds"] == 0
    for fast, eager in zip(rows[True], rows[False], strict=True):
        for key in ("train_loss", "valid_elbo", "valid_kl"):
            if eager[key] is not None:
                assert fast[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-3), key


def test_graph_adam_follows_torch_adam(no_compiler):
    """Adam's update in the graph against torch's fused Adam, over several steps."""
    torch.manual_seed(0)
    vae, x = build("normal", "normal", "gaussian"), data_for("gaussian")
    twin = VAE(vae.config)
    twin.load_state_dict(vae.state_dict())
    steps = []
    for v in (vae, twin):
        model, guide = v.programs(param_sites=False)
        optimizer = torch.optim.Adam(v.parameters(), lr=0.01, fused=True)
        steps.append(TrainStep(make_objective("elbo"), model, guide, optimizer, seed=SEED))
    graphed = CompiledStep(steps[0], True)
    side_by_side(graphed, steps[1], x, 6)
    assert graphed.path == "compiled"
    for (name, p), q in zip(vae.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    for p, q in zip(vae.parameters(), twin.parameters(), strict=True):
        a, b = steps[0].optimizer.state[p], steps[1].optimizer.state[q]
        assert a["step"].item() == b["step"].item() == 6
        torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"], rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# The policy: auto, fallbacks, shapes (torch.compile replaced by the graph itself)
# ---------------------------------------------------------------------------------------------


# Run in a child process: the miscompiled kernel corrupts the heap, and glibc aborts.
WIDE_LATENT = """
import json, sys, torch
from pyro_vae import VAE, ModelConfig, make_objective
from pyro_vae.training.compiled import CompiledStep
from pyro_vae.training.step import TrainStep, stepping

torch.manual_seed(0)
config = ModelConfig(latent_dim=20, data_dim=16, encoder={"kind": "mlp", "hidden": [8]},
                     decoder={"kind": "mlp", "hidden": [8]}, likelihood={"kind": "bernoulli"})
vae, twin = VAE(config), VAE(config)
twin.load_state_dict(vae.state_dict())
steps = []
for v in (vae, twin):
    model, guide = v.programs(param_sites=False)
    optimizer = torch.optim.Adam(v.parameters(), lr=1e-3, fused=True)
    steps.append(TrainStep(make_objective("elbo"), model, guide, optimizer, seed=7))
graphed = CompiledStep(steps[0], True)
x, index = (torch.rand(100, 16) > 0.5).float(), torch.arange(100)
losses = []
with stepping():
    for t in range(3):
        losses.append([float(s(x, index=index, epoch=0.0, step=t)) for s in (graphed, steps[1])])
gap = max((p - q).abs().max().item() for p, q in zip(vae.parameters(), twin.parameters()))
print(json.dumps({"path": graphed.path, "losses": losses, "gap": gap}))
"""


@pytest.mark.slow
def test_compiled_noise_of_a_wide_latent_keeps_the_heap(tmp_path):
    """The keyed noise of 20 latent dimensions, compiled for the CPU: Inductor folds the int64
    counter times the golden gamma into its loop index, which overflows, and without -fwrapv
    g++ made the guide's kernel write past its outputs (a glibc abort, as on binarized MNIST).
    The compiled steps then give the eager losses and parameters."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = [sys.executable, "-c", WIDE_LATENT]
    done = subprocess.run(child, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["path"] == "compiled"
    for fast, eager in result["losses"]:
        assert fast == pytest.approx(eager, rel=1e-4)
    assert result["gap"] < 1e-5


@pytest.fixture
def no_compiler(monkeypatch):
    monkeypatch.setattr(capture, "compile_graph", lambda graph, example, device: graph)


def branching_pair():
    """A user's model and guide whose guide branches on the data's values."""

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def model(self, x):
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
                pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

        def guide(self, x):
            loc = self.w * x if x.sum() > 0 else -self.w * x  # a branch on a value
            with pyro.plate("data", len(x)):
                pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    return Pair()


def test_a_schedule_after_graph_steps_does_not_warn(no_compiler, recwarn):
    """The graph makes Adam's update; a learning-rate schedule stepped after it finds the optimizer
    stepped (its public step(), with no gradients: no second update), with no private flag set by hand."""
    torch.manual_seed(0)
    vae, x = build("normal", "normal", "gaussian"), data_for("gaussian")
    model, guide = vae.programs(param_sites=False)
    optimizer = torch.optim.Adam(vae.parameters(), lr=0.01, fused=True)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.5)
    step = CompiledStep(TrainStep(make_objective("elbo"), model, guide, optimizer, seed=SEED), True)
    with stepping():
        step(x, index=torch.arange(len(x)), epoch=0.0, step=0)
    schedule.step()
    with stepping():  # the graph reads the new learning rate: half the first step's
        step(x, index=torch.arange(len(x)), epoch=1.0, step=1)
    assert step.path == "compiled" and optimizer.state[next(vae.parameters())]["step"].item() == 2
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_a_program_that_cannot_be_captured_trains_eager_saying_why(no_compiler):
    pair = branching_pair()
    optimizer = torch.optim.Adam(pair.parameters(), lr=0.01, fused=True)
    lines = []
    step = CompiledStep(
        TrainStep(make_objective("elbo"), pair.model, pair.guide, optimizer), "auto", say=lines.append
    )
    step.target = "compiled"  # as auto decides for a long run
    x = torch.randn(10, 3)
    with stepping():
        for t in range(3):
            step(x, index=torch.arange(10), epoch=0.0, step=t)
    assert step.path == "eager" and optimizer.state[pair.w]["step"].item() == 3
    assert len(lines) == 1 and lines[0].startswith("the training step runs eager: it cannot be captured (")
    assert "depends on a tensor's value" in lines[0] and "test_compiled.py" in lines[0], lines[0]
    forced = CompiledStep(TrainStep(make_objective("elbo"), pair.model, pair.guide, optimizer), True)
    with (
        stepping(),
        pytest.raises(Uncompilable, match=r"train\.compile = true, but the training step cannot be captured"),
    ):
        forced(x, index=torch.arange(10), epoch=0.0, step=0)


@pytest.mark.slow
def test_a_partial_minibatch_runs_eager_whatever_came_before_it(no_compiler):
    """Only full minibatches run a graph, so which steps run eager is a function of the step
    number alone: a run resumed just before an epoch's partial batch takes the path the
    uninterrupted run took (no graph for the partial batch's shape)."""
    torch.manual_seed(0)
    x = (torch.rand(30, 6) > 0.5).float()
    index = torch.arange(30)
    shapes = [20, 20, 7, 20, 20, 7]  # epochs of 3 minibatches, the last one short
    made, original = [], Program.__init__

    def counting(self, eager, x, *args, **kw):
        made.append(tuple(x.shape))
        original(self, eager, x, *args, **kw)

    def run(steps, **kw):
        step = CompiledStep(
            sgd_step(build("normal", "normal", "bernoulli"), make_objective("elbo")), True, **kw
        )
        with stepping(), pytest.MonkeyPatch.context() as mp:
            mp.setattr(Program, "__init__", counting)
            for t in steps:
                step(x[: shapes[t]], index=index[: shapes[t]], epoch=0.0, step=t)
        return step

    assert run(range(6), batches=3, partial=True).path == "compiled" and made == [(20, 6)]
    made.clear()
    resumed = run([2, 3], batches=3, partial=True)  # from a checkpoint written before step 2
    assert made == [(20, 6)] and resumed.path == "compiled"
    made.clear()
    run(range(4))  # no epoch given: every shape is full, and gets its own graph
    assert made == [(20, 6), (7, 6)]


def test_a_replayed_step_is_the_eager_step_bit_for_bit(no_compiler):
    """Replayed, the graph runs the eager step's own kernels: training takes the same path."""
    torch.manual_seed(0)
    vae, x = build("vamp", "iaf", "bernoulli"), data_for("bernoulli")
    twin = VAE(vae.config)
    twin.load_state_dict(vae.state_dict())
    steps = [sgd_step(v, make_objective("iwae", particles=3), clip_norm=1.0) for v in (vae, twin)]
    for s in steps:
        s.optimizer = torch.optim.Adam(s.optimizer.param_groups[0]["params"], lr=0.01, fused=True)
    replayed = CompiledStep(steps[0], "auto")
    replayed.target = "replayed"
    side_by_side(replayed, steps[1], x, 5)
    assert replayed.path == "replayed"
    for p, q in zip(vae.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_parameters_outside_the_modules_are_refused_by_the_capture(no_compiler):
    """A pair on Pyro's global param store: the graph could not take its parameters as inputs."""

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        w = pyro.param("w", torch.ones(3))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(w * x, 1.0).to_event(1))

    x = torch.randn(10, 3)
    guide(x)
    params = [pyro.param("w").unconstrained()]
    step = CompiledStep(
        TrainStep(make_objective("elbo"), model, guide, torch.optim.Adam(params, fused=True)), True
    )
    with stepping(), pytest.raises(Uncompilable, match="no module of the model and guide holds"):
        step(x, index=torch.arange(10), epoch=0.0, step=0)


# ---------------------------------------------------------------------------------------------
# The importance-sampling chunk
# ---------------------------------------------------------------------------------------------


def test_with_several_processes_the_graph_gives_one_flat_gradient_summed_then_clipped(no_compiler):
    """The path of N processes (one all-reduce of a flat buffer, clipping after it), here
    with a sum over one process: the eager step's update, bit for bit when replayed."""
    torch.manual_seed(0)
    vae, x = build("normal", "normal", "gaussian"), data_for("gaussian")
    twin = VAE(vae.config)
    twin.load_state_dict(vae.state_dict())
    steps = [sgd_step(v, make_objective("elbo"), clip_norm=0.5) for v in (vae, twin)]
    several = CompiledStep(steps[0], "auto")
    several.target = "replayed"
    summed = []
    several.world = SimpleNamespace(
        size=2,
        main=True,
        sum=lambda t: summed.append(t.shape) or t,
        objects=lambda v: [v],
        broadcast=lambda v: v,
    )
    side_by_side(several, steps[1], x, 3)
    n = sum(p.numel() for p in vae.parameters())
    assert summed == [(n,)] * 3  # one all-reduce per step, of every gradient at once
    for p, q in zip(vae.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_compiled_step_that_disagrees_with_eager_is_replayed_instead(monkeypatch):
    """A compiler whose code computes something else (as Inductor's vectorized code did for the
    VampPrior step here): the first step's check refuses it, and the graph is replayed."""

    def faulty(graph, static, device):
        return lambda *flat: tuple(1.1 * out for out in graph(*flat))

    monkeypatch.setattr(capture, "compile_graph", faulty)
    torch.manual_seed(0)
    vae, x = build("vamp", "normal", "bernoulli"), data_for("bernoulli")
    twin = VAE(vae.config)
    twin.load_state_dict(vae.state_dict())
    steps = [sgd_step(v, make_objective("elbo")) for v in (vae, twin)]
    lines = []
    step = CompiledStep(steps[0], "auto", say=lines.append)
    step.target = "compiled"  # a long run
    side_by_side(step, steps[1], x, 4)
    assert step.path == "replayed"
    assert lines[0].startswith("the training step is replayed, not compiled: it gives another output")
    assert "compiled than eager" in lines[0]
    for p, q in zip(vae.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)  # no step was taken with the faulty code's gradients
    forced = CompiledStep(sgd_step(vae, make_objective("elbo")), True)
    with stepping(), pytest.raises(Uncompilable, match="compiled than eager"):
        forced(x, index=torch.arange(len(x)), epoch=0.0, step=0)


def test_free_bits_across_processes_trains_eager_saying_why():
    """Free bits all-reduce their batch statistic inside the loss: no graph of a share holds it."""
    vae = build("normal", "normal", "bernoulli")
    eager = sgd_step(vae, make_objective("elbo", free_bits=0.5))
    eager.world = SimpleNamespace(size=2, main=True)
    lines = []
    step = CompiledStep(eager, True, say=lines.append)
    assert step.path == "eager"
    assert lines == [
        "the training step runs eager: it sums free bits' batch statistic across processes inside the loss"
    ]
