"""Container logs as conmon writes them (k8s-file) and as the Engine API sends them.

conmon's k8s-file lines: ``<RFC3339Nano> <stdout|stderr> <F|P> <text>``, where P marks a partial
line (the text had no newline yet) and F a full one. Without a TTY the API multiplexes stdout and
stderr in frames of an 8-byte header (stream 1 or 2, three zero bytes, big-endian length) and the
payload; with a TTY it sends the raw bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

STDOUT, STDERR = 1, 2


@dataclass(frozen=True, slots=True)
class Line:
    time: str  # RFC 3339 with nanoseconds, as conmon wrote it
    stream: int
    data: bytes  # with its newline when the line was complete

    @property
    def unix(self) -> float:
        return parse_time(self.time)


def parse_time(text: str) -> float:
    base, _, frac = text.partition(".")
    tz = ""
    for sep in ("+", "-", "Z"):
        if sep in frac:
            frac, _, rest = frac.partition(sep)
            tz = sep + rest if sep != "Z" else "+00:00"
            break
    try:
        t = dt.datetime.fromisoformat(base + (tz or "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return t + (int(frac.ljust(9, "0")[:9]) / 1e9 if frac.isdigit() else 0.0)


def parse_lines(raw: bytes) -> Iterator[Line]:
    """Complete k8s-file records in ``raw`` (an incomplete last record is not yielded)."""
    for rec in raw.split(b"\n"):
        parts = rec.split(b" ", 3)
        if len(parts) < 3:
            continue
        ts, stream, tag = parts[0], parts[1], parts[2]
        text = parts[3] if len(parts) > 3 else b""
        yield Line(ts.decode(), STDERR if stream == b"stderr" else STDOUT, text if tag == b"P" else text + b"\n")


class LogReader:
    """Reads a k8s-file log from an offset, record by record (safe against a half-written last line).

    The file stays open once found, so its end can still be read after the container is removed;
    when the log is rotated (the path now names a new file), the reader finishes the old file and
    moves on to the new one from its start."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._pending = b""
        self._f: BinaryIO | None = None

    def read_new(self) -> list[Line]:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")
            except FileNotFoundError:
                return []
            self._f.seek(self.offset)
        data = self._f.read()
        if not data and os.fstat(self._f.fileno()).st_size < self.offset:  # truncated (conmon's size cap)
            self._f.seek(0)
            self.offset, self._pending = 0, b""
            data = self._f.read()
        if not data and self._rotated():
            self._f.close()
            self._f, self.offset = None, 0
            return self.read_new()
        self.offset += len(data)
        data = self._pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data
            return []
        self._pending = data[cut + 1:]
        return list(parse_lines(data[:cut]))

    def _rotated(self) -> bool:
        assert self._f is not None
        try:
            return os.stat(self.path).st_ino != os.fstat(self._f.fileno()).st_ino
        except FileNotFoundError:
            return False

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def rotated_files(path: str) -> list[str]:
    """The rotated logs of ``path``, oldest first (path.N … path.1, each maybe path.N.gz)."""
    out = []
    n = 1
    while True:
        found = next((f for f in (f"{path}.{n}", f"{path}.{n}.gz") if os.path.exists(f)), None)
        if found is None:
            break
        out.append(found)
        n += 1
    return list(reversed(out))


def read_rotated(path: str) -> list[Line]:
    """Every record of a rotated log file (gzip-compressed when it ends in .gz)."""
    import gzip

    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError):
        return []
    cut = data.rfind(b"\n")
    return list(parse_lines(data[:cut])) if cut >= 0 else []


def rotate(path: str, max_files: int, compress: bool = False) -> None:
    """path → path.1 → path.2 …, keeping ``max_files`` files in all (the current one included);
    with ``compress`` the rotated ones are gzipped (path.1.gz …), as dockerd's ``compress`` option."""
    for n in range(max_files - 1, 0, -1):
        src = path if n == 1 else f"{path}.{n - 1}"
        for suffix in ("", ".gz") if n > 1 else ("",):
            if os.path.exists(src + suffix):
                os.replace(src + suffix, f"{path}.{n}{suffix}")
                with contextlib.suppress(FileNotFoundError):  # one form of each number only
                    os.unlink(f"{path}.{n}{'' if suffix else '.gz'}")
    if max_files <= 1 and os.path.exists(path):
        os.unlink(path)
    for n in range(max(max_files, 1), max(max_files, 1) + 64):  # older leftovers, if max-file shrank
        gone = False
        for suffix in ("", ".gz"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}.{n}{suffix}")
                gone = True
        if not gone:
            break
    if compress and max_files > 1 and os.path.exists(f"{path}.1"):
        import gzip
        import shutil

        with open(f"{path}.1", "rb") as src_f, gzip.open(f"{path}.1.gz.tmp", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src_f, dst)
        os.replace(f"{path}.1.gz.tmp", f"{path}.1.gz")
        os.unlink(f"{path}.1")


def select(lines: list[Line], stdout: bool, stderr: bool, since: float, until: float | None,
           tail: int | None) -> list[Line]:
    out = [ln for ln in lines if (stdout and ln.stream == STDOUT or stderr and ln.stream == STDERR)
           and ln.unix >= since and (until is None or ln.unix <= until)]
    if tail is not None and tail >= 0:
        out = list(deque(out, maxlen=tail)) if tail else []
    return out
