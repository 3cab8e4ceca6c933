"""Many processes, one result: the world of processes that ``torchrun`` starts.

    torchrun --nproc-per-node N -m pyro_vae train --config RUN.toml

starts N copies of pyro-vae with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their
environment. :func:`join` makes them one ``torch.distributed`` process group (``gloo`` for the
CPU; ``nccl`` for CUDA tensors, with ``gloo`` beside it for host values), one device per
process from ``LOCAL_RANK``. What the processes share is arranged so that the run does not
depend on how many there are:

* a minibatch is global: process r takes its contiguous share of each one (:meth:`World.share`),
  and each point's training noise is keyed by its index in the dataset
  (:mod:`pyro_vae.inference.noise`), not by the process that holds it;
* losses are sums over points, so gradients are *summed* across processes
  (:func:`sum_gradients`, DistributedDataParallel's communication hook), as are the batch
  statistics an objective needs (free bits' per-dimension KL) and the metrics;
* measurements shard the points in whole batches (:meth:`World.block`) and gather the
  per-point results (:meth:`World.gather`);
* a stop (a signal, a time budget) is agreed by a vote one step late (:class:`Vote`), so every
  process stops after the same step without waiting on the host in the step;
* a process that fails leaves its message in torchrun's store, so that the job ends with one
  line naming the process (:func:`failure_line`).

With one process (no ``torchrun``, or ``--nproc-per-node 1``) every method is the identity.
"""

import contextlib
import datetime
import os
import socket
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pyro_vae.core.errors import ConfigError

#: seconds a collective waits for a process that neither answers nor dies (a hung process)
TIMEOUT_ENV = "PYRO_VAE_TIMEOUT"
_NOTE = "pyro_vae/"


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
        """Σ over processes of ``t`` (a new tensor; ``t`` itself with one process)."""
        if self.size == 1:
            return t
        t = t.clone()
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
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 600)))
    # host values (votes, objects) always travel by gloo; CUDA tensors by nccl when asked for
    dist.init_process_group("cpu:gloo,cuda:nccl" if backend == "nccl" else "gloo", timeout=timeout)
    w = world()
    _note(f"pid/{w.rank}", f"{socket.gethostname()} {os.getpid()}")
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
    """Leave the process group, if this process joined one (the others may have left)."""
    if dist.is_available() and dist.is_initialized():
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


# -- when a process fails ---------------------------------------------------------------------


def _store():
    return dist.distributed_c10d._get_default_store() if dist.is_initialized() else None


def _note(key: str, value: str) -> None:
    try:
        store = _store()
        if store is not None:
            store.set(_NOTE + key, value)
    except Exception:  # the store went with a dead process: nothing left to tell
        pass


def _read(key: str, wait: float = 0.0) -> str | None:
    """A note another process left, waiting up to ``wait`` seconds for it."""
    deadline = time.monotonic() + wait
    try:
        store = _store()
        while store is not None:
            if store.check([_NOTE + key]):
                return store.get(_NOTE + key).decode()
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    except Exception:
        pass
    return None


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process stopped."""
    text = str(error)
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and ("gloo" in text or "NCCL" in text)
    )


def failure_line(error: BaseException, w: World) -> str | None:
    """The one line this process prints about ``error``, or None when another says it.

    A process's own error is left in the store: rank 0 prints its own; another process prints
    its own unless rank 0 failed with the same one (a config every process was given). A
    process that lost a peer says so only when the peer left no word (it was killed): it names
    the process that is gone, where one on this machine is.
    """
    if w.size == 1:
        return str(error)
    if not lost_peer(error):
        _note(f"error/{w.rank}", str(error))
        if w.main or _read("error/0", wait=3.0) != str(error):
            return str(error) if w.main else f"process {w.rank} of {w.size}: {error}"
        return None
    others = [r for r in range(w.size) if r != w.rank]
    deadline = time.monotonic() + 2.0  # a failing process leaves its note before it exits
    while time.monotonic() < deadline:
        if any(_read(f"error/{r}") is not None for r in others):
            return None  # the failed process said what happened
        time.sleep(0.1)
    gone = [r for r in others if not _alive(_read(f"pid/{r}"))]
    if gone:
        if w.rank != min(r for r in range(w.size) if r not in gone):
            return None
        ranks = ", ".join(map(str, gone))
        return (
            f"process {ranks} of {w.size} stopped without a word (killed, or out of memory?); "
            f"process {w.rank} stops too"
        )
    if not w.main:
        return None
    detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    return f"lost contact with another process of the job ({detail}); process {w.rank} stops too"


def _alive(note: str | None) -> bool:
    """Whether the process a ``pid`` note names still runs (assumed so on another machine)."""
    if note is None:
        return True
    host, _, pid = note.partition(" ")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    # a child that torchrun has not yet reaped is a zombie: gone, for this purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
