"""Files and directories a crash never leaves half-written, and errors that say which path failed.

* :func:`atomic_write` writes to a temporary name beside the target and renames it over the
  target (``os.replace`` is atomic on POSIX and Windows), so a reader sees the old file or the
  new one, never half of one. With ``sync`` the data is flushed to disk (``fsync``) before the
  rename and the directory after it, so that the rename survives a power cut too (what a
  checkpoint needs). A failed write removes its temporary file.
* :func:`make_dir` creates a directory and its parents, or says in one line why it cannot.
* :func:`lock_dir` holds an exclusive advisory lock (``flock``) on a directory for as long as a
  process trains in it; the kernel drops the lock when the process dies, even by ``kill -9``.

Every ``OSError`` (permission denied, a file where a directory should be, a full disk) becomes
a :class:`~pyro_vae.core.errors.RunDirError` naming the path, which the CLI prints as one line.
"""

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from pyro_vae.core.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second writer is not detected there
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class InUse(RunDirError):
    """Another process holds the directory's lock."""


def temporary(path: Path) -> Path:
    """The temporary name :func:`atomic_write` writes ``path`` under."""
    return path.with_name(f".{path.name}.tmp")


def atomic_write(path: Path, write: Callable[[Path], object], *, sync: bool = False) -> None:
    """Call ``write(tmp)`` to write the new contents to a temporary file, then rename it onto
    ``path``; with ``sync``, flush the file and then the directory to disk."""
    path = Path(path)
    tmp = temporary(path)
    try:
        write(tmp)
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if sync:
            _sync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {str(path)!r}: {_reason(e)}") from None
    except BaseException:  # an interrupt or a failing writer: no half-written temporary file
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line in one ``write`` (a reader may see a torn last line after a crash, never
    a torn line in the middle)."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        raise RunDirError(f"cannot write {str(path)!r}: {_reason(e)}") from None


def make_dir(path: Path, what: str = "directory") -> Path:
    """Create ``path`` and its parents; one line naming ``what`` and the path if that fails."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{what} {str(path)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create {what} {str(path)!r}: {_reason(e)}") from None
    try:  # a real write: permission bits do not stop root, an immutable or read-only mount does
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise RunDirError(f"cannot write in {what} {str(path)!r}: {_reason(e)}") from None
    return path


@contextlib.contextmanager
def lock_dir(path: Path, what: str = "run directory") -> Iterator[None]:
    """Hold an exclusive lock on directory ``path``; refuse if another process holds it.

    The lock is ``flock`` on the file ``.lock``, which the holder removes as it lets go, so a
    directory no process works in holds no ``.lock``. A process that took the lock on a file
    removed meanwhile (its holder let go) takes it again on the new one."""
    if fcntl is None:
        yield
        return
    lock = Path(path) / LOCK
    while True:
        try:
            f = open(lock, "a+")  # noqa: SIM115 (closed below, after the lock is let go)
        except OSError as e:
            raise RunDirError(f"cannot lock {what} {str(path)!r}: {_reason(e)}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise InUse(
                f"{what} {str(path)!r} is in use by {holder}; wait for it to finish, or choose "
                "another directory"
            ) from None
        if _same_file(f, lock):
            break
        f.close()  # locked a file its holder removed as it let go: lock the one there now
    with f:
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()  # while still held: no other process can hold this file now
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _same_file(f, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except OSError:
        return False


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(e: OSError) -> str:
    return e.strerror.lower() if e.strerror else str(e)
