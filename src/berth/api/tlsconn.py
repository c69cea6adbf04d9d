"""Server-side TLS on ``ssl.MemoryBIO``, with the client's half-close kept as a half-close.

asyncio's own TLS transport closes the whole connection when the peer's close_notify arrives. For
``docker run -i`` over TLS, close_notify is how the docker CLI says "stdin is over" while it still
waits for the container's output, so the output was lost. Here the peer's close_notify becomes
``eof_received()`` on the HTTP connection, which returns True for a hijacked stream, and we go on
writing (TLS 1.3 allows it; OpenSSL keeps encrypting after receiving close_notify). Our own
half-close is not offered (``can_write_eof()`` is False): a hijacked stream ends with close(),
which sends close_notify and closes the socket.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from berth.security import tlsmaterial

log = logging.getLogger("berth.api")


class _AppTransport(asyncio.Transport):
    """What the HTTP connection sees: plaintext in, plaintext out."""

    def __init__(self, tls: TLSConnection) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.send(bytes(data))

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._tls.abort()

    def is_closing(self) -> bool:
        return self._tls.closing

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS streams end with close()")

    def pause_reading(self) -> None:
        self._tls.transport.pause_reading()

    def resume_reading(self) -> None:
        self._tls.transport.resume_reading()

    def is_reading(self) -> bool:
        return self._tls.transport.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._tls.transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert":
            return self._tls.sslobj.getpeercert()
        if name == "ssl_object":
            return self._tls.sslobj
        if name == "cipher":
            return self._tls.sslobj.cipher()
        return self._tls.transport.get_extra_info(name, default)


class TLSConnection(asyncio.Protocol):
    def __init__(self, ctx: ssl.SSLContext, app_factory: Callable[[], asyncio.BaseProtocol],
                 handshake_timeout: float = 10, name: str = "tls") -> None:
        self._ctx = ctx
        self._factory = app_factory
        self._timeout = handshake_timeout
        self._name = name
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.sslobj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.app: Any = None
        self.closing = False
        self._peer_closed = False
        self._timer: asyncio.TimerHandle | None = None

    # ---- the socket side ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        if self.app is None:
            log.info("%s: TLS handshake timed out", self._name)
            self.abort()

    def data_received(self, data: bytes) -> None:
        self._in.write(data)
        if self.app is None:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as exc:
                self._flush()  # the alert that tells the client why
                if "revoked" in str(exc):
                    who = tlsmaterial.refused_certificate(self.sslobj) or "(its certificate was not seen)"
                    log.warning("%s: TLS connection refused: a revoked client certificate, %s", self._name, who)
                else:
                    log.info("%s: TLS connection refused: %s", self._name, exc)
                self.closing = True
                self.transport.close()
                return
            if self._timer is not None:
                self._timer.cancel()
            tlsmaterial.after_handshake(self.sslobj, self._ctx)
            self._flush()
            self.app = self._factory()
            self.app.connection_made(_AppTransport(self))
        self._read_plaintext()

    def _read_plaintext(self) -> None:
        while not self._peer_closed and self.app is not None:
            try:
                chunk = self.sslobj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as exc:
                log.info("%s: TLS error: %s", self._name, exc)
                self.abort()
                return
            if not chunk:  # the client's close_notify: its half-close
                self._peer_closed = True
                self._flush()
                if not self.app.eof_received():
                    self.close()
                return
            self.app.data_received(chunk)
        self._flush()

    def eof_received(self) -> bool:
        """TCP FIN (with or without close_notify before it): keep writing if the app wants to."""
        if self.app is None:
            return False
        if self._peer_closed:
            return True
        self._peer_closed = True
        return bool(self.app.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self.app is not None:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # ---- the application side -------------------------------------------------------------------
    def _flush(self) -> None:
        data = self._out.read()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, data: bytes) -> None:
        if self.closing:
            return
        view = memoryview(data)
        while view:
            n = self.sslobj.write(view[:65536])
            view = view[n:]
            self._flush()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            self.sslobj.unwrap()  # close_notify
        except (ssl.SSLError, OSError):
            pass
        self._flush()
        self.transport.close()

    def abort(self) -> None:
        self.closing = True
        self.transport.abort()
