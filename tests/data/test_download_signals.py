"""A download stopped by a signal, in a ``pyro-vae`` process of its own: Ctrl-C (SIGINT) and
SIGTERM end ``data get`` and the fetch inside ``train`` at once, with the shell's status and one
line, leaving no temporary file and no folder the fetch created; a download killed outright
(SIGKILL) leaves its temporary file, which the next fetch of that file removes.

The mirror is a loopback server (:mod:`loopback`) that sends half the file, or nothing, and
then waits for the test to end: the process can only have stopped because of the signal. Each
signal is sent once the server has sent what it will send, waited for with a deadline that
bounds a failure only."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import loopback
import pytest

from pyro_vae.data import downloads
from pyro_vae.data.downloads import RemoteFile

BODY = bytes(range(256)) * 100  # never read: the signal comes first
PLUGIN = """
from pyro_vae import Download, RemoteFile, register_download

register_download(
    Download("plugged", (RemoteFile("p.npy", {size}, "sha256:{sha256}", ("{url}/p/",)),),
             lambda folder: {{}}, "A plugin's dataset.")
)
"""
#: a bound on a failure, never reached by a passing test (a process that starts torch, on a busy machine)
DEADLINE = 120


@pytest.fixture
def mirror():
    with loopback.serve() as server:
        server.files["/p/p.npy"] = BODY
        yield server


def as_at_a_terminal() -> None:
    """Ctrl-C's default action in the child, as a shell gives a command it runs in the foreground:
    a test run started in the background (``cmd &``) ignores SIGINT, and its children inherit
    that, which ``raising`` rightly leaves alone."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(command: str, mirror, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """``pyro-vae data get plugged`` or ``pyro-vae train`` on it, in a process group of its own;
    the dataset's folder."""
    plugin = tmp_path / "plugged.py"
    plugin.write_text(PLUGIN.format(size=len(BODY), sha256=hashlib.sha256(BODY).hexdigest(), url=mirror.url))
    cache = tmp_path / "cache"
    words = {
        "data get": ["data", "get", "plugged", "--dir", str(cache), "--plugins", str(plugin)],
        "train": [
            "train",
            "--plugins",
            str(plugin),
            "--data.name",
            "plugged",
            "--train.run_dir",
            str(tmp_path / "run"),
        ],
    }[command]
    env = {**os.environ, downloads.DATA_ENV: str(cache), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pyro_vae", *words, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_at_a_terminal,
    )
    return process, cache / "plugged"


def signalled(process: subprocess.Popen, mirror, signum: int) -> tuple[int, str]:
    """Send ``signum`` once the mirror has sent what it will; the status and stderr. The process
    group is killed if the test fails on the way."""
    try:
        deadline = time.monotonic() + DEADLINE
        while not mirror.arrived.wait(0.1):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the request never reached the mirror"
        process.send_signal(signum)
        _, err = process.communicate(timeout=DEADLINE)
        return process.returncode, err
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


CASES = [
    pytest.param(command, signum, mode, id=f"{command.replace(' ', '-')}-{signum.name}-{mode}")
    for command, signum, mode in [
        ("data get", signal.SIGINT, "hold"),
        ("data get", signal.SIGTERM, "hold"),
        ("data get", signal.SIGINT, "silent"),
        ("data get", signal.SIGTERM, "silent"),
        ("train", signal.SIGTERM, "hold"),  # torch takes seconds to start: two cases, not four
        ("train", signal.SIGINT, "silent"),
    ]
]


@pytest.mark.slow
@pytest.mark.parametrize("command, signum, mode", CASES)
def test_a_signal_stops_the_download_at_once_and_leaves_nothing(mirror, tmp_path, command, signum, mode):
    """Half the file sent (``hold``), or nothing (``silent``: without the signal, only the 30 s
    read timeout would end it, with status 2)."""
    getattr(mirror, mode).add("/p/p.npy")
    process, folder = start(command, mirror, tmp_path)
    status, err = signalled(process, mirror, signum)
    line = (
        f"pyro-vae: stopped by {signum.name} while fetching p.npy into {folder} (no partial file is kept)\n"
    )
    assert (status, err) == (128 + signum, line)
    assert not folder.parent.exists()  # no temporary file, no dataset folder, no cache: all made by it
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_next_fetch_removes_what_a_killed_download_left(mirror, tmp_path):
    mirror.hold.add("/p/p.npy")
    process, folder = start("data get", mirror, tmp_path)
    status, _ = signalled(process, mirror, signal.SIGKILL)
    assert status == -signal.SIGKILL
    left = [p.name for p in folder.iterdir()]
    assert len(left) == 1 and left[0].startswith(".p.npy.") and left[0].endswith(".part")

    mirror.hold.clear()
    file = RemoteFile("p.npy", len(BODY), f"sha256:{hashlib.sha256(BODY).hexdigest()}", (f"{mirror.url}/p/",))
    assert downloads.fetch(file, folder).read_bytes() == BODY
    assert [p.name for p in folder.iterdir()] == ["p.npy"]
