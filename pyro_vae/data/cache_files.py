"""The cache's side of a download: its folders, and the temporary file a download writes.

* :func:`make_folder` creates a dataset's folder and its missing parents, or says in one line
  which path is in the way (a file where a directory goes) or cannot be written, and what to
  do; :func:`remove_empty` takes back the folders a failed fetch created.
* :class:`Partial` is the temporary file ``.NAME.XXXXXXXX.part`` that a download writes beside
  ``NAME``: renamed into place when whole and checked, removed otherwise (after an error or a
  signal). While it is open its writer holds an exclusive ``flock`` on it, which the kernel
  drops when the process dies, even by ``kill -9``.
* :func:`remove_stale` removes the temporary files of ``NAME`` that no living process holds:
  those a killed download left. Another process's download in progress holds its lock, so
  several processes can fetch into one cache at once. Where there is no ``flock`` (Windows),
  or the file system refuses it, nothing is taken for stale.
"""

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from pyro_vae.core.errors import DataError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no temporary file is known to be stale
    fcntl = None  # type: ignore[assignment]

DATA_ENV = "PYRO_VAE_DATA"
SUFFIX = ".part"
#: what to do instead, at the end of each line about a cache that cannot be used
ELSEWHERE = f"use another cache ({DATA_ENV}=DIR, or `pyro-vae data get --dir DIR`)"


def make_folder(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return the folders created, deepest first."""
    missing, path = [], directory
    while not _is_dir(path, directory):
        if path.exists() or path.is_symlink():
            where = f"cannot fetch into {directory}: {path} is a file, not a directory"
            raise DataError(f"{where}; move it away, or {ELSEWHERE}")
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # made meanwhile by another process fetching: as good
            if not path.is_dir():
                remove_empty(missing)
                raise DataError(f"cannot fetch into {directory}: {path} is a file, not a directory") from None
        except OSError as e:
            remove_empty(missing)
            raise DataError(f"cannot create {path}: {_reason(e)}; {_advice(e)}") from None
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) as long as they are empty: what a failed fetch made."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty (a file, another process's download), or not ours to remove
            return


class Partial:
    """The temporary file ``directory/.NAME.XXXXXXXX.part`` of ``directory/NAME``, written as
    ``.file`` and locked while open; :meth:`keep` renames it into place, and leaving the
    ``with`` block without keeping it removes it."""

    def __init__(self, directory: Path, name: str):
        self.target = directory / name
        fd, self.path = _locked_temporary(directory, name)
        self.file = os.fdopen(fd, "wb")
        self.kept = False

    def __enter__(self) -> "Partial":
        return self

    def keep(self) -> None:
        """Flush it to disk and rename it to its name (still locked: no other fetch removes it)."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())  # the renamed file is on disk, not only in the page cache
            os.chmod(self.path, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared cache
            if fcntl is None:
                self.file.close()  # Windows renames no open file
            os.replace(self.path, self.target)
        except OSError as e:
            raise DataError(f"cannot write {self.target}: {_reason(e)}; {_advice(e)}") from None
        self.kept = True

    def __exit__(self, *error) -> None:
        self.file.close()  # drops the lock
        if not self.kept:
            self.path.unlink(missing_ok=True)  # after a failure, or a signal: no partial file


def remove_stale(directory: Path, name: str) -> list[Path]:
    """Remove the temporary files of ``directory/name`` that no process holds; return them."""
    if fcntl is None:
        return []
    removed = []
    with contextlib.suppress(OSError):  # no folder yet, or one that cannot be read: nothing to do
        for path in directory.iterdir():
            if path.name.startswith(f".{name}.") and path.name.endswith(SUFFIX) and _remove_if_unheld(path):
                removed.append(path)
    return removed


def _remove_if_unheld(path: Path) -> bool:
    """Remove ``path`` if no process holds its lock; whether it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # gone meanwhile, or another user's
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()  # still locked: its name is not reused before it is gone
        return True
    except OSError:  # held by a download in progress (or no locks here): not ours to remove
        return False
    finally:
        os.close(fd)


def _locked_temporary(directory: Path, name: str) -> tuple[int, Path]:
    """A new temporary file beside ``directory/name``, open and locked."""
    while True:
        try:
            fd, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=SUFFIX)
        except OSError as e:
            raise DataError(f"cannot write in {directory}: {_reason(e)}; {_advice(e)}") from None
        if fcntl is None:
            return fd, Path(path)
        with contextlib.suppress(OSError):  # a file system without locks: unlocked, never stale
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            ours = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            ours = False
        if ours:
            return fd, Path(path)
        os.close(fd)  # another fetch removed it before it was locked, as a dead one's: once more


def _is_dir(path: Path, directory: Path) -> bool:
    try:
        return path.is_dir()
    except OSError as e:
        raise DataError(f"cannot fetch into {directory}: {path}: {_reason(e)}; {ELSEWHERE}") from None


def _advice(e: OSError) -> str:
    if isinstance(e, PermissionError) or e.errno == errno.EROFS:
        return f"make it writable, or {ELSEWHERE}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free some space there, or {ELSEWHERE}"
    return ELSEWHERE


def _umask() -> int:
    mask = os.umask(0)  # reading the mask means setting it: put it straight back
    os.umask(mask)
    return mask


def _reason(e: OSError) -> str:
    return e.strerror.lower() if e.strerror else str(e)
