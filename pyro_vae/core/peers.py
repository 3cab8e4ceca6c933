"""When a process of several fails, is lost or hangs: the one line that says so.

The processes of a torchrun job (:mod:`pyro_vae.core.distributed`) leave notes for each other in
torchrun's key-value store, which outlives any one of them:

* ``pid/R``: where process R runs (host and pid), written when it joins;
* ``error/R``: an error of pyro-vae's (a bad file, a full disk) that process R prints itself;
* ``crash/R``: an error that is not pyro-vae's (a bug, whose traceback R prints), written as
  R leaves;
* ``timeout/R``: process R waited :func:`timeout_seconds` at a collective in vain.

A process whose collective fails because of another (:func:`lost_peer`: a closed connection, a
timeout, in gloo's, NCCL's or DistributedDataParallel's words) reads them to name that other
process in one line (:func:`failure_line`), printed by one process only.
"""

import os
import re
import socket
import time
from typing import TYPE_CHECKING

import torch.distributed as dist

if TYPE_CHECKING:
    from pyro_vae.core.distributed import World

#: seconds a collective waits for a process that neither answers nor dies (a hung process)
TIMEOUT_ENV = "PYRO_VAE_TIMEOUT"
_NOTE = "pyro_vae/"
#: seconds a process whose collective failed waits for the others' notes
_WAIT = 2.0
#: the words of a collective's failure caused by another process (gloo, NCCL, DDP's hook, the store)
_LOST = re.compile(
    r"gloo|nccl|pair closure|connection (?:closed|reset) by peer|broken pipe|timed out|timeout", re.I
)
_TIMEOUT = re.compile(r"timed out|timeout", re.I)


def timeout_seconds() -> float:
    """The collectives' timeout: ``PYRO_VAE_TIMEOUT`` seconds, 600 by default."""
    return float(os.environ.get(TIMEOUT_ENV, 600))


def _store():
    return dist.distributed_c10d._get_default_store() if dist.is_initialized() else None


def note(key: str, value: str) -> None:
    """Leave ``value`` under ``key`` for the other processes (nothing, where the store is gone)."""
    try:
        store = _store()
        if store is not None:
            store.set(_NOTE + key, value)
    except Exception:  # the store went with a dead process: nothing left to tell
        pass


def _read(key: str) -> str | None:
    """A note another process left, or None."""
    try:
        store = _store()
        if store is not None and store.check([_NOTE + key]):
            return store.get(_NOTE + key).decode()
    except Exception:
        pass
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from or during."""
    seen: list[BaseException] = []
    while error is not None and error not in seen and len(seen) < 8:
        seen.append(error)
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return seen


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process stopped, left or did
    not answer in time."""
    return any(
        isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and _LOST.search(str(e)) is not None)
        for e in _chain(error)
    )


def timed_out(error: BaseException) -> bool:
    """Whether ``error`` is a collective that waited its timeout in vain (gloo's "Application
    timeout caused pair closure", NCCL's watchdog, the store's wait)."""
    return lost_peer(error) and any(_TIMEOUT.search(str(e)) for e in _chain(error))


def note_crash(error: BaseException, rank: int) -> None:
    """Leave word that process ``rank`` stops on ``error``, an error that is not pyro-vae's."""
    text = str(error).splitlines()[0][:160] if str(error) else ""
    note(f"crash/{rank}", f"{type(error).__name__}: {text}" if text else type(error).__name__)


def failure_line(error: BaseException, w: "World") -> str | None:
    """The one line this process prints about ``error``, or None when another says it.

    A process's own error is left in the store: rank 0 prints its own; another process prints
    its own unless rank 0 failed with the same one (a config every process was given). A
    process that lost a peer waits for the others' notes, then says what the lowest process
    that lost it knows: which process failed (a bug), was killed, or did not answer in time.
    """
    if w.size == 1:
        return str(error)
    if not lost_peer(error):
        note(f"error/{w.rank}", str(error))
        if w.main or _waited(lambda: _read("error/0"), _WAIT + 1.0) != str(error):
            return str(error) if w.main else f"process {w.rank} of {w.size}: {error}"
        return None
    hung = timed_out(error)
    if hung:
        note(f"timeout/{w.rank}", "")
    others = [r for r in range(w.size) if r != w.rank]
    # a failing process leaves its note before it exits, a timed-out one as soon as it fails
    words = _waited(lambda: _words(others, full=True), _WAIT) or _words(others)
    if any(kind == "error" for kind, _ in words.values()):
        return None  # the failed process says what happened itself
    if crashed := [r for r, (kind, _) in words.items() if kind == "crash"]:
        r = crashed[0]
        return _said_by(
            w,
            crashed,
            f"process {r} of {w.size} failed with {words[r][1]} (its traceback is above); "
            f"process {w.rank} stops too",
        )
    if gone := [r for r, (kind, _) in words.items() if kind == "gone"]:
        ranks = ", ".join(map(str, gone))
        return _said_by(
            w,
            gone,
            f"process {ranks} of {w.size} stopped without a word (killed, or out of memory?); "
            f"process {w.rank} stops too",
        )
    seconds = f"{timeout_seconds():g} s ({TIMEOUT_ENV})"
    advice = f"find what stopped it, or raise {TIMEOUT_ENV} if a process may rightly work alone that long"
    silent = [r for r, (kind, _) in words.items() if kind == "silent"]
    if hung and silent:
        ranks = ", ".join(map(str, silent))
        return _said_by(
            w,
            silent,
            f"process {ranks} of {w.size} did not answer within {seconds}: stopped or hung? "
            f"process {w.rank} stops too; {advice}",
        )
    if not w.main:
        return None
    if hung:
        return f"the processes waited {seconds} at a collective in vain; process {w.rank} stops too; {advice}"
    detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    return f"lost contact with another process of the job ({detail}); process {w.rank} stops too"


def _said_by(w: "World", named: list[int], line: str) -> str | None:
    """``line``, where this is the lowest process not among those ``named``; else None."""
    return line if w.rank == min(r for r in range(w.size) if r not in named) else None


def _words(ranks: list[int], *, full: bool = False) -> dict:
    """What each of ``ranks`` left word of: ``(kind, text)`` with kind "error", "crash" or
    "timeout", else "gone" (dead without a word) or "silent" (alive, no word). With ``full``,
    nothing until every process has left word or died."""
    words = {}
    for r in ranks:
        for kind in ("error", "crash", "timeout"):
            if (text := _read(f"{kind}/{r}")) is not None:
                words[r] = (kind, text)
                break
        else:
            words[r] = ("silent", "") if _alive(_read(f"pid/{r}")) else ("gone", "")
    if full and any(kind == "silent" for kind, _ in words.values()):
        return {}  # not yet
    return words


def _waited(read, seconds: float):
    """``read()``'s first value that is not None or empty, within ``seconds`` (else the last)."""
    deadline = time.monotonic() + seconds
    while not (value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _alive(pid_note: str | None) -> bool:
    """Whether the process a ``pid`` note names still runs (assumed so on another machine)."""
    if pid_note is None:
        return True
    host, _, pid = pid_note.partition(" ")
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
