"""What every HTTP connection shares: the router, the headers every response carries, the
authorizer and the auditor, the limits on what one client may make the daemon hold, and the sweeper
that closes connections past their deadline."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from berth.api import versions
from berth.api.backends import Auditor, Authorizer
from berth.api.router import Router

log = logging.getLogger("berth.api")

MAX_BUFFERED_BODY = 64 << 20


class Swept(Protocol):
    """A connection, as the application sees it."""

    deadline: float

    def expire(self) -> None:
        """Past its deadline: close it."""
        ...

    def shutdown(self) -> None:
        """The daemon stops: close it now."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client may make the daemon hold (see the module header)."""

    max_header_bytes: int = 1 << 20  # Go's DefaultMaxHeaderBytes
    max_body: int = MAX_BUFFERED_BODY
    header_timeout: float = 60.0  # first byte of a request to the end of its headers
    body_timeout: float = 300.0  # between two bytes of a request body
    idle_timeout: float = 300.0  # a keep-alive connection with no request
    pipeline: int = 16  # parsed requests waiting behind the running one


class Application:
    """What every connection shares: the router, the headers every response carries, the logger, the
    limits, and the sweeper that closes connections past their deadline."""

    def __init__(self, router: Router, *, server: str, debug: bool = False, limits: Limits | None = None) -> None:
        self.router = router
        self.debug = debug
        self.limits = limits or Limits()
        self.common_headers = (
            f"Api-Version: {versions.API_VERSION}\r\n"
            "Docker-Experimental: false\r\n"
            "Ostype: linux\r\n"
            f"Server: {server}\r\n"
        ).encode()
        self.connections: set[Swept] = set()
        self.authorizer: Authorizer | None = None  # None: every caller who reaches a listener may do anything
        self.auditor: Auditor | None = None  # None: requests are not recorded
        self._peak = 0  # most connections since memory was last handed back
        self.expired = 0

    def sweep(self) -> None:
        """Close the connections past their deadline; after a storm of connections, hand freed memory
        back to the system (glibc keeps freed heap pages otherwise: measured in bench/http_limits.py)."""
        now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline < now]:
            self.expired += 1
            conn.expire()
        count = len(self.connections)
        self._peak = max(self._peak, count)
        if self._peak - count >= 256:
            self._peak = count
            gc.collect()  # asyncio's transports hold cycles of their own: freed only by the collector
            _trim_memory()

    async def run_sweeper(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive any one connection's trouble
                log.exception("bug: sweeping connections")


def _trim_memory() -> None:
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
