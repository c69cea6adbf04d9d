"""GET|HEAD /_ping, GET /version, GET /info, GET /events; berth's POST /berth/policy/explain."""

from __future__ import annotations

import json
import time
from datetime import datetime

from berth import API_VERSION
from berth.api.backends import PolicyBackend, SystemBackend
from berth.api.filters import parse_filters
from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.errors import InvalidParameter
from berth.units import parse_go_duration

EVENT_FILTERS = ("config", "container", "daemon", "event", "image", "label", "network", "node",
                 "plugin", "scope", "secret", "service", "type", "volume")

_PING = Response(
    200,
    b"OK",
    "text/plain; charset=utf-8",
    {
        "Builder-Version": "1",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
        "Swarm": "inactive",
    },
    static=True,
)


def parse_timestamp(text: str, now: float) -> float:
    """A ``since``/``until`` value as dockerd takes it: Unix seconds (with optional .nanoseconds),
    an RFC 3339 date, or a Go duration relative to now such as ``10m``."""
    text = text.strip()
    try:
        if "." in text:
            sec, _, frac = text.partition(".")
            return int(sec) + int(frac.ljust(9, "0")[:9]) / 1e9
        return float(int(text))
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        return now - parse_go_duration(text) / 1e9
    except ValueError:
        pass
    raise InvalidParameter(f"failed to parse value {text!r} as a timestamp")


def routes(backend: SystemBackend) -> list[Route]:
    def ping(req: Request) -> Response:
        return _PING

    async def version(req: Request) -> Response:
        return Response.json(await backend.system_version())

    async def info(req: Request) -> Response:
        return Response.json(await backend.system_info())

    async def events(req: Request) -> None:
        now = time.time()
        since_text, until_text = req.arg("since"), req.arg("until")
        since = parse_timestamp(since_text, now) if since_text else None
        until = parse_timestamp(until_text, now) if until_text else None
        if since is not None and until is not None and since > until:
            raise InvalidParameter("`since` time cannot be after `until` time")
        filters = parse_filters(req.arg("filters"), EVENT_FILTERS)
        assert req.connection is not None
        stream = backend.system_events(since, until, filters)
        writer = await req.connection.start_stream(200, "application/json")
        async for event in stream:
            if req.visible is not None and not req.visible(event):
                continue  # an object the caller may not see (the authorization policy)
            await writer.write(json.dumps(event).encode() + b"\n")
        await writer.close()
        return None

    return [
        route("GET", "/_ping", ping),
        route("GET", "/version", version),
        route("GET", "/info", info),
        route("GET", "/events", events),
    ]


def policy_routes(backend: PolicyBackend) -> list[Route]:
    """berth's own: POST /berth/policy/explain (``berth policy explain``)."""

    def explain(req: Request) -> Response:
        body = req.json_body()
        if not isinstance(body, dict):
            raise InvalidParameter("the request body must be a JSON object")
        return Response.json(backend.policy_explain(body))

    return [route("POST", "/berth/policy/explain", explain)]


__all__ = ["routes", "policy_routes", "API_VERSION"]
