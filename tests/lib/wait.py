"""Waiting in tests: for a condition, with a deadline — never for a fixed time. A test that waits
for something says what it waits for, and fails saying so when it does not come."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(fn: Callable[[], T], what: str, timeout: float = 10.0, interval: float = 0.05) -> T:
    """``fn()``'s first truthy value; AssertionError naming ``what`` once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def stays(fn: Callable[[], object], what: str, seconds: float, interval: float = 0.05) -> None:
    """``fn()`` stays truthy for ``seconds`` (a negative check needs a window to look in)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert fn(), f"no longer true: {what}"
        time.sleep(interval)


def settles(fn: Callable[[], object], what: str, quiet: float = 0.2, timeout: float = 10.0) -> object:
    """``fn()``'s value once it has stopped changing for ``quiet`` seconds (what is in flight has
    arrived); AssertionError naming ``what`` when it still changes after ``timeout``."""
    deadline = time.monotonic() + timeout
    value, since = fn(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what} to settle"
        time.sleep(quiet / 4)
        now = fn()
        if now != value:
            value, since = now, time.monotonic()
    return value
