"""The event bus behind GET /events: a bounded history for ``since`` plus live subscribers.

Events are dicts in the Engine API's shape. A subscriber that falls 1024 events behind is dropped
(its stream ends) rather than letting one slow client grow the daemon's memory, as dockerd does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

HISTORY = 256
_SUBSCRIBER_QUEUE = 1024
_TYPE_KEYS = ("config", "container", "daemon", "image", "network", "node", "plugin", "secret", "service",
              "volume")

Event = dict[str, Any]


def make_event(type_: str, action: str, actor_id: str, attributes: dict[str, str], scope: str = "local") -> Event:
    now_ns = time.time_ns()
    return {
        "Type": type_,
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": dict(attributes)},
        "scope": scope,
        "time": now_ns // 1_000_000_000,
        "timeNano": now_ns,
    }


def matches(event: Event, filters: dict[str, list[str]]) -> bool:
    """dockerd's rule: values of one key are alternatives, different keys must all match."""
    if not filters:
        return True
    attrs = event["Actor"]["Attributes"]
    if "type" in filters and event["Type"] not in filters["type"]:
        return False
    if "event" in filters:
        action = event["Action"]
        if not any(action == v or action.startswith(v + ":") for v in filters["event"]):
            return False
    if "scope" in filters and event.get("scope") not in filters["scope"]:
        return False
    if "label" in filters:
        for want in filters["label"]:
            key, eq, value = want.partition("=")
            if key not in attrs or (eq and attrs[key] != value):
                return False
    for key in _TYPE_KEYS:
        if key in filters:
            if event["Type"] != key:
                return False
            names = {event["Actor"]["ID"], attrs.get("name", "")}
            if not any(v in names or (len(v) >= 1 and event["Actor"]["ID"].startswith(v)) for v in filters[key]):
                return False
    return True


class _Subscriber:
    __slots__ = ("pending", "wake", "dropped")

    def __init__(self) -> None:
        self.pending: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.dropped = False


class EventBus:
    def __init__(self) -> None:
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that serves the subscribers (set once berthd's loop runs)."""
        self._loop = loop

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Safe from any thread: from a worker thread the event is handed to the subscribers' loop
        (asyncio.Event.set() from another thread would not wake it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._publish, event)
                return
        self._publish(event)

    def _publish(self, event: Event) -> None:
        self._history.append(event)
        for sub in list(self._subscribers):
            if len(sub.pending) >= _SUBSCRIBER_QUEUE:
                sub.dropped = True  # too slow: its stream ends instead of the daemon's memory growing
                self._subscribers.discard(sub)
            else:
                sub.pending.append(event)
            sub.wake.set()

    async def subscribe(self, since: float | None, until: float | None,
                        filters: dict[str, list[str]]) -> AsyncIterator[Event]:
        sub = _Subscriber()
        self._subscribers.add(sub)  # before the history snapshot: nothing falls between the two
        since_ns = int(since * 1e9) if since is not None else None
        until_ns = int(until * 1e9) if until is not None else None
        try:
            if since_ns is not None:
                for ev in list(self._history):
                    if ev["timeNano"] >= since_ns and (until_ns is None or ev["timeNano"] <= until_ns) \
                            and matches(ev, filters):
                        yield ev
            while True:
                while sub.pending:
                    ev = sub.pending.popleft()
                    if until_ns is not None and ev["timeNano"] > until_ns:
                        return
                    if matches(ev, filters):
                        yield ev
                if sub.dropped:
                    return
                timeout = None
                if until is not None:
                    timeout = until - time.time()
                    if timeout <= 0:
                        return
                sub.wake.clear()
                try:
                    await asyncio.wait_for(sub.wake.wait(), timeout)
                except TimeoutError:
                    return
        finally:
            self._subscribers.discard(sub)
