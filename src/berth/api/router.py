"""Routes as data: one table per resource, registered once, matched with and without /v1.NN.

A ``Route`` names its method, a path pattern (``/containers/{name}/json``; ``{name:path}`` matches
across slashes, for image references), its handler, and what it needs of the connection:
``stream_body`` routes are dispatched as soon as their headers arrive and read the body as a stream
(``body_in_thread``: a worker thread reads it from the socket, see ``rawbody``);
``min_version`` routes answer 404 ... to older clients, as dockerd's WithMinimumAPIVersion does.
Every route has an ``action`` (``container.create``, ``system.info``) from ``security.actions``: a
stable name that authorization policies and the audit log use.
Static paths are looked up in a dict first, so ``/_ping`` costs one hash lookup.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from berth.api.http import Handler
from berth.security import actions

_PARAM = re.compile(r"\{(\w+)(?::(path))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    action: str
    stream_body: bool = False
    min_version: str | None = None
    is_async: bool = field(default=False, compare=False)
    body_in_thread: bool = False


def route(method: str, pattern: str, handler: Handler, *, stream_body: bool = False, min_version: str | None = None,
          action: str | None = None, body_in_thread: bool = False) -> Route:
    """A route; its action is the catalogue's (``security.actions``) unless given (tests' own routes).
    ``body_in_thread`` (with ``stream_body``): on a plain socket, the handler's worker thread reads the
    body from the socket itself (``rawbody``)."""
    if action is None:
        try:
            action = actions.action_of(method, pattern)
        except KeyError:
            raise ValueError(f"{method} {pattern} has no action name in berth.security.actions") from None
    return Route(method, pattern, handler, action, stream_body or body_in_thread, min_version,
                 inspect.iscoroutinefunction(handler), body_in_thread)


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + r"\Z")


class Router:
    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        for r in routes:
            self.add(r)

    def add(self, r: Route) -> None:
        methods = (r.method, "HEAD") if r.method == "GET" else (r.method,)
        for method in methods:
            if "{" in r.pattern:
                self._dynamic.setdefault(method, []).append((_compile(r.pattern), r))
            else:
                self._static.setdefault((method, r.pattern), r)

    def routes(self) -> list[Route]:
        """Every route, once (a GET's implied HEAD is not repeated)."""
        out: dict[int, Route] = {}
        for r in self._static.values():
            out.setdefault(id(r), r)
        for table in self._dynamic.values():
            for _, r in table:
                out.setdefault(id(r), r)
        return list(out.values())

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for (method, path) and its parameters, or None (dockerd answers 404)."""
        # dockerd ignores a trailing slash the same way gorilla/mux does not: keep paths exact,
        # except that "/x/" is treated as "/x" (the docker CLI never sends one).
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        r = self._static.get((method, path))
        if r is not None:
            return r, {}
        for rx, r in self._dynamic.get(method, ()):
            m = rx.match(path)
            if m:
                return r, m.groupdict()
        return None
