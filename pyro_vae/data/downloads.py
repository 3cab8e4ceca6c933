"""Fetching data files into the user's cache: mirrors in turn, a size and a checksum, no partial file.

A :class:`RemoteFile` is one published file: its name, its size in bytes, its published
checksum (``"sha256:…"`` or ``"md5:…"``) and the mirrors (base URLs) that serve it.
:func:`fetch` puts it in a directory:

* a file already there is used as it is when its size is right (no request is made), and
  refused, with the line saying so, when its size is wrong;
* otherwise each mirror is tried in order: the user's own first (``PYRO_VAE_DATA_MIRROR``,
  one or more base URLs separated by spaces), then the file's. The bytes go to a temporary
  file in the target directory (:class:`~pyro_vae.data.cache_files.Partial`), are checked
  (size, then checksum) and renamed into place, so that the directory holds the whole, checked
  file or nothing, also when several processes fetch at once. SIGINT and SIGTERM stop the
  download at once, remove the temporary file and raise
  :class:`~pyro_vae.core.interrupts.Interrupted`; the temporary file of a process killed
  outright (``kill -9``) is removed by the next fetch of that file;
* a wrong checksum, an HTTP error, a refused connection, a timeout (:data:`TIMEOUT` seconds
  without a byte) or a stall (under :data:`MIN_RATE` bytes/s over :data:`RATE_WINDOW` seconds)
  moves on to the next mirror; when none serves the file, a :class:`NotFetched` names the file
  and every URL tried with its reason, on one line. A password in a URL is shown as ``***``;
* a cache that cannot hold the file (a file where a folder goes, a read-only folder, a full
  disk) is a :class:`~pyro_vae.core.errors.DataError` naming the path, at once; the folders a
  failed fetch created are removed.

:func:`cache_dir` is where datasets live: ``PYRO_VAE_DATA``, else ``$XDG_CACHE_HOME/pyro-vae``,
else ``~/.cache/pyro-vae``. Nothing here touches the disk or the network until called.
"""

import base64
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pyro_vae.core import interrupts
from pyro_vae.core.errors import DataError
from pyro_vae.data.cache_files import DATA_ENV, ELSEWHERE, Partial, make_folder, remove_empty, remove_stale

MIRROR_ENV = "PYRO_VAE_DATA_MIRROR"
#: seconds a connection, or a read within it, may wait before the mirror counts as failed
TIMEOUT = 30.0
#: a download averaging under MIN_RATE bytes/s over a window of RATE_WINDOW seconds has
#: stalled: the mirror counts as failed (60 kB in a minute: no real progress)
MIN_RATE = 1000.0
RATE_WINDOW = 60.0
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
    """The one place a URL is opened (a test replaces it to keep off the internet). A user name
    and password in an HTTP URL (``http://user:pass@host/``) are sent as basic authentication,
    to that host only (not along a redirect)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None or parts.scheme not in ("http", "https"):
        return urllib.request.urlopen(url, timeout=timeout)
    request = urllib.request.Request(parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl())
    user = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    request.add_unredirected_header("Authorization", f"Basic {base64.b64encode(user.encode()).decode()}")
    return urllib.request.urlopen(request, timeout=timeout)


def shown(text: str, url: str) -> str:
    """``text`` with the password of ``url``'s ``user:password@`` replaced by ``***``."""
    userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    if ":" not in userinfo:
        return text
    return text.replace(f"{userinfo}@", f"{userinfo.partition(':')[0]}:***@")


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


class NotFetched(DataError):
    """No mirror served the file: the network, or the mirrors, failed (not the cache)."""


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
    remove_stale(directory, file.name)  # a killed download's temporary file
    try:
        found = path.stat().st_size if path.exists() else None
    except OSError as e:
        raise DataError(f"cannot read {path}: {_reason(e, 0)}; {ELSEWHERE}") from None
    if found is not None:
        if found != file.size:
            raise DataError(
                f"{path} has {found} bytes, not the published {file.size}: remove it to fetch it again"
            )
        return path
    created = make_folder(directory)
    try:
        with interrupts.raising(f"fetching {file.name} into {directory} (no partial file is kept)"):
            _try_mirrors(file, directory, folder, progress, timeout)
    except BaseException:
        remove_empty(created)
        raise
    return path


def _try_mirrors(file: RemoteFile, directory: Path, folder: str, progress: bool, timeout: float) -> None:
    tried = []
    for url in file.urls(folder):
        try:
            _download(url, file, directory, progress, timeout)
            return
        except _Failed as e:
            tried.append(shown(f"{url} ({e})", url))
    raise NotFetched(f"could not fetch {file.name}: {'; '.join(tried)}")


class _Failed(Exception):
    """One mirror did not serve the file; the message is the reason."""


def _download(url: str, file: RemoteFile, directory: Path, progress: bool, timeout: float) -> None:
    """Stream ``url`` to a temporary file beside the target, check it and rename it into place."""
    with Partial(directory, file.name) as partial:
        digest, size = _copy(url, partial, file, progress, timeout)
        if size != file.size:
            raise _Failed(f"{size} bytes, not the published {file.size}")
        if digest != file.digest:
            raise _Failed(f"{file.algorithm} {digest} is not the published {file.digest}")
        partial.keep()


def _copy(url: str, partial: Partial, file: RemoteFile, progress: bool, timeout: float) -> tuple[str, int]:
    """Copy what ``url`` serves to the temporary file; return its checksum and its size."""
    from tqdm.auto import tqdm

    hasher = hashlib.new(file.algorithm)
    size, pace = 0, _Pace(MIN_RATE, RATE_WINDOW)
    bar = tqdm(
        total=file.size, unit="B", unit_scale=True, desc=file.name, file=sys.stderr, disable=not progress
    )
    try:
        with bar, open_url(url, timeout) as response:  # the bar closes, whatever fails
            read = getattr(response, "read1", response.read)  # what came, not a whole block: a trickle shows
            while block := read(_BLOCK):
                if size + len(block) > file.size:  # a wrong file, or an endless one: stop reading
                    raise _Failed(f"more than the published {file.size} bytes")
                _write(partial, block)
                hasher.update(block)
                size += len(block)
                bar.update(len(block))
                pace.check(size)
    except DataError:
        raise
    except urllib.error.HTTPError as e:
        raise _Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Failed(_reason(e.reason, timeout)) from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeout, reset, cut short; bad URL
        raise _Failed(_reason(e, timeout)) from None
    return hasher.hexdigest(), size


class _Pace:
    """Refuses a download slower than ``rate`` bytes/s on average over each ``window`` seconds
    (a per-read timeout alone lets a mirror that sends a byte now and then hold on for ever)."""

    def __init__(self, rate: float, window: float):
        self.rate, self.window = rate, window
        self.start, self.size = time.monotonic(), 0

    def check(self, size: int) -> None:
        now = time.monotonic()
        if now - self.start < self.window:
            return
        if size - self.size < self.rate * (now - self.start):
            raise _Failed(f"stalled: under {self.rate:g} bytes/s over {self.window:g} s")
        self.start, self.size = now, size


def _write(partial: Partial, block: bytes) -> None:
    try:
        partial.file.write(block)
    except OSError as e:  # a full disk: the cache's problem, not the mirror's
        raise DataError(f"cannot write {partial.path}: {_reason(e, 0)}; {ELSEWHERE}") from None


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
