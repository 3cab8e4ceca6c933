"""A training step as one graph: captured, replayed or compiled, checked against eager.

:class:`Program` records the step F(θ, φ, buffers, x_B, index_B, t, β_t) → (L, ∇L) of
:mod:`pyro_vae.training.compiled` with :func:`pyro_vae.inference.graphs.capture`: the parameters,
the minibatch,
the step number t and the schedule's values are the graph's inputs, every operation Pyro's
handlers run on them is recorded (the guide's keyed noise, the model's log densities, the
objective), and the backward pass is traced by ``torch.autograd.grad`` into the same graph.

The graph is then either *replayed* as recorded, operation by operation with the same
kernels as the eager step (bit for bit its result, without Pyro's Python), with the
gradients applied by :func:`~pyro_vae.training.update.update` as the eager step applies them;
or *compiled* by TorchInductor, with the update (the same clipping, Adam's step written for
the graph: :func:`~pyro_vae.training.update.adam_in_graph`) traced into the graph where the
optimizer allows it (the run's fused Adam, :func:`~pyro_vae.training.update.steps_in_graph`),
on the optimizer's own state tensors, so that its checkpoints hold what the graph did.

Its first run is checked against the same step run eagerly on copies of its inputs: the loss,
every gradient and every updated parameter (:func:`pyro_vae.inference.graphs.agree`).
"""

import time
from collections.abc import Callable

import torch

from pyro_vae.inference.graphs import Uncompilable, agree, buffers_of, capture, compile_graph, first_line
from pyro_vae.inference.noise import step_seed
from pyro_vae.training.step import TrainStep, stepping
from pyro_vae.training.update import (
    adam_corrections,
    adam_in_graph,
    clip,
    params_of,
    start_state,
    steps_in_graph,
)


class Program:
    """One captured step, for one minibatch shape and set of parameters: replayed, or with
    ``compile`` compiled at its first call.

    ``program(x, index, t, inputs)`` returns the loss and the gradients of the parameters that
    reach it. With ``reduce`` (several processes) the gradients come as one flat buffer, to be
    summed, clipped and applied outside. Compiled, where the optimizer can step in the graph
    (:attr:`steps`), the graph makes the whole update; else the optimizer steps after it, as it
    does after the eager step.
    """

    def __init__(
        self,
        eager: TrainStep,
        x: torch.Tensor,
        index: torch.Tensor,
        t,
        inputs: dict,
        *,
        reduce: bool,
        compile: bool = True,
    ):
        self.module = module = eager.loss
        held = {id(p): name for name, p in module.named_parameters(remove_duplicate=False)}
        self.optimizer = optimizer = eager.optimizer
        params = params_of(optimizer)
        loose = [i for i, p in enumerate(params) if id(p) not in held]
        if loose:
            raise Uncompilable(
                f"has {len(loose)} parameters that no module of the model and guide holds (Pyro's "
                "param store?), which a graph cannot take as inputs"
            )
        self.params, self.names = params, [held[id(p)] for p in params]
        self.buffers = buffers_of(module)
        self.input_names = sorted(inputs)
        self.reduce, self.clip_norm, self.seed = reduce, eager.clip_norm, eager.seed
        self.compile = compile
        #: whether the graph makes the update (compiled, one process, the run's Adam)
        self.steps = compile and not reduce and steps_in_graph(optimizer)
        if self.steps:
            start_state(optimizer, params)
        self.signature = _signature(params)
        self.used: list[bool] = []
        example = self.inputs(x, index, t, inputs)
        start = time.perf_counter()
        with stepping():
            self.graph = capture(self._step, example)
        self.capture_seconds = time.perf_counter() - start
        self.device = x.device
        self.compiled: Callable | None = None  # made at the first call
        self.compile_seconds = 0.0
        self.checked = False

    def inputs(self, x, index, t, inputs: dict) -> list:
        """The graph's inputs: parameters, buffers, minibatch, step, schedule values and, where
        the graph steps, Adam's step sizes and roots for this step (from the learning rate now) and
        its state, read from the optimizer at every step (a resumed run loads new state tensors)."""
        flat = [*self.params, *self.buffers.values(), x, index, t, *(inputs[k] for k in self.input_names)]
        if self.steps:
            states = [self.optimizer.state[p] for p in self.params]
            flat += [*adam_corrections(self.optimizer, [s["step"] for s in states])]
            flat += [s[k] for k in ("step", "exp_avg", "exp_avg_sq") for s in states]
        return flat

    def _step(self, *flat):
        """F of the module docstring, on flat inputs: what the graph is traced from."""
        n, m = len(self.params), len(self.buffers)
        params, buffers = flat[:n], flat[n : n + m]
        x, index, t, *values = flat[n + m : n + m + 3 + len(self.input_names)]
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_() for p in params]
            state = {
                **dict(zip(self.names, leaves, strict=True)),
                **dict(zip(self.buffers, buffers, strict=True)),
            }
            loss = torch.func.functional_call(
                self.module,
                state,
                (x, index, step_seed(self.seed, t)),
                dict(zip(self.input_names, values, strict=True)),
                strict=False,
            )
            found = torch.autograd.grad(loss, leaves, allow_unused=True)
        self.used = [g is not None for g in found]
        grads = [g for g in found if g is not None]
        if self.reduce:  # one buffer for the all-reduce; clipped after it
            return loss.detach(), torch.cat([g.reshape(-1) for g in grads])
        if self.steps:
            sizes, roots, *moments = flat[n + m + 3 + len(self.input_names) :]
            keys = ("step", "exp_avg", "exp_avg_sq")
            states = [dict(zip(keys, moments[i::n], strict=True)) for i in range(n)]
            used = [i for i in range(n) if self.used[i]]
            stepped = [params[i] for i in used]
            with torch.no_grad():  # the parameters are the optimizer's leaves
                for p, g in zip(stepped, grads, strict=True):
                    p.grad = g
                clip(stepped, self.clip_norm)
                grads = [p.grad for p in stepped]
                adam_in_graph(
                    self.optimizer, stepped, grads, [states[i] for i in used], sizes[used], roots[used]
                )
        return (loss.detach(), *grads)

    def _static(self, flat: list) -> list:
        """The inputs that stay the same tensors from step to step: all but the minibatch and its
        indices (the step number, schedule values and learning rate are tensors the caller keeps
        and refills)."""
        n = len(self.params) + len(self.buffers)
        return flat[:n] + flat[n + 2 :]

    def matches(self) -> bool:
        """Whether the optimizer still holds the parameters the graph was made for."""
        return _signature(self.params) == self.signature

    def __call__(self, x, index, t, inputs: dict) -> tuple[torch.Tensor, list]:
        flat = self.inputs(x, index, t, inputs)
        if self.checked:
            assert self.compiled is not None
            with torch.no_grad():  # the graph holds its backward pass: autograd has nothing to do
                out = self.compiled(*flat)
            return out[0], list(out[1:])
        before = [v.detach().clone() for v in flat]  # for the eager step, which Adam updates in place
        start = time.perf_counter()
        try:
            compiled = self.compiled = (
                compile_graph(self.graph, self._static(flat), self.device) if self.compile else self.graph
            )
            with torch.no_grad():
                out = compiled(*flat)
        except Exception as e:  # Inductor's failures: no C++ compiler, an operation it lacks
            raise Uncompilable(f"cannot be compiled ({first_line(e)})", stage="compile") from e
        self.compile_seconds = time.perf_counter() - start
        with stepping():
            eager = self._step(*before)
        how = "compiled" if self.compile else "replayed"
        if not torch.isfinite(eager[0]):  # one host read, at the check: the run diverges here
            self._keep_eager(flat, before)
            done = eager[0] if self.steps else None  # else the eager step runs again, and updates
            raise Uncompilable(f"diverged: its loss is {eager[0].item()}", done=done, stage="diverged")
        try:
            agree(out, eager, what="output (loss, then gradients)", how=how)
            if self.steps:  # and the update: the parameters as the eager step leaves them
                updated = _where_decided(flat[: len(self.params)], before[: len(self.params)], eager[1:])
                agree(updated, before[: len(self.params)], what="updated parameter", how=how)
        except Uncompilable as e:
            if not self.steps:
                raise
            self._keep_eager(flat, before)
            raise Uncompilable(str(e), done=eager[0], stage=e.stage) from None
        self.checked = True
        return out[0], list(out[1:])

    def _keep_eager(self, flat: list, before: list) -> None:
        """Where the graph made the update, put the eager step's in its place (made once)."""
        if self.steps:
            with torch.no_grad():
                for v, b in zip(flat, before, strict=True):
                    v.copy_(b)


def _where_decided(compiled: list, eager: list, grads: list) -> list:
    """The compiled update where the eager gradient is clearly not 0, the eager one elsewhere.

    Adam's first steps move a parameter by about ±lr whatever the size of its gradient, so where a
    gradient is 0 up to the rounding that :func:`agree` allows it (1e-3 of its tensor's largest),
    the graph's and the eager step's reordered sums may point it either way: a difference of the
    rounding, not of the graph (seen where a discrete latent's classes are summed)."""
    out = []
    for c, e, g in zip(compiled, eager, grads, strict=False):
        if g is None or g.shape != c.shape:
            out.append(c)
            continue
        decided = g.abs() > 1e-3 * g.abs().max()
        out.append(torch.where(decided, c, e))
    return out


def _signature(params: list) -> tuple:
    return tuple((id(p), p.shape, p.dtype, p.device) for p in params)
