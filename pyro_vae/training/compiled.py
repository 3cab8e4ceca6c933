"""A training step without Pyro's Python: captured once, then replayed or compiled.

A built-in VAE's Pyro program has a static structure: the same sites, plates and shapes in
every step. Its step (the guide's and the model's traces, the objective, the backward pass)
is then one function of the parameters and the minibatch,

    (L, ∇L) = F(θ, φ, buffers, x_B, index_B, t, β_t),       L = the objective's loss on x_B,

recorded once as a graph of ATen operations (:mod:`pyro_vae.training.capture`,
:mod:`pyro_vae.inference.graphs`).
The keyed noise of :mod:`pyro_vae.inference.noise` makes the guide's draws a function of
(seed, step t, point), so t is an input like any other, as are the schedule's values (β_t of
KL warm-up). The graph runs one of two ways:

* **replayed**: operation by operation, the eager step's own kernels, bit for bit its result
  (then the run's optimizer steps): the Python of Pyro's handlers is what it saves;
* **compiled** by TorchInductor: fused loops, the update (clipping and Adam's step) in the
  graph; on CUDA replayed as a CUDA graph. Float32 rounding then differs from eager's.

Nothing is computed differently without a word: tracing sees no data, so a branch on a
tensor's value fails the capture instead of being baked in; the first run of a graph is
checked against the eager step on the same minibatch and noise; and a graph is made for one
(shape, dtype, device) of the minibatch and one set of parameters and used only for those.
Only a full minibatch runs a graph: an epoch's short last one runs eager, whatever came before
it, so which steps run eager is a function of the step number (a resumed run takes the
uninterrupted run's path).

``train.compile = "auto"`` decides the path once, before the first step, from what the config
fixes and never from a clock (:mod:`pyro_vae.training.paths`), and a resumed run keeps it.
Where the step cannot be captured it trains eager, saying why in one line. ``true`` compiles
or fails with the reason; ``false`` runs Pyro's program every step. With several processes
the graph's gradients are summed by one all-reduce of one flat buffer, as
DistributedDataParallel's hook sums them in the eager step, and the processes agree on every
choice before any of them acts on it.
"""

import time
from collections.abc import Callable

import torch

from pyro_vae.inference.graphs import Uncompilable
from pyro_vae.training.capture import Program
from pyro_vae.training.step import TrainStep
from pyro_vae.training.update import update

#: graphs kept for different minibatch shapes; past these, new shapes run eager
MAX_PROGRAMS = 4


class CompiledStep:
    """A :class:`~pyro_vae.training.step.TrainStep` that runs its graph where it can; the same call.

    :param mode: ``"auto"``, ``True`` or ``False`` (``train.compile``).
    :param target, reason: ``auto``'s decision (:func:`pyro_vae.training.paths.plan`); by default a
        graph is replayed.
    :param batches: minibatches per epoch, and ``partial`` whether the last of them is short:
        that one runs eager (None: every minibatch is full).
    :param say: prints a line (of rank 0; None: silent).
    """

    def __init__(
        self,
        eager: TrainStep,
        mode: bool | str = "auto",
        *,
        target: str | None = "replayed",
        reason: str | None = None,
        batches: int | None = None,
        partial: bool = False,
        say: Callable[[str], None] | None = None,
    ):
        self.eager, self.mode, self.say = eager, mode, say
        self.batches, self.partial = batches, partial
        self.world = eager.world
        #: seconds spent capturing and compiling so far
        self.compile_seconds = 0.0
        if mode is True:
            target, reason = "compiled", None
        elif mode is False:
            target, reason = None, "is not compiled (train.compile = false)"
        #: why the step runs eager, once that is settled
        self.reason: str | None = reason
        free_bits = getattr(eager.objective, "free_bits", None)
        if mode and self.world.size > 1 and free_bits:
            # a collective inside the loss: no graph of one process's share can hold it
            self.reason = "sums free bits' batch statistic across processes inside the loss"
            if say is not None:
                say(f"the training step runs eager: it {self.reason}")
        #: "compiled" or "replayed": what runs the steps where a graph can
        self.target: str | None = target
        self._programs: dict[tuple, Program] = {}
        self._diverging = False  # a non-finite loss came before the first graph was checked
        self._t = torch.zeros((), dtype=torch.int64)
        self._stepped = False  # whether the optimizer's public step() has run since a graph stepped
        self._values: dict[str, torch.Tensor] = {}
        #: the step number and loss (on the device) of this process's first step
        self.first: tuple[int, torch.Tensor] | None = None

    @property
    def path(self) -> str:
        """ "compiled" or "replayed" where a graph runs the full minibatches (an epoch's partial
        one runs eager), else "eager": what the metrics rows and the checkpoints record."""
        return self.target if self.target and self.reason is None else "eager"

    def inputs(self, epoch: float, step: int) -> dict:
        return self.eager.inputs(epoch, step)

    def __call__(self, x: torch.Tensor, *, index: torch.Tensor | None = None, epoch: float, step: int):
        loss = self._step(x, index, epoch, step)
        if self.first is None:
            self.first = (step, loss)
        return loss

    def _step(self, x, index, epoch, step):
        if self.reason is not None or self._diverging or index is None or not self._full(step):
            return self._eager(x, index, epoch, step)
        key = (x.shape, x.dtype, x.device, index.shape, index.dtype)
        program = self._programs.get(key)
        if program is not None and program.matches():
            return self._run(program, x, index, epoch, step)
        loss = self._first(key, x, index, epoch, step)
        return loss if loss is not None else self._eager(x, index, epoch, step)

    def _full(self, step: int) -> bool:
        """Whether step ``step`` takes a full minibatch (the same answer on every process)."""
        return self.batches is None or not (self.partial and step % self.batches == self.batches - 1)

    def _eager(self, x, index, epoch, step):
        return self.eager(x, index=index, epoch=epoch, step=step)

    def _first(self, key, x, index, epoch, step) -> torch.Tensor | None:
        """This step's loss by a new graph for ``key``, or None to run it eager (and every
        later one, with the ``reason``, where the step cannot be captured). The processes
        agree on the outcome before any of them takes part in a collective."""
        if len(self._programs) >= MAX_PROGRAMS:
            return None
        start = time.perf_counter()
        failure = None
        try:
            t, values = self._step_input(step, x.device), self._input_values(epoch, step, x.device)
            reduce, compile = self.world.size > 1, self.target == "compiled"
            program = Program(self.eager, x, index, t, values, reduce=reduce, compile=compile)
            loss, grads = program(x, index, t, values)
        except Uncompilable as e:
            failure = e
        spent = time.perf_counter() - start
        self.compile_seconds += spent
        failures = [f for f in self.world.objects(failure and (str(failure), failure.stage)) if f]
        if any(stage == "diverged" for _, stage in failures):
            # not the capture's fault: the loop reports the divergence at the epoch's end
            self._diverging = True
            return failure.done if failure is not None else None
        if failures:
            reason = failures[0][0]
            compiler = all(stage == "compile" for _, stage in failures)
            if self.target == "compiled" and self.mode is not True and compiler:
                self.target = "replayed"  # the graph stands; the compiler's code did not
                if self.say is not None:
                    self.say(f"the training step is replayed, not compiled: it {reason}")
            else:
                self._give_up(reason)
            return failure.done if failure is not None else None
        self._programs[key] = program
        if self.say is not None:
            how = f"compiled in {program.compile_seconds:.1f} s" if program.compile else "replayed"
            self.say(
                f"training step captured for minibatches of {tuple(x.shape)} in "
                f"{program.capture_seconds:.1f} s, {how}, checked against the eager step "
                f"({spent:.1f} s in all)"
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
        """The update from a graph's gradients, where the graph did not make it."""
        if program.steps:
            if not self._stepped:
                # the graph made the update: one public step() with no gradients (a no-op) lets a
                # learning-rate schedule see the optimizer stepped, as it does after an eager step
                self.eager.optimizer.zero_grad(set_to_none=True)
                self.eager.optimizer.step()
                self._stepped = True
            return loss
        if program.reduce:
            grads = self._summed(program, grads[0])
        used = iter(grads)
        for p, u in zip(program.params, program.used, strict=True):
            p.grad = next(used) if u else None
        update(self.eager.optimizer, program.params, self.eager.clip_norm)
        return loss

    def _summed(self, program: Program, flat: torch.Tensor) -> list:
        flat = self.world.sum(flat)
        shapes = [p.shape for p, u in zip(program.params, program.used, strict=True) if u]
        return [g.view(s) for g, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)]
