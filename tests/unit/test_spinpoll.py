import os
import socket
import time

from berth.linux.spinpoll import SpinningEpollSelector, spin_from_env


def test_spin_returns_ready_events_and_still_blocks_with_timeout():
    sel = SpinningEpollSelector(0.001)
    a, b = socket.socketpair()
    try:
        sel.register(a, 1)  # EVENT_READ
        t0 = time.perf_counter()
        assert sel.select(0.05) == []  # nothing ready: spins, then blocks for the rest of the timeout
        assert time.perf_counter() - t0 >= 0.04
        b.send(b"x")
        ready = sel.select(None)
        assert [key.fileobj for key, _ in ready] == [a]
    finally:
        sel.close()
        a.close()
        b.close()


def test_spin_setting_from_environment():
    assert spin_from_env({}) == 50e-6
    assert spin_from_env({"BERTH_SPIN_US": "0"}) == 0
    assert spin_from_env({"BERTH_SPIN_US": "junk"}) == 50e-6
    assert spin_from_env({"BERTH_SPIN_US": "999999"}) == 0.01
    assert os.environ is not None
