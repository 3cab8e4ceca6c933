"""SIGINT and SIGTERM as requests to stop: at the next step boundary, or at once.

* While :func:`catching` is active, Ctrl-C (SIGINT) and ``kill`` (SIGTERM) only set
  ``Signals.received``; the training loop reads that flag (a Python attribute, no device sync)
  after every step, writes a checkpoint and raises :class:`Interrupted`. A second signal while
  the checkpoint is being written changes nothing: the write finishes.
* While :func:`raising` is active (a download), either signal raises where the program is, so
  that its ``finally`` blocks run (a temporary file is removed), even from a blocking socket
  read; the block then ends with :class:`Interrupted`. SIGTERM's default would end the process
  without running them. A signal the process ignores, or handles its own way, is left so.

The CLI turns :class:`Interrupted` into one line and the shell's exit status for the signal
(130 for SIGINT, 143 for SIGTERM). Handlers can be installed only in the main thread;
elsewhere signals keep their defaults.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from pyro_vae.core.errors import PyroVAEError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(PyroVAEError):
    """Training stopped on a signal, after writing a checkpoint; or a download, leaving no partial file."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        #: the shell's status for a process ended by the signal
        self.exit_status = 128 + signum


class Signals:
    """The first stop signal received while :func:`catching` is active, if any."""

    def __init__(self):
        self.received: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum, frame) -> None:
        self.received = self.received or signum


@contextlib.contextmanager
def catching() -> Iterator[Signals]:
    """Turn SIGINT and SIGTERM into a flag for the duration; restore the old handlers after."""
    signals = Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return
    old = {s: signal.signal(s, signals._handle) for s in SIGNALS}
    try:
        yield signals
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class _Stop(BaseException):
    """A signal received inside :func:`raising`: a ``BaseException``, so that no ``except
    Exception`` on the way up takes it for an ordinary failure."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


#: the handlers :func:`raising` replaces: Python's own and the system's default action
_DEFAULTS = (signal.default_int_handler, signal.SIG_DFL)


@contextlib.contextmanager
def raising(what: str) -> Iterator[None]:
    """Make SIGINT and SIGTERM raise at once for the duration, where they have their default
    handlers; the block then raises ``Interrupted("stopped by SIGNAME while WHAT", signum)``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    stopped: list[int] = []

    def stop(signum, frame):
        if not stopped:  # a second signal would break off the cleanup the first one started
            stopped.append(signum)
            raise _Stop(signum)

    old: dict[signal.Signals, Any] = {}
    try:
        for s in SIGNALS:
            if signal.getsignal(s) in _DEFAULTS:
                old[s] = signal.signal(s, stop)
        yield
    except _Stop as e:
        name = signal.Signals(e.signum).name
        raise Interrupted(f"stopped by {name} while {what}", e.signum) from None
    finally:
        with _held(list(old)):  # a signal now waits for the old handler, which then takes it
            for s, handler in old.items():
                signal.signal(s, handler)


@contextlib.contextmanager
def _held(signals: list[int]) -> Iterator[None]:
    """Hold ``signals`` back (POSIX) for the duration; one that came meanwhile is delivered after."""
    if not signals or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
