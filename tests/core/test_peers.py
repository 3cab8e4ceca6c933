"""The one line a process of several says when another fails, is killed or hangs, from the
notes the processes leave in a store (here an in-memory one; the torchrun jobs that produce
these errors are in tests/core/test_distributed.py)."""

import os
import socket

import pytest
import torch.distributed as dist

from pyro_vae.core import distributed, peers
from pyro_vae.core.distributed import World

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
