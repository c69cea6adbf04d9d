"""Log drivers: which ones berth has, their options (checked as dockerd checks them, in its words),
and the wire formats of the two that send lines elsewhere.

conmon always writes the container's output to a k8s-file log (attach streams from it). Then:

- ``json-file`` (the default) and ``local`` keep that file as the log ``docker logs`` reads, rotated
  at ``max-size`` into ``max-file`` files (``local``: 20 MiB × 5, compressed, dockerd's defaults);
- ``syslog`` and ``journald`` send every line on (berthd follows the file; the file itself is kept
  small, as for ``none``): syslog in dockerd's formats over unix, unixgram, udp, tcp or tcp+tls;
  journald in its native protocol with dockerd's fields. ``docker logs`` reads journald back with
  ``journalctl``; syslog cannot be read back (dockerd's answer);
- ``none`` keeps nothing readable.

Other drivers dockerd knows (awslogs, fluentd, gelf, …) are refused by name; any other name gets
dockerd's "no log driver named … is registered".
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from berth.errors import InvalidParameter, NotSupported

_COMMON = ("tag", "labels", "labels-regex", "env", "env-regex")
OPTIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "json-file": frozenset({"max-size", "max-file", "compress"}),
    "k8s-file": frozenset({"max-size", "max-file", "compress"}),
    "local": frozenset({"max-size", "max-file", "compress"}),
    "syslog": frozenset({"syslog-address", "syslog-facility", "syslog-tls-ca-cert", "syslog-tls-cert",
                         "syslog-tls-key", "syslog-tls-skip-verify", "syslog-format", *_COMMON}),
    "journald": frozenset(_COMMON),
    "none": frozenset(),
})
NOT_IN_BERTH = ("awslogs", "etwlogs", "fluentd", "gcplogs", "gelf", "logentries", "splunk")
READABLE = frozenset({"json-file", "k8s-file", "local", "journald"})
SHIPPED = frozenset({"syslog", "journald"})
KEPT_FOR_ATTACH = (1 << 20, 1)  # max bytes, files of the local file when the log goes elsewhere

FACILITIES: Mapping[str, int] = MappingProxyType({
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, **{f"local{n}": 16 + n for n in range(8)}})
SYSLOG_FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
_TAG_FIELDS = ("ID", "FullID", "Name", "ImageID", "ImageFullID", "ImageName", "DaemonName")
_TAG_TEMPLATE = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class SyslogAddress:
    proto: str  # "unix", "unixgram", "udp", "tcp", "tcp+tls"; "" = the local syslog (/dev/log)
    path: str = ""
    host: str = ""
    port: int = 0


@dataclass(frozen=True, slots=True)
class LogConfig:
    driver: str
    max_size: int = 0  # bytes; 0 = unlimited
    max_files: int = 1
    compress: bool = False
    opts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def readable(self) -> bool:
        return self.driver in READABLE

    @property
    def shipped(self) -> bool:
        return self.driver in SHIPPED

    def file_limits(self) -> tuple[int, int]:
        """(max size, files) of the k8s-file conmon writes; (0, 0): unlimited."""
        if self.driver == "none" or self.shipped:
            return KEPT_FOR_ATTACH
        if not self.max_size:
            return 0, 0
        return self.max_size, self.max_files


def parse_size(text: str) -> int:
    """docker's log-opt sizes: 10m, 100k, 1g, or bytes (decimal units, as go-units' FromHumanSize)."""
    t = text.strip().lower()
    units = {"k": 1000, "m": 1000 ** 2, "g": 1000 ** 3, "b": 1}
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def parse(cfg: Mapping[str, Any] | None) -> LogConfig:
    """HostConfig.LogConfig → LogConfig, refusing what dockerd refuses (InvalidParameter) and the
    drivers berth does not have (NotSupported)."""
    cfg = cfg or {}
    driver = str(cfg.get("Type") or "json-file")
    opts = cfg.get("Config") or {}
    if not isinstance(opts, Mapping) or not all(isinstance(v, str) for v in opts.values()):
        raise InvalidParameter("LogConfig.Config must map option names to strings")
    if driver in NOT_IN_BERTH:
        raise NotSupported(f"log driver {driver!r} is not supported by berth (json-file, local, journald, "
                           "syslog and none are)")
    if driver not in OPTIONS:
        raise InvalidParameter(f"logger: no log driver named '{driver}' is registered")
    for key in opts:
        if key not in OPTIONS[driver]:
            raise InvalidParameter(f"unknown log opt '{key}' for {driver} log driver")
    size, files, compress = 0, 1, False
    if driver == "local":
        size, files, compress = 20 * 1024 * 1024, 5, True
    if "max-size" in opts:
        size = _positive(opts, "max-size", parse_size)
    if "max-file" in opts:
        files = _positive(opts, "max-file", int)
    if "compress" in opts:
        if opts["compress"] not in ("true", "false", "1", "0", "True", "False"):
            raise InvalidParameter(f"error reading compress log option: {opts['compress']!r} is not a boolean")
        compress = opts["compress"] in ("true", "1", "True")
    if "tag" in opts:
        _check_tag(opts["tag"])
    if driver == "syslog":
        syslog_address(opts.get("syslog-address", ""))
        facility(opts.get("syslog-facility", ""))
        if opts.get("syslog-format", "") not in SYSLOG_FORMATS:
            raise InvalidParameter("Invalid syslog format")
    for key in ("labels-regex", "env-regex"):
        if key in opts:
            try:
                re.compile(opts[key])
            except re.error as exc:
                raise InvalidParameter(f"invalid {key}: {exc}") from None
    return LogConfig(driver, size, files, compress, MappingProxyType(dict(opts)))


def _positive(opts: Mapping[str, str], key: str, conv: Any) -> int:
    try:
        n = int(conv(opts[key]))
    except ValueError:
        raise InvalidParameter(f"invalid value for log opt {key}: {opts[key]!r}") from None
    if n < 1:
        raise InvalidParameter(f"invalid value for log opt {key}: {opts[key]!r}")
    return n


# ---- tags ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Info:
    """What a tag template and the journald fields may name."""
    container_id: str
    name: str
    image_id: str
    image_name: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    env: tuple[str, ...] = ()


def _check_tag(template: str) -> None:
    for m in _TAG_TEMPLATE.finditer(template):
        if m.group(1) not in _TAG_FIELDS:
            raise InvalidParameter(f"template: log-tag: can't evaluate field {m.group(1)}")
    if "{{" in _TAG_TEMPLATE.sub("", template):
        raise InvalidParameter(f"berth understands the tag fields {{{{.{'}}, {{.'.join(_TAG_FIELDS)}}}}} only: "
                               f"{template!r}")


def tag(opts: Mapping[str, str], info: Info) -> str:
    """The ``tag`` option's template filled in (default ``{{.ID}}``, the short container ID)."""
    values = {"ID": info.container_id[:12], "FullID": info.container_id, "Name": info.name.lstrip("/"),
              "ImageID": info.image_id.removeprefix("sha256:")[:12], "ImageFullID": info.image_id,
              "ImageName": info.image_name, "DaemonName": "docker"}
    return _TAG_TEMPLATE.sub(lambda m: values.get(m.group(1), ""), opts.get("tag") or "{{.ID}}")


def extra_attributes(opts: Mapping[str, str], info: Info) -> dict[str, str]:
    """The labels and environment variables the options name (``labels``, ``env``, and the regexes)."""
    out: dict[str, str] = {}
    wanted = {k.strip() for k in opts.get("labels", "").split(",") if k.strip()}
    rx = re.compile(opts["labels-regex"]) if opts.get("labels-regex") else None
    for k, v in info.labels.items():
        if k in wanted or (rx is not None and rx.match(k)):
            out[k] = v
    env = dict(e.split("=", 1) for e in info.env if "=" in e)
    wanted = {k.strip() for k in opts.get("env", "").split(",") if k.strip()}
    rx = re.compile(opts["env-regex"]) if opts.get("env-regex") else None
    for k, v in env.items():
        if k in wanted or (rx is not None and rx.match(k)):
            out[k] = v
    return out


# ---- syslog -------------------------------------------------------------------------------------------

def syslog_address(text: str) -> SyslogAddress:
    """``syslog-address`` as dockerd parses it: unix:// and unixgram:// paths that exist, udp://,
    tcp:// and tcp+tls:// with host[:port] (514 by default)."""
    if not text:
        return SyslogAddress("")
    u = urlsplit(text)
    if u.scheme in ("unix", "unixgram"):
        if not u.path or not os.path.exists(u.path):
            raise InvalidParameter(f"stat {u.path}: no such file or directory")
        return SyslogAddress(u.scheme, path=u.path)
    if u.scheme not in ("udp", "tcp", "tcp+tls"):
        raise InvalidParameter(f"unsupported scheme: '{u.scheme}'")
    try:
        port = u.port or 514
    except ValueError:
        raise InvalidParameter(f"invalid port in syslog-address {text!r}") from None
    if not u.hostname:
        raise InvalidParameter(f"missing host in syslog-address {text!r}")
    return SyslogAddress(u.scheme, host=u.hostname, port=port)


def facility(text: str) -> int:
    if not text:
        return FACILITIES["daemon"]
    if text in FACILITIES:
        return FACILITIES[text]
    if text.isdigit() and 0 <= int(text) <= 23:
        return int(text)
    raise InvalidParameter("invalid syslog facility")


def syslog_message(opts: Mapping[str, str], tag_text: str, stream: int, text: bytes, proto: str,
                   now: dt.datetime | None = None, hostname: str | None = None, pid: int | None = None) -> bytes:
    """One line as dockerd's syslog driver sends it: severity info (stdout) or err (stderr), the
    format ``syslog-format`` names, a newline at the end, octet counting over tcp+tls for RFC 5424."""
    pri = facility(opts.get("syslog-facility", "")) * 8 + (3 if stream == 2 else 6)
    now = now or dt.datetime.now().astimezone()
    pid = os.getpid() if pid is None else pid
    content = text.decode("utf-8", "replace").rstrip("\n")
    fmt = opts.get("syslog-format", "")
    stamp = f"{now:%b} {now.day:2d} {now:%H:%M:%S}"  # Go's time.Stamp
    if fmt == "":
        msg = f"<{pri}>{stamp} {tag_text}[{pid}]: {content}"
    elif fmt == "rfc3164":
        msg = f"<{pri}>{stamp} {hostname or socket.gethostname()} {tag_text}[{pid}]: {content}"
    else:
        ts = now.isoformat(timespec="seconds" if fmt == "rfc5424" else "microseconds")
        ts = ts.replace("+00:00", "Z") if now.utcoffset() == dt.timedelta(0) else ts
        msg = f"<{pri}>1 {ts} {hostname or socket.gethostname()} {tag_text} {pid} {tag_text} - {content}"
    msg += "\n"
    data = msg.encode()
    if proto == "tcp+tls" and fmt in ("rfc5424", "rfc5424micro"):
        data = f"{len(data)} ".encode() + data
    return data


# ---- journald -----------------------------------------------------------------------------------------

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def journal_socket() -> str:
    """Where journald listens (BERTH_JOURNAL_SOCKET moves it, for tests with a journal of their own)."""
    return os.environ.get("BERTH_JOURNAL_SOCKET") or JOURNAL_SOCKET


def journal_fields(opts: Mapping[str, str], info: Info, stream: int, text: bytes,
                   mark: tuple[str, int] | None = None) -> list[tuple[str, bytes]]:
    """dockerd's journald fields for one line (its daemon/logger/journald), extras from labels/env;
    ``mark`` (epoch, ordinal) numbers the entries as moby's driver does, so that a follower knows
    when it has read the last one the shipper sent."""
    data = text[:-1] if text.endswith(b"\n") else text
    fields = [("MESSAGE", data), ("CONTAINER_ID", info.container_id[:12].encode()),
              ("CONTAINER_ID_FULL", info.container_id.encode()), ("CONTAINER_NAME", info.name.lstrip("/").encode()),
              ("CONTAINER_TAG", tag(opts, info).encode()), ("IMAGE_NAME", info.image_name.encode()),
              ("SYSLOG_IDENTIFIER", tag(opts, info).encode()), ("PRIORITY", b"3" if stream == 2 else b"6")]
    if not text.endswith(b"\n"):
        fields.append(("CONTAINER_PARTIAL_MESSAGE", b"true"))
    if mark is not None:
        fields += [("CONTAINER_LOG_EPOCH", mark[0].encode()), ("CONTAINER_LOG_ORDINAL", str(mark[1]).encode())]
    for k, v in extra_attributes(opts, info).items():
        key = re.sub(r"[^A-Z0-9_]", "_", k.upper()).lstrip("_")
        if key and not key[0].isdigit():
            fields.append((key[:64], v.encode()))
    return fields


def journal_datagram(fields: list[tuple[str, bytes]]) -> bytes:
    """journald's native protocol: ``KEY=value\\n``, or ``KEY\\n<le64 length>value\\n`` when the value
    holds a newline."""
    out = bytearray()
    for key, value in fields:
        if b"\n" in value:
            out += key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        else:
            out += key.encode() + b"=" + value + b"\n"
    return bytes(out)
