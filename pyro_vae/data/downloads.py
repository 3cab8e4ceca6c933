"""Fetching data files into the user's cache: mirrors in turn, a size and a checksum, no partial file.

A :class:`RemoteFile` is one published file: its name, its size in bytes, its published
checksum (``"sha256:…"`` or ``"md5:…"``) and the mirrors (base URLs) that serve it.
:func:`fetch` puts it in a directory:

* a file already there is used as it is when its size is right (no request is made), and
  refused, with the line saying so, when its size is wrong;
* otherwise each mirror is tried in order: the user's own first (``PYRO_VAE_DATA_MIRROR``,
  one or more base URLs separated by spaces), then the file's. The bytes go to a temporary
  file in the target directory, are checked (size, then checksum) and renamed into place, so
  that the directory holds the whole, checked file or nothing, also when several processes
  fetch at once or one is killed;
* a wrong checksum, an HTTP error, a refused connection or a timeout moves on to the next
  mirror; when none serves the file, a :class:`~pyro_vae.core.errors.DataError` names the file and
  every URL tried with its reason, on one line.

:func:`cache_dir` is where datasets live: ``PYRO_VAE_DATA``, else ``$XDG_CACHE_HOME/pyro-vae``,
else ``~/.cache/pyro-vae``. Nothing here touches the disk or the network until called.
"""

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pyro_vae.core.errors import DataError

DATA_ENV = "PYRO_VAE_DATA"
MIRROR_ENV = "PYRO_VAE_DATA_MIRROR"
#: seconds a connection, or a read within it, may wait before the mirror counts as failed
TIMEOUT = 30.0
_ALGORITHMS = ("sha256", "md5")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One published file: ``name``, ``size`` in bytes, ``checksum`` as ``"ALGORITHM:HEX"``
    (sha256 or md5, as published) and the ``mirrors`` that serve it (base URLs; the file's
    URL is the base URL followed by its name)."""

    name: str
    size: int
    checksum: str
    mirrors: tuple[str, ...]

    def __post_init__(self):
        algorithm, _, digest = self.checksum.partition(":")
        if algorithm not in _ALGORITHMS or not digest:
            raise ValueError(f"checksum {self.checksum!r} of {self.name}: expected sha256:HEX or md5:HEX")

    @property
    def algorithm(self) -> str:
        return self.checksum.partition(":")[0]

    @property
    def digest(self) -> str:
        return self.checksum.partition(":")[2].lower()

    def urls(self, folder: str = "") -> list[str]:
        """Where to fetch it, in order: the user's mirrors (``BASE/folder/name``, the layout of
        the cache, so that a cache directory served over HTTP is a mirror), then its own."""
        user = [f"{base.rstrip('/')}/{folder + '/' if folder else ''}{self.name}" for base in user_mirrors()]
        return user + [f"{base.rstrip('/')}/{self.name}" for base in self.mirrors]


def open_url(url: str, timeout: float) -> IO[bytes]:
    """The one place a URL is opened (a test replaces it to keep off the internet)."""
    return urllib.request.urlopen(url, timeout=timeout)


def cache_dir(directory: str | Path | None = None) -> Path:
    """The directory datasets are kept in: ``directory`` when given, else ``$PYRO_VAE_DATA``,
    else ``$XDG_CACHE_HOME/pyro-vae``, else ``~/.cache/pyro-vae`` (nothing is created)."""
    if directory is not None:
        return Path(directory).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pyro-vae"


def user_mirrors() -> list[str]:
    return os.environ.get(MIRROR_ENV, "").split()


def is_cached(file: RemoteFile, directory: Path) -> bool:
    """Whether ``directory`` holds ``file`` at its published size (the checksum is not read)."""
    path = directory / file.name
    return path.is_file() and path.stat().st_size == file.size


def fetch(
    file: RemoteFile,
    directory: Path,
    *,
    folder: str = "",
    progress: bool = False,
    timeout: float = TIMEOUT,
) -> Path:
    """``directory / file.name``, fetched and checked first if it is not there (see the module's
    docstring); ``folder`` is the file's folder on a user's mirror. ``progress`` shows a bar
    on stderr."""
    path = directory / file.name
    if path.exists():
        found = path.stat().st_size
        if found != file.size:
            raise DataError(
                f"{path} has {found} bytes, not the published {file.size}: remove it to fetch it again"
            )
        return path
    tried = []
    for url in file.urls(folder):
        try:
            _download(url, file, directory, progress, timeout)
            return path
        except _Failed as e:
            tried.append(f"{url} ({e})")
    raise DataError(f"could not fetch {file.name}: {'; '.join(tried)}")


class _Failed(Exception):
    """One mirror did not serve the file; the message is the reason."""


def _download(url: str, file: RemoteFile, directory: Path, progress: bool, timeout: float) -> None:
    """Stream ``url`` to a temporary file beside the target, check it and rename it into place."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{file.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _copy(url, out, file, progress, timeout)
            out.flush()
            os.fsync(out.fileno())  # the renamed file is on disk, not only in the page cache
        if size != file.size:
            raise _Failed(f"{size} bytes, not the published {file.size}")
        if digest != file.digest:
            raise _Failed(f"{file.algorithm} {digest} is not the published {file.digest}")
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared cache from others
        os.replace(temporary, directory / file.name)
    finally:
        Path(temporary).unlink(missing_ok=True)  # after a failure, or a Ctrl-C, no partial file


def _copy(url: str, out: IO[bytes], file: RemoteFile, progress: bool, timeout: float) -> tuple[str, int]:
    """Copy what ``url`` serves to ``out``; return its checksum and its size."""
    from tqdm.auto import tqdm

    hasher = hashlib.new(file.algorithm)
    size = 0
    bar = tqdm(
        total=file.size, unit="B", unit_scale=True, desc=file.name, file=sys.stderr, disable=not progress
    )
    try:
        with bar, open_url(url, timeout) as response:  # the bar closes, whatever fails
            while block := response.read(_BLOCK):
                if size + len(block) > file.size:  # a wrong file, or an endless one: stop reading
                    raise _Failed(f"more than the published {file.size} bytes")
                out.write(block)
                hasher.update(block)
                size += len(block)
                bar.update(len(block))
    except urllib.error.HTTPError as e:
        raise _Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Failed(_reason(e.reason, timeout)) from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeout, reset, cut short; bad URL
        raise _Failed(_reason(e, timeout)) from None
    return hasher.hexdigest(), size


def _umask() -> int:
    mask = os.umask(0)  # reading the mask means setting it: put it straight back
    os.umask(mask)
    return mask


def _reason(error: BaseException | str, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def fetch_all(
    files: Sequence[RemoteFile], directory: Path, *, folder: str = "", progress: bool = False
) -> list[Path]:
    """:func:`fetch` each file in turn."""
    return [fetch(f, directory, folder=folder, progress=progress) for f in files]
