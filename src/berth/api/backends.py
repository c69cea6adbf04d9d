"""What the routes need from the daemon, as narrow Protocols in wire types (dicts shaped like the
Engine API's JSON). The daemon's backends satisfy these without importing this module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from berth.api.filters import Filters


class SystemBackend(Protocol):
    async def system_version(self) -> dict[str, Any]:
        """The body of GET /version."""
        ...

    async def system_info(self) -> dict[str, Any]:
        """The body of GET /info."""
        ...

    def system_events(self, since: float | None, until: float | None, filters: Filters) -> AsyncIterator[dict[str, Any]]:
        """Past events from ``since`` (if given), then live ones until ``until`` (if given), filtered.

        Ends by itself only when ``until`` is reached; otherwise runs until the caller stops it.
        """
        ...
