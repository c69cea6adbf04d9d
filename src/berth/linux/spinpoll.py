"""An epoll selector that polls briefly before it sleeps.

When the event loop has nothing to do it blocks in epoll_wait, and the next request then pays for a
sleep and a wakeup (scheduler latency, often more than the request's own work). Go's runtime spins
in its netpoller before parking, which is much of why dockerd answers quickly. This selector does the
same: before a blocking wait it polls without blocking for at most ``spin`` seconds, then blocks as
usual. An idle daemon spins once, for ``spin``, after its last event; a busy one catches the next
request without sleeping. Measured in docs/performance.md; BERTH_SPIN_US=0 turns it off.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time
from typing import Any

DEFAULT_SPIN_US = 50


class SpinningEpollSelector(selectors.EpollSelector):
    def __init__(self, spin: float) -> None:
        super().__init__()
        self.spin = spin

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.spin > 0 and (timeout is None or timeout > 0):
            end = time.perf_counter() + (self.spin if timeout is None else min(self.spin, timeout))
            while True:
                ready = super().select(0)
                if ready:
                    return ready
                if time.perf_counter() >= end:
                    break
        return super().select(timeout)


def spin_from_env(environ: Any = None) -> float:
    env = os.environ if environ is None else environ
    try:
        us = int(env.get("BERTH_SPIN_US", DEFAULT_SPIN_US))
    except ValueError:
        us = DEFAULT_SPIN_US
    return max(0, min(us, 10_000)) / 1e6


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The daemon's event loop: asyncio's selector loop on a SpinningEpollSelector."""
    spin = spin_from_env()
    if spin == 0:
        return asyncio.SelectorEventLoop()
    return asyncio.SelectorEventLoop(SpinningEpollSelector(spin))
