"""Which path a run's training step takes: eager, replayed or compiled, decided from the config.

``train.compile = "auto"`` decides once, before the first step, from what the config fixes and
never from a clock, so that a command takes the same path on a quiet machine and a busy one,
and on every process. A cost model (:func:`eager_seconds`) estimates the eager seconds of the
run's planned steps; the run compiles its step when that is
:data:`~pyro_vae.inference.graphs.AUTO_SECONDS` or more (a compile costs seconds to tens of
seconds, repaid by a faster step), replays the captured graph when it is
:data:`REPLAY_SECONDS` or more, and runs Pyro's program below (:func:`plan`).

The path is recorded in the run's checkpoints. Compiled steps round differently from eager
ones; replayed steps compute the eager step's bits. So a resumed run keeps a compiled path
compiled and never compiles an uncompiled one: a run continued from its checkpoint, or
extended with more epochs, computes what the run that was never stopped computes, bit for bit
(for an extension, unless the longer run would have compiled and the shorter one did not:
then it stays uncompiled and says so).
"""

import math
from collections.abc import Callable

from pyro_vae.inference.graphs import AUTO_SECONDS

#: ``auto`` replays the captured step when the eager steps would take this many seconds
REPLAY_SECONDS = 10.0
#: the cost model's eager seconds per step outside the matrix products (Pyro's handlers, the
#: small kernels), and its rate of floating-point operations in them, by device type: measured
#: on the digits and MNIST steps of ``benchmarks/step_overhead.py`` (2 vCPUs; 4.9 and 6.6 ms)
STEP_OVERHEAD = {"cpu": 4e-3, "cuda": 5e-3}
FLOP_RATE = {"cpu": 1e11, "cuda": 1e13}


def eager_seconds(params: int, points: int, steps: int, device_type: str) -> float:
    """The cost model of ``auto``: the eager seconds of ``steps`` steps of a model with ``params``
    parameters on minibatches of ``points`` points,

        steps · (c + 6 · params · points / r),

    each parameter taking part in about one multiply-add per point forward and two backward
    (6 operations), c and r being :data:`STEP_OVERHEAD` and :data:`FLOP_RATE` for the device.
    A figure of the config, not of the machine's present speed."""
    kind = device_type if device_type in STEP_OVERHEAD else "cpu"
    return steps * (STEP_OVERHEAD[kind] + 6.0 * params * points / FLOP_RATE[kind])


def plan(mode: bool | str, seconds: float, recorded: str | None = None) -> tuple[str | None, str | None]:
    """The path a run's step takes, as ``(target, reason)``: ``target`` "compiled", "replayed" or
    None (eager, for ``reason``). ``seconds`` is :func:`eager_seconds` of the run's steps (capped
    by its time budget); ``recorded`` the path a resumed run took: ``auto`` keeps a compiled run
    compiled and never compiles one that was not (compiled steps round differently from eager
    and replayed ones, which compute the same bits, so either of those serves)."""
    if mode is False:
        return None, "is not compiled (train.compile = false)"
    if mode is True:
        return "compiled", None
    if recorded == "compiled":
        return "compiled", None
    if recorded is None and seconds >= AUTO_SECONDS:
        return "compiled", None
    if seconds >= REPLAY_SECONDS:
        return "replayed", None
    return None, (
        f"would take about {seconds:.0f} s eager by the config's estimate, under the "
        f"{REPLAY_SECONDS:.0f} s that repay capturing it (train.compile = true compiles anyway)"
    )


def decide(run, built, history: list[dict], say: Callable[[str], None] | None) -> dict:
    """The :class:`~pyro_vae.training.compiled.CompiledStep` arguments for a resolved and built
    run (``history``: the metrics rows of a resumed one): ``target`` and ``reason``
    (:func:`plan`), and ``batches`` and ``partial``, which say which steps take an epoch's
    short last minibatch (those run eager)."""
    tc, world, n = run.config.train, run.world, len(built.data.train)
    batches = math.ceil(n / tc.batch_size)
    params = sum(p.numel() for group in built.state.optimizer.param_groups for p in group["params"])
    seconds = eager_seconds(
        params, math.ceil(tc.batch_size / world.size), tc.epochs * batches, run.device.type
    )
    if tc.max_seconds is not None:
        seconds = min(seconds, tc.max_seconds)
    recorded = None
    if run.checkpoint is not None:  # a checkpoint from before runs recorded it: the last row's path
        recorded = run.checkpoint.get(
            "step_path", (history[-1].get("step_path") if history else None) or "eager"
        )
    target, reason = plan(tc.compile, seconds, recorded)
    if (
        say is not None
        and tc.compile == "auto"
        and recorded in ("eager", "replayed")
        and seconds >= AUTO_SECONDS
    ):
        say(
            "the training step stays uncompiled, as this run began (a run this long from the start "
            "would compile it, with other float rounding)"
        )
    if tc.batch_size < world.size:  # some process holds no point of any minibatch
        target, reason = None, f"leaves some of the {world.size} processes no point of a minibatch"
    elif n < tc.batch_size:
        target, reason = (
            None,
            f"has no full minibatch ({n} training points, train.batch_size = {tc.batch_size})",
        )
    return {"target": target, "reason": reason, "batches": batches, "partial": n % tc.batch_size != 0}
