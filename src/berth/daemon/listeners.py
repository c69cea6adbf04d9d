"""Listening sites, one per -H: unix, tcp (plain or TLS) and fd:// (systemd socket activation).

Each site owns one listening socket and one accept loop (a task of the server's TaskGroup). Accept
errors EMFILE/ENFILE back off 100 ms instead of spinning; an accepted connection is always closed if
handing it to asyncio fails. On a TLS site the first byte of each connection is peeked: a client
speaking plain HTTP gets a TLS alert record, which Go's HTTP client reports as "malformed HTTP
response", the text on which the docker CLI prints its "Are you trying to connect to a TLS-enabled
daemon without TLS?" hint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable

from berth.api.tlsconn import TLSConnection
from berth.daemon.hosts import HostAddr
from berth.errors import InvalidParameter, System
from berth.linux.peercred import group_id, peer_credentials, user_name
from berth.security import tlsmaterial
from berth.security.identity import ANONYMOUS, Identity, from_peer_cert

log = logging.getLogger("berth.daemon")

# A TLS alert record: content type 21, version TLS 1.0, length 2, fatal, protocol_version.
_TLS_ALERT = b"\x15\x03\x01\x00\x02\x02\x46"
_TLS_HANDSHAKE = 0x16
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

ProtocolFactory = Callable[[Callable[[asyncio.BaseTransport], Identity]], asyncio.Protocol]


def unix_identity(transport: asyncio.BaseTransport) -> Identity:
    sock = transport.get_extra_info("socket")
    cred = peer_credentials(sock) if sock is not None else None
    if cred is None:
        return ANONYMOUS
    return Identity("unix", user=user_name(cred.uid), uid=cred.uid, gid=cred.gid, pid=cred.pid)


def tls_identity(transport: asyncio.BaseTransport) -> Identity:
    sslobj = transport.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    return from_peer_cert(transport.get_extra_info("peercert"), der or b"")


def anonymous_identity(transport: asyncio.BaseTransport) -> Identity:
    return ANONYMOUS


def server_tls_context(cert: str, key: str, cacert: str, verify: bool, crl: str = "") -> ssl.SSLContext:
    """TLS 1.2+; with ``verify``, a client certificate is required, must chain to ``cacert``, must
    allow clientAuth (OpenSSL checks the "ssl client" purpose on the server side) and must not be
    revoked by a CRL in ``crl``."""
    if crl and not verify:
        raise InvalidParameter("--tlscrl needs --tlsverify: without client certificates there is nothing to revoke")
    revocations = tlsmaterial.load_crls(crl) if crl else None
    ctx = _context(cert, key, cacert, verify, revocations)
    if revocations is not None:  # the refused certificate's serial is read from the handshake
        tlsmaterial.keep_client_certificates(ctx)
        tlsmaterial.set_after_handshake(ctx, _context(cert, key, cacert, verify, revocations))
    return ctx


def _context(cert: str, key: str, cacert: str, verify: bool,
             revocations: tlsmaterial.Revocations | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Go's TLS 1.2 suites (what dockerd accepts): ECDHE key exchange with an AEAD cipher only; TLS 1.3
    # suites are all AEAD already. No renegotiation (a client could otherwise make us do handshakes
    # at will), no compression.
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidParameter(f"could not load the TLS certificate {cert} and key {key}: {exc}") from None
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=cacert)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidParameter(f"could not load the TLS CA certificate {cacert}: {exc}") from None
        if revocations is not None:
            try:
                tlsmaterial.apply_crls(ctx, revocations)
            except ssl.SSLError as exc:
                raise InvalidParameter(f"could not load the CRLs: {exc}") from None
    return ctx


class Site:
    """One listening socket and its accept loop."""

    def __init__(self, name: str, sock: socket.socket, identify: Callable[[asyncio.BaseTransport], Identity],
                 tls: ssl.SSLContext | None = None, cleanup_path: str | None = None) -> None:
        self.name = name
        self.sock = sock

        def identify_here(transport: asyncio.BaseTransport) -> Identity:
            return dataclasses.replace(identify(transport), listener=name)

        self.identify = identify_here
        self.tls = tls
        self.cleanup_path = cleanup_path
        self.active = 0  # open connections
        self.refused = 0
        sock.setblocking(False)

    async def serve(self, factory: ProtocolFactory, max_connections: int = 16384) -> None:
        """Accept until cancelled. Beyond ``max_connections`` open connections a new one is closed at
        once (the client gets an immediate error, not a wait in the backlog), with a log line at most
        every ten seconds."""
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()
        refused_log = 0.0

        def counted(identify: Callable[[asyncio.BaseTransport], Identity]) -> asyncio.Protocol:
            proto = factory(identify)
            self.active += 1

            def closed() -> None:
                self.active -= 1

            proto.on_close = closed  # type: ignore[attr-defined]
            return proto

        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept on %s: %s; retrying in 100 ms", self.name, exc.strerror)
                    await asyncio.sleep(0.1)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            if self.active + len(pending) >= max_connections:
                conn.close()
                self.refused += 1
                if loop.time() - refused_log > 10:
                    refused_log = loop.time()
                    log.warning("%s: %d connections are open, the most this listener takes; refusing new ones "
                                "(%d refused so far)", self.name, self.active, self.refused)
                continue
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is None:
                try:
                    await loop.connect_accepted_socket(lambda: counted(self.identify), conn)
                except Exception:
                    conn.close()
                    log.exception("could not set up a connection on %s", self.name)
                continue
            task = loop.create_task(self._start_tls(conn, counted))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def _start_tls(self, conn: socket.socket, factory: ProtocolFactory) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(_peek(loop, conn), timeout=10)
            if not first:
                conn.close()
                return
            if first[0] != _TLS_HANDSHAKE:
                log.info("%s: a client spoke plain HTTP to the TLS port; answered with a TLS alert", self.name)
                _refuse_plain(conn)
                return
            tls = self.tls
            assert tls is not None
            await loop.connect_accepted_socket(
                lambda: TLSConnection(tls, lambda: factory(self.identify), name=self.name), conn)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("%s: TLS connection refused: %s", self.name, exc)
            conn.close()

    def close(self) -> None:
        self.sock.close()
        if self.cleanup_path:
            try:
                os.unlink(self.cleanup_path)
            except FileNotFoundError:
                pass


def _refuse_plain(conn: socket.socket) -> None:
    """Send the TLS alert, then read what the client sent before closing: closing a socket with
    unread input makes the kernel send RST, and the client could lose the alert."""
    try:
        conn.send(_TLS_ALERT)
        conn.shutdown(socket.SHUT_WR)
        conn.setblocking(False)
        while conn.recv(65536):
            pass
    except OSError:
        pass
    finally:
        conn.close()


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    fut: asyncio.Future[None] = loop.create_future()
    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(conn.fileno())
    try:
        return conn.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""


def _prepare_unix_path(path: str) -> None:
    """Remove a stale socket; refuse a live one or a path that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidParameter(f"cannot listen on unix://{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: a leftover from a daemon that died
        log.info("removed stale socket %s", path)
        return
    finally:
        probe.close()
    raise InvalidParameter(f"cannot listen on unix://{path}: another daemon is already serving on it")


def unix_site(path: str, group: str, group_explicit: bool, mode: int = 0o660) -> Site:
    try:
        gid = group_id(group)
    except KeyError:
        if group_explicit and group != "docker":
            raise InvalidParameter(f"cannot listen on unix://{path}: group {group!r} does not exist") from None
        log.warning("could not change group %s to %s: group %s not found; the socket's group is root's",
                    path, group, group)
        gid = 0
    _prepare_unix_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chown(path, 0 if os.geteuid() == 0 else os.geteuid(), gid)
        os.chmod(path, mode)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise System(f"cannot listen on unix://{path}: {exc.strerror}", cause=exc) from None
    return Site(f"unix://{path}", sock, unix_identity, cleanup_path=path)


def tcp_site(h: HostAddr, tls: ssl.SSLContext | None, tls_verify: bool) -> Site:
    try:
        infos = socket.getaddrinfo(h.host, h.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise InvalidParameter(f"cannot listen on tcp://{h.address}: {exc}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise System(f"cannot listen on tcp://{h.address}: {exc.strerror}", cause=exc) from None
    identify = tls_identity if tls is not None and tls_verify else anonymous_identity
    return Site(f"tcp://{h.address}", sock, identify, tls=tls)


def fd_sites(h: HostAddr, fds: list[tuple[int, str]], tls: ssl.SSLContext | None, tls_verify: bool) -> list[Site]:
    """Sites for the sockets systemd passed (``fds``, read once with ``systemd.listen_fds``)."""
    if not fds:
        raise InvalidParameter("no sockets found via socket activation: make sure the service was started by systemd")
    if h.address:
        wanted = int(h.address)
        fds = [(fd, name) for fd, name in fds if fd == wanted]
        if not fds:
            raise InvalidParameter(f"too few socket activated files passed in by systemd: no fd {wanted}")
    sites = []
    for fd, name in fds:
        sock = socket.socket(fileno=fd)
        if sock.family == socket.AF_UNIX:
            sites.append(Site(f"fd://{fd} ({name})", sock, unix_identity))
        else:
            ident = tls_identity if tls is not None and tls_verify else anonymous_identity
            sites.append(Site(f"fd://{fd} ({name})", sock, ident, tls=tls))
    return sites
