"""A compiled training step: the Pyro program's whole step captured once and replayed.

A built-in VAE's Pyro program has a static structure: the same sites, plates and shapes in
every step. Its step (the guide's and the model's traces, the objective, the backward pass
and gradient clipping) is then one function of the parameters and the minibatch,

    (L, ∇L) = F(θ, φ, buffers, x_B, index_B, t, β_t),       L = objective loss on x_B,

recorded once by ``make_fx`` (``torch.fx.experimental.proxy_tensor``) as a graph of ATen
operations, tracing through Pyro's effect handlers with fake tensors, and compiled by
TorchInductor (``torch.compile``): fused C++ loops on the CPU, Triton kernels replayed as a
CUDA graph on CUDA (``mode="reduce-overhead"``). No Python of Pyro's runs per step after that.
The keyed noise of :mod:`pyro_vae.estimators.noise` makes the guide's draws a function of
(seed, step t, point), so t is an input like any other, as are the schedule's values (β_t of
KL warm-up). The optimizer stays the run's own ``torch.optim`` one (fused Adam).

Nothing is computed differently without a word:

* tracing sees no data, so a branch on a tensor's value (``.item()``, ``if x.sum() > 0``)
  fails the capture instead of being baked into the graph;
* the first compiled step is checked against the eager step on the same minibatch and noise
  (loss and every gradient);
* a program is made for one (shape, dtype, device) of the minibatch and one set of
  parameters, and used only for those; another shape runs eager until it comes twice in a
  row (the last, partial batch of an epoch stays eager), then gets its own program.

``train.compile = "auto"`` times the first eager steps and compiles when the steps left
would take over :data:`AUTO_SECONDS` eagerly; where a step cannot be captured or compiled it
trains eager, saying why in one line. ``true`` compiles or fails with that reason; ``false``
never compiles. Under several processes the graph's gradients are summed by one all-reduce
of one flat buffer, as DistributedDataParallel's hook sums them in the eager step.
"""

import time
from collections.abc import Callable

import torch

from .capture import Program, Uncompilable
from .step import TrainStep

#: ``auto`` compiles when the eager steps left would take at least this many seconds
AUTO_SECONDS = 120.0
#: eager steps ``auto`` runs before it decides; it times all but the first two
PROBE = 8
#: programs kept for different minibatch shapes; past these, new shapes run eager
MAX_PROGRAMS = 4


class CompiledStep:
    """A :class:`~pyro_vae.step.TrainStep` that runs compiled where it can; the same call.

    :param mode: ``"auto"``, ``True`` or ``False`` (``train.compile``).
    :param steps_planned: the run's total steps, for ``auto``'s estimate of the time left.
    :param max_seconds: the run's budget of step seconds, which caps that estimate.
    :param say: prints a line (of rank 0; None: silent).
    """

    def __init__(
        self,
        eager: TrainStep,
        mode: bool | str = "auto",
        *,
        steps_planned: int | None = None,
        max_seconds: float | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.eager, self.mode = eager, mode
        self.steps_planned, self.max_seconds, self.say = steps_planned, max_seconds, say
        self.world = eager.world
        #: seconds spent capturing and compiling so far
        self.compile_seconds = 0.0
        #: why the step runs eager, once that is settled
        self.reason: str | None = None if mode else "is not compiled (train.compile = false)"
        self.decided = mode != "auto"
        self._programs: dict[tuple, Program] = {}
        self._last_key: tuple | None = None
        self._probe: list[float] = []
        self._t = torch.zeros((), dtype=torch.int64)
        self._values: dict[str, torch.Tensor] = {}

    @property
    def path(self) -> str:
        """ "compiled" once a program runs the steps (an epoch's partial batch aside), else "eager"."""
        return "compiled" if self._programs and self.reason is None else "eager"

    def inputs(self, epoch: float, step: int) -> dict:
        return self.eager.inputs(epoch, step)

    def __call__(self, x: torch.Tensor, *, index: torch.Tensor | None = None, epoch: float, step: int):
        if self.reason is not None or index is None:
            return self._eager(x, index, epoch, step)
        if not self.decided:
            return self._probing(x, index, epoch, step)
        key = (x.shape, x.dtype, x.device, index.shape, index.dtype)
        program = self._programs.get(key)
        if program is not None and program.matches():
            self._last_key = key
            return self._run(program, x, index, epoch, step)
        loss = self._first(key, x, index, epoch, step)
        return loss if loss is not None else self._eager(x, index, epoch, step)

    def _eager(self, x, index, epoch, step):
        return self.eager(x, index=index, epoch=epoch, step=step)

    def _probing(self, x, index, epoch, step):
        """An eager step, timed; after :data:`PROBE` of them, ``auto`` decides."""
        start = time.perf_counter()
        loss = self._eager(x, index, epoch, step)
        if len(self._probe) == PROBE - 1 and x.device.type == "cuda":
            torch.cuda.synchronize(x.device)  # once: the pace of the steps, not of their launch
        self._probe.append(time.perf_counter() - start)
        if len(self._probe) == PROBE:
            pace = sum(self._probe[2:]) / (PROBE - 2)
            left = pace * max(0, (self.steps_planned or 0) - step - 1)
            if self.max_seconds is not None:
                left = min(left, self.max_seconds)
            self.decided = True
            if left < AUTO_SECONDS and self.world.main:
                self.reason = (
                    f"would take about {left:.0f} s more eager, under the {AUTO_SECONDS:.0f} s that "
                    "repay compiling (train.compile = true compiles anyway)"
                )
            self.reason = self.world.broadcast(self.reason)  # rank 0's clock decides for all
        return loss

    def _first(self, key, x, index, epoch, step) -> torch.Tensor | None:
        """This step's loss by a new program for ``key``, or None to run it eager (and every
        later one, with the ``reason``, where the step cannot compile). Processes agree on
        the outcome before any of them takes part in a collective."""
        if self._programs and key != self._last_key:
            self._last_key = key  # a shape seen once (an epoch's last batch) runs eager
            return None
        if len(self._programs) >= MAX_PROGRAMS:
            return None
        self._last_key = key
        start = time.perf_counter()
        failure = None
        try:
            t, values = self._step_input(step, x.device), self._input_values(epoch, step, x.device)
            program = Program(self.eager, x, index, t, values, reduce=self.world.size > 1)
            loss, grads = program(x, index, t, values)
        except Uncompilable as e:
            failure = e
        spent = time.perf_counter() - start
        self.compile_seconds += spent
        failures = [f for f in self.world.objects(failure and str(failure)) if f]
        if failures:
            self._give_up(failures[0])
            return failure.done if failure is not None else None
        self._programs[key] = program
        if self.say is not None:
            self.say(
                f"training step compiled for minibatches of {tuple(x.shape)} in {spent:.1f} s (captured "
                f"in {program.capture_seconds:.1f} s, compiled in {program.compile_seconds:.1f} s, "
                "checked against the eager step)"
            )
        return self._apply(program, loss, grads)

    def _give_up(self, reason: str) -> None:
        if self.mode is True:
            raise Uncompilable(
                f'train.compile = true, but the training step {reason}; use train.compile = "auto" '
                "to train eager when it cannot compile"
            )
        self.reason = reason
        if self.say is not None:
            self.say(f"the training step runs eager: it {reason}")

    def _step_input(self, step: int, device) -> torch.Tensor:
        if self._t.device != device:
            self._t = self._t.to(device)
        return self._t.fill_(step)  # a scalar kernel argument: no host-to-device copy

    def _input_values(self, epoch: float, step: int, device) -> dict:
        values = self.inputs(epoch, step)
        for name, value in values.items():
            held = self._values.get(name)
            if held is None or held.device != device:
                held = self._values[name] = torch.zeros((), device=device)
            held.fill_(value)
        return {name: self._values[name] for name in values}

    def _run(self, program: Program, x, index, epoch, step):
        t, values = self._step_input(step, x.device), self._input_values(epoch, step, x.device)
        return self._apply(program, *program(x, index, t, values))

    def _apply(self, program: Program, loss: torch.Tensor, grads: list) -> torch.Tensor:
        """The update from a program's gradients, where the graph did not make it."""
        if program.adam is not None:
            # the update ran in the graph; a schedule's step then need not warn that it did not
            self.eager.optimizer._opt_called = True  # type: ignore[attr-defined]
            return loss
        if program.reduce:
            grads = self._summed(program, grads[0])
        used = iter(grads)
        for p, u in zip(program.params, program.used, strict=True):
            p.grad = next(used) if u else None
        if program.reduce and self.eager.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in program.params if p.grad is not None], self.eager.clip_norm, foreach=True
            )
        self.eager.optimizer.step()
        return loss

    def _summed(self, program: Program, flat: torch.Tensor) -> list:
        flat = self.world.sum(flat)
        shapes = [p.shape for p, u in zip(program.params, program.used, strict=True) if u]
        return [g.view(s) for g, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]
