"""Signals as stop requests: the first one is kept, handlers are restored, exit statuses match the
shell's; or, while a download runs, as an exception raised at once, its cleanup run."""

import os
import signal
import threading

import pytest

from pyro_vae.core.interrupts import Interrupted, catching, raising


def test_the_first_signal_is_recorded_and_the_old_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with catching() as signals:
        assert signals.received is None and signals.name == ""
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal changes nothing
        assert signals.received == signal.SIGTERM and signals.name == "SIGTERM"
    assert {s: signal.getsignal(s) for s in before} == before


def test_outside_the_main_thread_nothing_is_installed():
    seen = {}

    def body():
        with catching() as signals:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["received"] = signals.received

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "received": None}


def test_the_exit_status_is_128_plus_the_signal_number():
    assert Interrupted("stopped", signal.SIGINT).exit_status == 130
    assert Interrupted("stopped", signal.SIGTERM).exit_status == 143


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_raising_stops_the_block_at_once_cleans_up_and_says_why(signum):
    # the handlers of a process at a terminal (a test run started in the background, ``cmd &``,
    # ignores SIGINT, which raising rightly leaves alone)
    outer = {
        s: signal.signal(s, h)
        for s, h in [(signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)]
    }
    try:
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        cleaned, reached = [], []
        with pytest.raises(Interrupted) as e, raising("fetching x"):
            try:
                os.kill(os.getpid(), signum)
                reached.append("after the signal")
            finally:
                cleaned.append(True)
        assert (str(e.value), e.value.exit_status) == (
            f"stopped by {signum.name} while fetching x",
            128 + signum,
        )
        assert cleaned == [True] and reached == []
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        for s, h in outer.items():
            signal.signal(s, h)


def test_raising_leaves_a_signal_the_process_ignores_or_handles_its_own_way():
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as nohup, or a shell's background job
    try:
        with raising("fetching x"):
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old)
    with catching() as signals, raising("fetching x"):
        os.kill(os.getpid(), signal.SIGINT)  # catching's flag handler stays in place
    assert signals.received == signal.SIGINT


def test_raising_outside_the_main_thread_installs_nothing():
    seen = {}

    def body():
        with raising("fetching x"):
            seen["handlers"] = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]

    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"handlers": before}
