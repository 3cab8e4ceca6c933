"""The one line a process of several says when another fails, is killed or hangs: in real
torchrun jobs, and from the notes the processes leave in a store (an in-memory one) for each
case the jobs cannot stage quickly."""

import contextlib
import os
import signal
import socket
import time

import pytest
import torch.distributed as dist

from pyro_vae.core import distributed, peers
from pyro_vae.core.distributed import World
from tests.torchrun_jobs import SMALL, children, finish, our_lines, read_until, torchrun

#: the errors a collective raises when another process stops, in the words of torch 2's gloo,
#: DistributedDataParallel's communication hook and NCCL's watchdog
TIMED_OUT = [
    "Got the following error when running the callback: "
    "RuntimeError: Application timeout caused pair closure",
    "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] "
    "Timed out waiting 20000ms for recv operation to complete",
    "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE, "
    "Timeout(ms)=20000) ran for 20001 milliseconds before timing out.",
]
CLOSED = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"
ADVICE = "find what stopped it, or raise PYRO_VAE_TIMEOUT if a process may rightly work alone that long"


@pytest.fixture
def store(monkeypatch):
    """The notes' store, with this process standing for every other one that is alive."""
    store = dist.HashStore()
    monkeypatch.setattr(peers, "_store", lambda: store)
    monkeypatch.setattr(peers, "_WAIT", 0.2)
    monkeypatch.setenv("PYRO_VAE_TIMEOUT", "20")
    for rank in range(3):
        store.set(f"pyro_vae/pid/{rank}", f"{socket.gethostname()} {os.getpid()}")
    return store


@pytest.mark.parametrize("text", TIMED_OUT)
def test_a_collectives_timeout_names_the_process_that_did_not_answer(store, text):
    error = RuntimeError(text)
    assert peers.lost_peer(error) and peers.timed_out(error)
    assert peers.failure_line(error, World(0, 2)) == (
        f"process 1 of 2 did not answer within 20 s (PYRO_VAE_TIMEOUT): stopped or hung? process 0 "
        f"stops too; {ADVICE}"
    )
    assert store.check(["pyro_vae/timeout/0"])


def test_of_three_the_lowest_that_answered_names_the_one_that_did_not(store):
    store.set("pyro_vae/timeout/0", "")  # process 2 hung
    error = RuntimeError(TIMED_OUT[0])
    assert peers.failure_line(error, World(1, 3)) is None  # process 0 says it
    store.delete_key("pyro_vae/timeout/0")  # process 0 hung
    store.set("pyro_vae/timeout/2", "")
    assert peers.failure_line(error, World(1, 3)) == (
        f"process 0 of 3 did not answer within 20 s (PYRO_VAE_TIMEOUT): stopped or hung? process 1 "
        f"stops too; {ADVICE}"
    )


def test_processes_that_all_timed_out_are_said_so_by_process_0(store):
    store.set("pyro_vae/timeout/1", "")
    error = RuntimeError(TIMED_OUT[1])
    assert peers.failure_line(error, World(0, 2)) == (
        f"the processes waited 20 s (PYRO_VAE_TIMEOUT) at a collective in vain; process 0 stops too; {ADVICE}"
    )


def test_a_bug_in_another_process_is_named_with_its_error(store):
    store.set("pyro_vae/crash/1", "ZeroDivisionError: size cannot be zero")
    error = RuntimeError(CLOSED)
    assert peers.lost_peer(error) and not peers.timed_out(error)
    assert peers.failure_line(error, World(0, 2)) == (
        "process 1 of 2 failed with ZeroDivisionError: size cannot be zero (its traceback is above); "
        "process 0 stops too"
    )


def test_a_process_with_an_error_of_its_own_is_left_to_say_it(store):
    store.set("pyro_vae/error/1", "cannot write 'somewhere'")
    assert peers.failure_line(RuntimeError(CLOSED), World(0, 2)) is None


def test_errors_of_the_program_are_not_lost_peers():
    assert not peers.lost_peer(ZeroDivisionError("size cannot be zero"))
    assert not peers.lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_process_leaving_on_a_bug_leaves_word_of_it():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    store = dist.distributed_c10d._get_default_store()  # the notes' store, torchrun's under torchrun
    try:
        raise ZeroDivisionError("size cannot be zero")
    except ZeroDivisionError:
        distributed.leave()  # as the command line's ``finally`` does, with the error on its way out
    assert not dist.is_initialized()
    assert store.check(["pyro_vae/crash/0"])
    assert store.get("pyro_vae/crash/0").decode() == "ZeroDivisionError: size cannot be zero"


# -- torchrun jobs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_process_stops_the_job_with_one_line(tmp_path):
    env = {"STOP_AFTER": "5", "STOP_SIGNAL": "SIGKILL", "STOP_RANK": "1"}
    start = time.monotonic()
    code, _, err = finish(
        torchrun(["train", *SMALL, "--train.epochs", "50", "--train.run_dir", str(tmp_path / "r")], env=env),
        timeout=90,
    )
    assert code != 0 and time.monotonic() - start < 90
    lines = our_lines(err)
    assert len(lines) == 1 and "process 1 of 2 stopped" in lines[0], err[-3000:]


@pytest.mark.slow
def test_an_error_in_one_process_stops_the_job_with_its_line(tmp_path):
    env = {"STOP_AFTER": "5", "STOP_SIGNAL": "ERROR", "STOP_RANK": "1"}
    args = ["train", *SMALL, "--train.epochs", "50", "--train.run_dir", str(tmp_path / "r")]
    code, _, err = finish(torchrun(args, env=env), timeout=90)
    lines = our_lines(err)
    assert code != 0 and len(lines) == 1, err[-3000:]
    assert (
        lines[0]
        == "pyro-vae: error: process 1 of 2: cannot write 'somewhere': no space left on device (test, step 5)"
    )


#: a plugin that makes process 1's 4th loss fail with an error that is not pyro-vae's (a bug)
BUG = """
import os
import pyro_vae.training.step as step

if os.environ.get("RANK") == "1":
    forward, calls = step.Loss.forward, []

    def failing(self, x, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise ZeroDivisionError("size cannot be zero (test, step 4)")
        return forward(self, x, *args, **kwargs)

    step.Loss.forward = failing
"""


@pytest.mark.slow
def test_a_bug_in_one_process_is_named_by_process_0(tmp_path):
    plugin = tmp_path / "bug.py"
    plugin.write_text(BUG)
    args = ["train", *SMALL, "--train.epochs", "50", "--plugins", str(plugin)]
    args += ["--train.run_dir", str(tmp_path / "r")]
    code, _, err = finish(torchrun(args), timeout=120)
    assert code != 0 and "[rank1]: ZeroDivisionError" in err, err[-3000:]  # its traceback
    assert our_lines(err) == [
        "pyro-vae: error: process 1 of 2 failed with ZeroDivisionError: size cannot be zero (test, "
        "step 4) (its traceback is above); process 0 stops too"
    ], err[-3000:]


@pytest.mark.slow
def test_a_hung_process_is_named_after_the_timeout(tmp_path):
    """Process 1 stops for good after its 3rd step; process 0's next collective (DDP's all-reduce
    in backward) gives up after PYRO_VAE_TIMEOUT and says so in one line. torchrun would wait 30 s
    more for the stopped process: the job is ended once process 0 has."""
    env = {"PYRO_VAE_TIMEOUT": "10", "STOP_AFTER": "3", "STOP_SIGNAL": "SIGSTOP", "STOP_RANK": "1"}
    args = ["train", *SMALL, "--train.epochs", "50", "--train.run_dir", str(tmp_path / "r")]
    job = torchrun(args, env=env, session=True)
    try:
        # torchrun says it stops the others once process 0 has ended
        err = read_until(job, lambda line: "closing signal SIGTERM" in line, timeout=120)
    finally:
        for pid in [*children(job.pid), job.pid]:  # torchrun starts each process in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.communicate(timeout=60)
    assert our_lines(err) == [
        "pyro-vae: error: process 1 of 2 did not answer within 10 s (PYRO_VAE_TIMEOUT): stopped or "
        "hung? process 0 stops too; find what stopped it, or raise PYRO_VAE_TIMEOUT if a process "
        "may rightly work alone that long"
    ], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
