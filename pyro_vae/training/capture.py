"""A training step as one graph: captured, replayed or compiled, checked against eager.

:class:`Program` records the step F(θ, φ, buffers, x_B, index_B, t, β_t) → (L, ∇L) of
:mod:`pyro_vae.training.compiled` with :func:`pyro_vae.inference.graphs.capture`: the parameters,
the minibatch,
the step number t and the schedule's values are the graph's inputs, every operation Pyro's
handlers run on them is recorded (the guide's keyed noise, the model's log densities, the
objective), and the backward pass is traced by ``torch.autograd.grad`` into the same graph.

The graph is then either *replayed* as recorded, operation by operation with the same
kernels as the eager step (bit for bit its result, without Pyro's Python), with the
gradients applied by the run's optimizer; or *compiled* by TorchInductor, with clipping and,
for the run's fused Adam, the update (Kingma & Ba 2015) in the graph, on the optimizer's own
state tensors, so that its checkpoints hold what the graph did.

Its first run is checked against the same step run eagerly on copies of its inputs: the loss,
every gradient and every updated parameter (:func:`pyro_vae.inference.graphs.agree`).
"""

import time
from collections.abc import Callable

import torch

from pyro_vae.inference.graphs import Uncompilable, agree, buffers_of, capture, compile_graph, first_line
from pyro_vae.inference.noise import step_seed
from pyro_vae.training.step import TrainStep, stepping


class Program:
    """One captured step, for one minibatch shape and set of parameters: replayed, or with
    ``compile`` compiled at its first call.

    ``program(x, index, t, inputs)`` returns the loss and the gradients of the parameters that
    reach it. With ``reduce`` (several processes) the gradients come as one flat buffer, to be
    summed, clipped and applied outside. Compiled, they are clipped in the graph, and where the
    optimizer is the run's Adam (:func:`adam_settings`) the update is made there too
    (:attr:`adam`); replayed, the optimizer steps after it, as it does after the eager step.
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
        params = [p for group in optimizer.param_groups for p in group["params"]]
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
        #: Adam's hyperparameters where the compiled graph makes its update, else None
        self.adam = adam_settings(optimizer) if compile and not reduce else None
        if self.adam is not None:
            _start_adam(optimizer, params)
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
        """The graph's inputs: parameters, buffers, minibatch, step, schedule values and, with
        Adam in the graph, its step sizes (from the current learning rate) and its state, read
        from the optimizer at every step (a resumed run loads new state tensors)."""
        flat = [*self.params, *self.buffers.values(), x, index, t, *(inputs[k] for k in self.input_names)]
        if self.adam is not None:
            states = [self.optimizer.state[p] for p in self.params]
            steps = [s["step"] for s in states]
            flat += [*_bias_corrections(steps, self.optimizer.param_groups[0]["lr"], self.adam)]
            flat += [*steps, *(s[k] for k in ("exp_avg", "exp_avg_sq") for s in states)]
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
        if self.clip_norm is not None and self.compile:  # clip_grad_norm_, in the graph
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            grads = [g * torch.clamp(self.clip_norm / (norm + 1e-6), max=1.0) for g in grads]
        if self.adam is not None:
            sizes, roots, *moments = flat[n + m + 3 + len(self.input_names) :]
            steps, avgs, squares = moments[:n], moments[n : 2 * n], moments[2 * n :]
            used = [i for i in range(n) if self.used[i]]
            with torch.no_grad():  # the parameters are the optimizer's leaves
                _adam(
                    [params[i] for i in used],
                    grads,
                    [steps[i] for i in used],
                    [avgs[i] for i in used],
                    [squares[i] for i in used],
                    sizes[used],
                    roots[used],
                    self.adam,
                )
        return (loss.detach(), *grads)

    def _static(self, flat: list) -> list:
        """The inputs that stay the same tensors from step to step: all but the minibatch and its
        indices (the step number and schedule values are tensors the caller keeps and refills)."""
        n = len(self.params) + len(self.buffers)
        k = n + 3 + len(self.input_names)  # then Adam's step sizes and roots (new each step), its state
        return flat[:n] + flat[n + 2 : k] + flat[k + 2 :]

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
        try:
            agree(out, eager, what="output (loss, then gradients)", how=how)
            if self.adam is not None:  # and the update: the parameters as the eager step leaves them
                agree(flat[: len(self.params)], before[: len(self.params)], what="updated parameter", how=how)
        except Uncompilable as e:
            if self.adam is None:
                raise
            with torch.no_grad():  # the eager step's update stands, made once
                for v, b in zip(flat, before, strict=True):
                    v.copy_(b)
            raise Uncompilable(str(e), done=eager[0], stage=e.stage) from None
        self.checked = True
        return out[0], list(out[1:])


def adam_settings(optimizer) -> dict | None:
    """Adam's hyperparameters where the graph can make its update (``torch.optim.Adam``, one
    group, fused, without AMSGrad, maximize or weight decay, as ``pyro_vae.train`` makes it);
    else None, and the optimizer steps eagerly after the graph."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    plain = not (group["amsgrad"] or group["maximize"] or group["weight_decay"] or group["differentiable"])
    if not (plain and group["fused"] and not torch.is_tensor(group["lr"])):
        return None
    beta1, beta2 = group["betas"]
    return {"beta1": beta1, "beta2": beta2, "eps": group["eps"]}


def _start_adam(optimizer, params) -> None:
    """Adam's state as its first step makes it (fused: the step count on the device)."""
    for p in params:
        if not optimizer.state[p]:
            optimizer.state[p].update(
                step=torch.zeros((), dtype=torch.float32, device=p.device),
                exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
            )


def _bias_corrections(steps: list, lr: float, settings: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's step sizes lr/(1 − β₁ᵗ) and roots √(1 − β₂ᵗ) for the coming step t of each
    parameter, made before the graph: inside it the compiler would compute the powers anew for
    every vector of every parameter."""
    t = torch.stack(steps) + 1
    return lr / (1 - settings["beta1"] ** t), torch.sqrt(1 - settings["beta2"] ** t)


def _adam(params, grads, steps, avgs, squares, sizes, roots, settings) -> None:
    """Adam's update in place (Kingma & Ba 2015, Algorithm 1), as ``torch.optim.Adam`` makes it::

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
        θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε),

    with the step sizes and roots of :func:`_bias_corrections`.
    """
    beta1, beta2, eps = settings["beta1"], settings["beta2"], settings["eps"]
    for p, g, step, m, v, size, root in zip(params, grads, steps, avgs, squares, sizes, roots, strict=True):
        step.add_(1)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.sub_(size * m / (v.sqrt() / root + eps))


def _signature(params: list) -> tuple:
    return tuple((id(p), p.shape, p.dtype, p.device) for p in params)
