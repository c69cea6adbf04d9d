"""WebSocket (RFC 6455) over a hijacked stream, for ``GET /containers/{id}/attach/ws``, on wsproto (a
sans-I/O implementation: it checks the handshake, unmasks and validates frames, and hands out data as
it arrives, so no frame is ever held whole in memory).

``Origin`` is checked: a browser page on another origin cannot drive the attach (a page can open a
WebSocket to any address, a TCP listener on 127.0.0.1 included, and browsers send its origin);
clients that are not browsers send no ``Origin`` and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from berth.api.hijack import HijackedStream
from berth.errors import Forbidden, InvalidParameter

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _host_port(netloc: str, scheme: str) -> tuple[str, int]:
    parts = urlsplit(f"//{netloc}")
    return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 80)


def check_origin(headers: dict[str, str], tls: bool = False) -> None:
    """Forbidden when the request carries an ``Origin`` that is not the host it was sent to."""
    origin = headers.get("origin")
    if origin is None:
        return
    o = urlsplit(origin)
    if o.scheme not in _DEFAULT_PORTS or not o.netloc:
        raise Forbidden(f"websocket attach refused: origin {origin!r} is not allowed")
    if _host_port(o.netloc, o.scheme) != _host_port(headers.get("host", ""), "https" if tls else "http"):
        raise Forbidden(f"websocket attach refused: origin {origin!r} is not this host "
                        f"({headers.get('host', '')!r})")


class Session:
    """One WebSocket: the handshake answer, then frames both ways."""

    def __init__(self, target: str, headers: dict[str, str], *, binary: bool = True) -> None:
        self.ws = WSConnection(ConnectionType.SERVER)
        self.binary = binary
        lines = [f"GET {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        try:
            self.ws.receive_data(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            event = next(self.ws.events())
        except (RemoteProtocolError, StopIteration, UnicodeEncodeError) as exc:
            raise InvalidParameter(f"this endpoint needs a WebSocket handshake: {exc}") from None
        if not isinstance(event, Request):
            raise InvalidParameter("this endpoint needs a WebSocket handshake (Upgrade: websocket)")
        self._closed = False

    def accept(self) -> bytes:
        """The handshake's 101 response (head only)."""
        return self.ws.send(AcceptConnection())

    def message(self, data: bytes) -> bytes:
        """A data frame: binary, or text before API 1.28 (as dockerd)."""
        if not data or self._closed:
            return b""
        if self.binary:
            return self.ws.send(BytesMessage(data=data))
        return self.ws.send(TextMessage(data=data.decode("utf-8", "replace")))

    def close(self, code: int = 1000) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        try:
            return self.ws.send(CloseConnection(code=code))
        except Exception:  # noqa: BLE001 - already closing (the client closed first)
            return b""


class Reader:
    """The client's messages as a byte stream (``read`` like HijackedStream's): data is handed on as
    it arrives; a ping is answered; a close frame (or the connection's end, or a protocol error) is EOF."""

    def __init__(self, session: Session, stream: HijackedStream) -> None:
        self.session = session
        self.stream = stream
        self._data = bytearray()
        self._eof = False

    async def read(self, n: int = 65536) -> bytes:
        ws = self.session.ws
        while not self._data and not self._eof:
            chunk = await self.stream.read(65536)
            if not chunk:
                self._eof = True
                break
            try:
                ws.receive_data(chunk)
                for event in ws.events():
                    if isinstance(event, BytesMessage):
                        self._data += event.data
                    elif isinstance(event, TextMessage):
                        self._data += event.data.encode()
                    elif isinstance(event, Ping):
                        await self.stream.write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        self._eof = True
                        if not self.session._closed:
                            self.session._closed = True
                            await self.stream.write(ws.send(event.response()))
            except RemoteProtocolError:
                self._eof = True  # a bad frame ends the input; the output goes on until the end
        out = bytes(self._data[:n])
        del self._data[:n]
        return out
