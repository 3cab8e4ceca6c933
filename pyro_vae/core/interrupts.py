"""SIGINT and SIGTERM as requests to stop at the next step boundary.

While :func:`catching` is active, Ctrl-C (SIGINT) and ``kill`` (SIGTERM) only set
``Signals.received``; the training loop reads that flag (a Python attribute, no device sync)
after every step, writes a checkpoint and raises :class:`Interrupted`, which the CLI turns
into one line and the shell's exit status for the signal (130 for SIGINT, 143 for SIGTERM).
A second signal while the checkpoint is being written changes nothing: the write finishes.
Handlers can be installed only in the main thread; elsewhere signals keep their defaults.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator

from pyro_vae.core.errors import PyroVAEError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(PyroVAEError):
    """Training stopped on a signal, after writing a checkpoint."""

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
