"""Signals as stop requests: the first one is kept, handlers are restored, exit statuses match the shell's."""

import os
import signal
import threading

from pyro_vae.core.interrupts import Interrupted, catching


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
