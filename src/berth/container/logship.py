"""Sending a container's log lines to syslog or journald, and reading journald back.

A ``Shipper`` follows the k8s-file conmon writes (from where it stood when the container started)
and sends every line on, until the container has stopped and the file is drained. The file is the
only buffer: a syslog server that is down loses lines (dockerd's driver drops them too, after a
reconnect attempt), nothing piles up in berthd. Lines written while berthd itself is down are not
sent (a shipper restarted by reconcile starts at the file's end).

journald takes datagrams in asynchronously: an entry sent just before the container exits may show up
in the journal a while after. Each entry therefore carries ``CONTAINER_LOG_EPOCH`` (one per shipper)
and ``CONTAINER_LOG_ORDINAL`` (1, 2, …), as moby's driver writes them, and a follower of a stopped
container reads on until it has seen the last ordinal sent (``Shipper.mark``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from berth.container import logdrivers
from berth.container import logs as clogs
from berth.errors import System

log = logging.getLogger("berth.logs")
_LOCAL_SYSLOG = ("/dev/log", "/var/run/syslog", "/var/run/log")
_MAX_DATAGRAM = 64 * 1024  # bytes of one line's message sent; the rest is cut (conmon splits at 8 KiB)
_RECONNECT_EVERY = 5.0  # seconds between attempts to reach a syslog server that was unreachable
_JOURNAL_CATCH_UP = 10.0  # seconds a follower waits for journald to show the last entry sent


class _Sink:
    """A connected socket for one syslog target or journald; ``send`` raises OSError on failure."""

    def __init__(self, cfg: logdrivers.LogConfig) -> None:
        self.cfg = cfg
        self.sock: socket.socket | ssl.SSLSocket | None = None
        self.proto = ""

    def connect(self) -> None:
        if self.cfg.driver == "journald":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                s.connect(logdrivers.journal_socket())
            except OSError:
                s.close()
                raise
            self.sock, self.proto = s, "unixgram"
            return
        addr = logdrivers.syslog_address(self.cfg.opts.get("syslog-address", ""))
        if addr.proto == "":
            last: OSError | None = None
            for path in _LOCAL_SYSLOG:
                for kind, name in ((socket.SOCK_DGRAM, "unixgram"), (socket.SOCK_STREAM, "unix")):
                    s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
                    try:
                        s.connect(path)
                    except OSError as exc:
                        s.close()
                        last = exc
                        continue
                    self.sock, self.proto = s, name
                    return
            raise last or OSError("Unix syslog delivery error")
        if addr.proto in ("unix", "unixgram"):
            kind = socket.SOCK_STREAM if addr.proto == "unix" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
            try:
                s.connect(addr.path)
            except OSError:
                s.close()
                raise
            self.sock, self.proto = s, addr.proto
            return
        kind = socket.SOCK_DGRAM if addr.proto == "udp" else socket.SOCK_STREAM
        family, _, _, _, sockaddr = socket.getaddrinfo(addr.host, addr.port, type=kind)[0]
        s = socket.socket(family, kind | socket.SOCK_CLOEXEC)
        s.settimeout(10)
        try:
            s.connect(sockaddr)
            if addr.proto == "tcp+tls":
                s = self._tls().wrap_socket(s, server_hostname=addr.host)
        except (OSError, ssl.SSLError):
            s.close()
            raise
        self.sock, self.proto = s, addr.proto

    def _tls(self) -> ssl.SSLContext:
        opts = self.cfg.opts
        ctx = ssl.create_default_context(cafile=opts.get("syslog-tls-ca-cert") or None)
        if "syslog-tls-skip-verify" in opts:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if opts.get("syslog-tls-cert"):
            ctx.load_cert_chain(opts["syslog-tls-cert"], opts.get("syslog-tls-key") or None)
        return ctx

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        if self.proto in ("unixgram", "udp"):
            self.sock.send(data)
        else:
            self.sock.sendall(data)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


class Shipper:
    def __init__(self, cfg: logdrivers.LogConfig, info: logdrivers.Info, path: str, offset: int) -> None:
        self.cfg, self.info = cfg, info
        self.reader = clogs.LogReader(path, offset)
        self.sink = _Sink(cfg)
        self.tag = logdrivers.tag(cfg.opts, info)
        self._down_since = 0.0
        self.epoch = secrets.token_hex(16)
        self._ordinal = 0
        self.mark: tuple[str, int] | None = None  # (epoch, ordinal) of the last journald entry sent

    def open(self) -> None:
        """Connect now (in the start thread): a target that cannot be reached fails the start, in
        dockerd's words."""
        if self.cfg.driver == "journald" and not os.path.exists(logdrivers.journal_socket()):
            raise System("failed to initialize logging driver: journald is not enabled on this host")
        try:
            self.sink.connect()
        except (OSError, ssl.SSLError) as exc:
            raise System(f"failed to initialize logging driver: {exc}") from None

    def close(self) -> None:
        self.reader.close()
        self.sink.close()

    def _encode(self, line: clogs.Line) -> bytes:
        text = line.data[:_MAX_DATAGRAM]
        if self.cfg.driver == "journald":
            return logdrivers.journal_datagram(logdrivers.journal_fields(
                self.cfg.opts, self.info, line.stream, text, (self.epoch, self._ordinal + 1)))
        return logdrivers.syslog_message(self.cfg.opts, self.tag, line.stream, text, self.sink.proto)

    def ship(self, lines: list[clogs.Line]) -> None:
        for line in lines:
            if not line.data.strip(b"\n") and self.cfg.driver == "syslog":
                continue  # dockerd's syslog driver skips empty lines
            if self.sink.sock is None:
                if time.monotonic() - self._down_since < _RECONNECT_EVERY:
                    continue
                try:
                    self.sink.connect()
                except (OSError, ssl.SSLError):
                    self._down_since = time.monotonic()
                    continue
            try:
                self.sink.send(self._encode(line))
                self._ordinal += 1
                if self.cfg.driver == "journald":
                    self.mark = (self.epoch, self._ordinal)
            except OSError as exc:
                log.warning("log of %s: sending to %s failed: %s", self.info.container_id[:12], self.cfg.driver, exc)
                self.sink.close()
                self._down_since = time.monotonic()

    async def run(self, alive: Callable[[], bool], changed: Callable[[], asyncio.Event]) -> tuple[str, int] | None:
        """Ship until ``alive()`` is false and the file is drained; the ``mark`` of the last entry."""
        try:
            while True:
                running = alive()
                lines = await asyncio.to_thread(self.reader.read_new)
                if lines:
                    await asyncio.to_thread(self.ship, lines)
                    continue
                if not running:
                    return self.mark
                ev = changed()
                ev.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), 0.05)
        finally:
            self.close()


# ---- reading journald back ------------------------------------------------------------------------

async def journal_lines(cid: str, since: float, until: float | None, tail: int | None, follow: bool,
                        ended: Callable[[], Awaitable[tuple[str, int] | None]]) -> AsyncIterator[clogs.Line]:
    """The container's lines from journald, through ``journalctl -o json`` (as dockerd reads them
    through sd-journal): stdout at priority 6, stderr at 3. With ``follow``, until the container has
    stopped (``ended`` returns, with the mark of the last entry its shipper sent): then, once journald
    shows that entry, what came after the last entry read is read in one pass."""
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise System("reading a journald log needs journalctl (Debian package systemd)")
    base = [journalctl, "--no-pager", "-q", "-o", "json", "--all"]
    argv = [*base, f"CONTAINER_ID_FULL={cid}"]
    if since:
        argv.append(f"--since=@{since:.6f}")
    if until is not None:
        argv.append(f"--until=@{until:.6f}")
    # every line unless a tail is asked for: ``journalctl --follow`` alone starts with the last 10
    lines = [f"--lines={tail}"] if tail is not None and tail >= 0 else ["--lines=all"]
    if tail == 0:
        return
    if not follow:
        async for entry in _journal_entries([*argv, *lines]):
            yield _journal_line(entry)
        return
    cursor = ""
    seen: dict[str, int] = {}  # epoch → highest ordinal read
    stopped = asyncio.ensure_future(ended())
    try:
        reader = _journal_entries([*argv, *lines, "--follow"])
        try:
            while True:
                read = asyncio.ensure_future(anext(reader, None))
                await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await read
                    break
                got = read.result()
                if got is None:
                    return
                cursor = str(got.get("__CURSOR") or cursor)
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    epoch, ordinal = str(got["CONTAINER_LOG_EPOCH"]), int(got["CONTAINER_LOG_ORDINAL"])
                    seen[epoch] = max(seen.get(epoch, 0), ordinal)
                yield _journal_line(got)
        finally:
            await reader.aclose()
        mark = stopped.result()
    finally:
        if not stopped.done():
            stopped.cancel()
    if mark is not None and seen.get(mark[0], 0) < mark[1]:
        # journald may not have written the last entries yet: wait (bounded) until it shows the last
        deadline = time.monotonic() + _JOURNAL_CATCH_UP
        probe = [*base, "--lines=1", f"CONTAINER_LOG_EPOCH={mark[0]}", f"CONTAINER_LOG_ORDINAL={mark[1]}"]
        while not [e async for e in _journal_entries(probe)]:
            if time.monotonic() > deadline:
                log.warning("log of %s: journald did not show the last entry sent within %.0f s",
                            cid[:12], _JOURNAL_CATCH_UP)
                break
            await asyncio.sleep(0.05)
    async for entry in _journal_entries([*argv, f"--after-cursor={cursor}"] if cursor else [*argv, *lines]):
        yield _journal_line(entry)


async def _journal_entries(argv: list[str]) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON entries ``journalctl`` prints; the process is killed when the caller stops reading."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                                                limit=1 << 20)
    assert proc.stdout is not None
    try:
        while raw := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict):
                    yield entry
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _journal_line(entry: dict[str, Any]) -> clogs.Line:
    msg = entry.get("MESSAGE")
    data = bytes(msg) if isinstance(msg, list) else str(msg or "").encode()
    if entry.get("CONTAINER_PARTIAL_MESSAGE") != "true":
        data += b"\n"
    try:
        usec = int(entry.get("__REALTIME_TIMESTAMP") or 0)
    except ValueError:
        usec = 0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(usec // 1_000_000)) + f".{usec % 1_000_000:06d}000Z"
    return clogs.Line(stamp, clogs.STDERR if entry.get("PRIORITY") == "3" else clogs.STDOUT, data)
