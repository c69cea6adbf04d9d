"""Request and response values handed between the connection and the handlers.

A handler receives a ``Request`` and either returns a ``Response`` (sent with Content-Length), or
takes over the output itself through ``Request.connection``: ``start_stream`` for a chunked body
(events, logs, progress) or ``hijack`` for a raw two-way stream (attach, exec). Those two return
``None`` from the handler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from berth.errors import InvalidParameter
from berth.security.identity import Identity

if TYPE_CHECKING:
    from berth.api.hijack import HijackedStream


class StreamWriter(Protocol):
    """A chunked response body being written."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class ConnectionControl(Protocol):
    """What a handler may ask of the connection beyond returning a Response."""

    authz_memo: list[Any] | None  # the authorizer's, for this connection (it has one caller)

    async def start_stream(
        self, status: int = 200, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> StreamWriter: ...

    async def hijack(self, content_type: str = "application/vnd.docker.raw-stream",
                     head: bytes | None = None) -> HijackedStream: ...

    def body_stream(self) -> AsyncIterable[bytes]: ...


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the /v1.NN prefix
    raw_query: str
    headers: dict[str, str]  # lower-cased names
    version: str  # the API version this request speaks
    identity: Identity
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern
    body: bytes = b""
    connection: ConnectionControl | None = None
    _query: dict[str, list[str]] | None = None
    # what authorization decided, for the audit log: "allow"/"deny", the deciding rules, the object
    decision: str = ""
    rule: str = ""
    resource: str = ""
    review: Any = None  # what the authorizer wants to see of the response (AuthZ plugins), else None
    raw_target: str = ""  # the request target as sent (``/v1.47/containers/json?all=1``), for an authorizer
    visible: Callable[[dict[str, Any]], bool] | None = None  # which streamed events the caller may see

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parse_qs(self.raw_query, keep_blank_values=True) if self.raw_query else {}
        return self._query

    def arg(self, name: str, default: str = "") -> str:
        """A query parameter's first value, as Go's ``FormValue`` gives dockerd (docker-py sends a build's
        out-of-context Dockerfile name and then its text under one key)."""
        values = self.query.get(name)
        return values[0] if values else default

    def bool_arg(self, name: str, default: bool = False) -> bool:
        """Docker's boolean query values: absent → default; "", "0", "false", "no" → False."""
        values = self.query.get(name)
        if not values:
            return default
        return values[0].strip().lower() not in ("", "0", "false", "no", "off")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        text = self.arg(name)
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            raise InvalidParameter(f"invalid value for {name}: {text!r}: not an integer") from None

    def json_arg(self, name: str) -> Any:
        text = self.arg(name)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InvalidParameter(f"invalid JSON in query parameter {name}: {exc}") from None

    def json_body(self) -> Any:
        """The body as JSON (None when there is none). A body must say ``Content-Type:
        application/json``, as dockerd's CheckForJSON requires: a browser cannot send that to another
        origin without a preflight, so a page cannot drive a TCP listener by posting text/plain."""
        if not self.body:
            return None
        ct = self.headers.get("content-type", "")
        if ct.split(";", 1)[0].strip().lower() != "application/json":
            raise InvalidParameter(f"unsupported Content-Type header ({ct}): must be 'application/json'")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise InvalidParameter(f"invalid JSON body: {exc}") from None


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] | None = None
    static: bool = False  # never changes: the connection may reuse its encoded bytes

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(value).encode() + b"\n")

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status, b"", "")


Handler = Callable[[Request], "Awaitable[Response | None] | Response | None"]
