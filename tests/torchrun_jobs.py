"""torchrun jobs for the tests: the pyro-vae command line on several processes of this machine
(with the test hooks of tests/stop_after.py), their output, and their clean-up."""

import contextlib
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parent / "stop_after.py"
ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--model.encoder.hidden", "[32]", "--model.decoder.hidden", "[32]", "--train.device", "cpu",
    "--model.latent_dim", "4",
    "--train.compile", "false",  # not chosen by timing: the same path in every run compared
]  # fmt: skip
TIMEOUT = 240


def free_port() -> int:
    """A port to name on a command line, free now and below the kernel's ephemeral range (32768
    and up on Linux), from which every bind to port 0 is served: the other test worker's torchrun
    jobs (--standalone) take theirs there, and could take this one between its choice and its use,
    joining the wrong job, which then waits forever (seen once under pytest-xdist)."""
    for _ in range(100):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


def torchrun(
    args: list[str],
    *,
    nproc: int = 2,
    env: dict | None = None,
    launcher: list[str] | None = None,
    session: bool = False,
):
    """A job of ``nproc`` processes running the pyro-vae command line (with the test hooks); with
    ``session``, in a process group of its own."""
    launcher = launcher or ["--standalone", f"--nproc-per-node={nproc}"]
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *launcher, str(HOOK), *args, "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=session,
    )


def finish(job: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    try:
        out, err = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.kill()
        out, err = job.communicate()
        pytest.fail(f"the job did not end within {timeout} s:\n{err[-3000:]}")
    return job.returncode, out, err


def run_job(args, **kwargs) -> str:
    code, out, err = finish(torchrun(args, **kwargs))
    assert code == 0, err[-3000:]
    return out


def our_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("pyro-vae:")]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def read_until(job: subprocess.Popen, done, timeout: float) -> str:
    """The job's stderr up to the first line for which ``done`` holds."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in job.stderr], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not (seen and done(seen[-1])):
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"no such line within {timeout} s:\n{''.join(seen)[-3000:]}")
    return "".join(seen)
