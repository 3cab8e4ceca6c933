"""Many processes, one result: the world of processes that ``torchrun`` starts.

    torchrun --nproc-per-node N -m pyro_vae train --config RUN.toml

starts N copies of pyro-vae with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their
environment. :func:`join` makes them one ``torch.distributed`` process group (``gloo`` for the
CPU; ``nccl`` for CUDA tensors, with ``gloo`` beside it for host values), one device per
process from ``LOCAL_RANK``. What the processes share is arranged so that the run does not
depend on how many there are:

* a minibatch is global: process r takes its contiguous share of each one (:meth:`World.share`),
  and each point's training noise is keyed by its index in the dataset
  (:mod:`pyro_vae.inference.noise`), not by the process that holds it; a process whose share
  is empty (fewer points than processes) still takes part in every collective, adding nothing
  (:func:`adding_nothing`);
* losses are sums over points, so gradients are *summed* across processes
  (:func:`sum_gradients`, DistributedDataParallel's communication hook), as are the batch
  statistics an objective needs (free bits' per-dimension KL) and the metrics;
* measurements shard the points in whole batches (:meth:`World.block`) and gather the
  per-point results (:meth:`World.gather`);
* a stop (a signal, a time budget) is agreed by a vote one step late (:class:`Vote`), so every
  process stops after the same step without waiting on the host in the step;
* a process that fails, is killed or hangs is named in one line by one of the others
  (:func:`~pyro_vae.core.peers.failure_line`, from the notes they leave in torchrun's store);
  a collective waits ``PYRO_VAE_TIMEOUT`` seconds (600) for a process that does not answer.

With one process (no ``torchrun``, or ``--nproc-per-node 1``) every method is the identity.
"""

import contextlib
import datetime
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pyro_vae.core.errors import ConfigError, PyroVAEError
from pyro_vae.core.peers import TIMEOUT_ENV, failure_line, lost_peer, note, note_crash, timeout_seconds

__all__ = [
    "TIMEOUT_ENV",
    "Vote",
    "World",
    "adding_nothing",
    "device_of",
    "failure_line",
    "join",
    "launched",
    "leave",
    "lost_peer",
    "sum_gradients",
    "world",
    "writes",
]

#: whether this process's contributions to sums across processes are zeros (:func:`adding_nothing`)
_adding_nothing = False


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` processes: ``rank`` (0 is the one that writes)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory, prints and draws."""
        return self.rank == 0

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous share of a global minibatch (``tensor_split``: the first
        ``len % size`` shares hold one point more)."""
        return batch if self.size == 1 else batch.tensor_split(self.size)[self.rank]

    def block(self, n: int, unit: int, rank: int | None = None) -> tuple[int, int]:
        """The points ``[lo, hi)`` of ``n`` that process ``rank`` (this one) measures: whole
        ``unit``-sized batches, contiguous, in rank order."""
        rank = self.rank if rank is None else rank
        per = _ceil_div(_ceil_div(n, unit), self.size) * unit
        lo = min(n, rank * per)
        return lo, min(n, lo + per)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Σ over processes of ``t`` (a new tensor; ``t`` itself with one process), where a
        process :func:`adding_nothing` gives zeros."""
        if self.size == 1:
            return t
        t = torch.zeros_like(t) if _adding_nothing else t.clone()
        dist.all_reduce(t)
        return t

    def gather(self, t: torch.Tensor, n: int, unit: int) -> torch.Tensor:
        """The ``(n, ...)`` whole from each process's ``(hi - lo, ...)`` block of it (:meth:`block`)."""
        if self.size == 1:
            return t
        blocks = [self.block(n, unit, r) for r in range(self.size)]
        width = max(hi - lo for lo, hi in blocks)
        padded = t.new_zeros((width, *t.shape[1:]))
        padded[: len(t)] = t
        parts = [torch.empty_like(padded) for _ in blocks]
        dist.all_gather(parts, padded)
        return torch.cat([part[: hi - lo] for part, (lo, hi) in zip(parts, blocks, strict=True)])

    def objects(self, value) -> list:
        """Every process's ``value`` (picklable), in rank order."""
        if self.size == 1:
            return [value]
        out: list = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value):
        """Rank 0's ``value``, on every process, once every process has given its own (a
        gather, not a send: no process returns before all have reached it)."""
        return value if self.size == 1 else self.objects(value)[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


@contextlib.contextmanager
def adding_nothing() -> Iterator[None]:
    """Within it, this process's part of every :meth:`World.sum` is zero.

    A process whose share of a global minibatch is empty runs the loss on a stand-in point, for
    the collectives inside the loss (free bits' batch statistic); the stand-in must add nothing
    to them, as it adds nothing to the loss.
    """
    global _adding_nothing
    before, _adding_nothing = _adding_nothing, True
    try:
        yield
    finally:
        _adding_nothing = before


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def world() -> World:
    """The world this process is in: its process group's, or a world of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched() -> int:
    """How many processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def writes() -> bool:
    """Whether this process is the one that writes (rank 0, or the only one), known from
    torchrun's environment before joining."""
    return int(os.environ.get("RANK", "0")) == 0


def join(device: torch.device, backend: str = "auto", key: str = "train.backend") -> World:
    """Join the process group torchrun's environment describes (once per process), for
    tensors on ``device``; returns the :class:`World`. Without torchrun, a world of one."""
    if launched() == 1 or dist.is_initialized():
        return world()
    cuda = device.type == "cuda"
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl" and not (cuda and dist.is_nccl_available()):
        why = "this build of torch has no NCCL" if cuda else f"the device is {device}"
        raise ConfigError(
            f'{key} = "nccl" needs CUDA devices and NCCL, but {why}; use {key} = "gloo" (or '
            '"auto", which picks gloo on the CPU), or train.device = "cuda" on a machine with GPUs'
        )
    timeout = datetime.timedelta(seconds=timeout_seconds())
    # host values (votes, objects) always travel by gloo; CUDA tensors by nccl when asked for
    dist.init_process_group("cpu:gloo,cuda:nccl" if backend == "nccl" else "gloo", timeout=timeout)
    w = world()
    note(f"pid/{w.rank}", f"{socket.gethostname()} {os.getpid()}")
    return w


def device_of(device: torch.device) -> torch.device:
    """A process's own CUDA device, ``cuda:LOCAL_RANK``, where torchrun started several on one
    machine and the config says ``cuda``; ``device`` otherwise."""
    if device.type != "cuda" or launched() == 1:
        return device
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device.index is None:
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"process {local} on this machine has no GPU of its own ({torch.cuda.device_count()} "
                "CUDA devices): start at most that many with torchrun --nproc-per-node"
            )
        device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    return device


def leave() -> None:
    """Leave the process group, if this process joined one (the others may have left).

    Called as an error that is not pyro-vae's propagates (a bug: Python prints its traceback),
    the process first leaves word of it, so that another names it in one line
    (:func:`~pyro_vae.core.peers.failure_line`) rather than taking it for a killed process.
    """
    if dist.is_available() and dist.is_initialized():
        error = sys.exc_info()[1]
        quiet = (PyroVAEError, KeyboardInterrupt, SystemExit)
        if error is not None and not isinstance(error, quiet) and not lost_peer(error):
            note_crash(error, dist.get_rank())
        # a peer that has already left leaves nothing to tear down with it
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def sum_gradients(state, bucket):
    """A DistributedDataParallel communication hook: gradients summed across processes.

    DDP's own hook averages them, right for a loss that is a mean over each process's points.
    pyro-vae's losses are sums over points, so the one-process gradient of a global batch is
    the sum of the processes' gradients of their shares.
    """
    work = dist.all_reduce(bucket.buffer(), group=state, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class Vote:
    """Agree on stopping, one step late and without waiting for it.

    Each step every process contributes a code (0: go on; else why to stop, such as a signal's
    number) to an all-reduce by maximum that runs while the next step computes; the result is
    read one step later. Every process therefore stops after the same step, whichever process
    was signalled or ran out of time. :meth:`settle` waits for the vote (an epoch's end).
    """

    def __init__(self, w: World):
        self.world = w
        self.pending: tuple | None = None

    def __call__(self, code: int) -> int:
        """The agreed code of the previous step; ``code`` is this process's for this one."""
        if self.world.size == 1:
            return code
        agreed = self._result()
        flag = torch.tensor(code, dtype=torch.int64)
        self.pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True), flag)
        return agreed

    def settle(self, code: int) -> int:
        """The agreed code of every vote so far and of ``code``, waiting for it."""
        if self.world.size == 1:
            return code
        agreed = self._result()
        flag = torch.tensor(code, dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return max(agreed, int(flag))

    def _result(self) -> int:
        if self.pending is None:
            return 0
        work, flag = self.pending
        work.wait()
        self.pending = None
        return int(flag)
