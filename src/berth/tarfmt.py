"""A tar reader that keeps every header's raw bytes, so a layer can be written back byte for byte.

Python's tarfile hides the raw header blocks. Image layers are addressed by the sha256 of their
exact bytes (the diff ID), so berth records, for each entry, the header blocks as they were (pax and
GNU long-name headers included) and re-reads file contents from the extracted layer when saving;
what follows the last entry (end-of-archive blocks, padding) is kept as the trailer.

Supported: ustar, GNU and pax headers; regular files, hard links, symlinks, character and block
devices, directories, FIFOs; pax path/linkpath/size/uid/gid/mtime and SCHILY.xattr.*; GNU base-256
numbers. Refused with ``InvalidParameter``: sparse files, unknown entry types, bad checksums,
truncated archives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from berth.errors import InvalidParameter

BLOCK = 512
REGULAR, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_KNOWN = {REGULAR, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO, "7"}
MAX_META = 1 << 20  # pax / long-name header data of one entry, all extended headers together
MAX_EXTENDED = 32  # extended headers (pax, GNU long name/link) before one entry
MAX_NAME = 4096  # PATH_MAX: longer names and link targets are refused
MAX_SIZE = 1 << 40  # 1 TiB: a larger file size is taken for a forged header


@dataclass(slots=True)
class Entry:
    raw_header: bytes  # every header block of this entry, extended headers included
    name: str
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    @property
    def padded_size(self) -> int:
        return (self.size + BLOCK - 1) // BLOCK * BLOCK


def _number(field_: bytes, what: str) -> int:
    if field_ and field_[0] & 0x80:  # GNU base-256
        if field_[0] == 0xFF:
            raise InvalidParameter(f"corrupt tar header: negative {what} field")
        value = int.from_bytes(field_, "big", signed=False) & ~(0x80 << (8 * (len(field_) - 1)))
        return value
    text = field_.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidParameter(f"corrupt tar header: bad {what} field {text!r}") from None


def _string(field_: bytes) -> str:
    return field_.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(block: bytes) -> bool:
    stored = block[148:156]
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    try:
        want = _number(stored, "checksum")
    except InvalidParameter:
        return False
    signed = sum((b - 256 if b > 127 else b) for b in block[:148]) + 256 + \
        sum((b - 256 if b > 127 else b) for b in block[156:])
    return want in (unsigned, signed)


def _parse_pax(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise InvalidParameter("corrupt pax header")
        digits = data[pos:space]
        if not digits.isdigit() or len(digits) > 8:
            raise InvalidParameter("corrupt pax header: bad record length")
        length = int(digits)
        if length <= 0 or pos + length > len(data):
            raise InvalidParameter("corrupt pax header: record length out of range")
        record = data[space + 1: pos + length - 1]
        key, eq, value = record.partition(b"=")
        if not eq:
            raise InvalidParameter("corrupt pax header: record without '='")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


def _pax_int(pax: dict[str, bytes], key: str, limit: int) -> int | None:
    """A pax record that must be a decimal integer in 0..limit (size, uid, gid); None when absent."""
    value = pax.get(key)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 20 or int(value) > limit:
        raise InvalidParameter(f"corrupt pax header: bad {key} {value[:32]!r}")
    return int(value)


def _pax_time(pax: dict[str, bytes], key: str) -> float | None:
    value = pax.get(key)
    if value is None:
        return None
    try:
        t = float(value)
    except ValueError:
        raise InvalidParameter(f"corrupt pax header: bad {key} {value[:32]!r}") from None
    if not -(1 << 40) < t < (1 << 40):  # also refuses nan and inf
        raise InvalidParameter(f"corrupt pax header: bad {key} {value[:32]!r}")
    return t


class TarReader:
    """Iterate over entries of an uncompressed tar stream, reading nothing twice.

    After iterating an entry, call ``read_data`` (or ``skip_data``) before the next one. ``trailer``
    holds the bytes after the last entry once iteration ends.
    """

    def __init__(self, f: BinaryIO, lenient_end: bool = False) -> None:
        """``lenient_end``: an archive may stop right after an entry's data, without its padding or
        the end-of-archive blocks, as Go's reader allows (the docker CLI sends build contexts so
        when it adds a Dockerfile from stdin)."""
        self._f = f
        self.trailer = b""
        self._pending = 0  # padded data bytes of the current entry not yet consumed
        self._lenient = lenient_end
        self._ended = False  # the stream stopped in an entry's padding (lenient only)

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        need = n
        while need:
            chunk = self._f.read(need)
            if not chunk:
                raise InvalidParameter("unexpected end of tar archive (truncated)")
            chunks.append(chunk)
            need -= len(chunk)
        return b"".join(chunks)

    def _read_block(self) -> bytes | None:
        first = self._f.read(BLOCK)
        if not first:
            return None
        if len(first) < BLOCK:
            first += self._read_exact(BLOCK - len(first))
        return first

    def __iter__(self) -> Iterator[Entry]:
        while True:
            if self._pending:
                self.skip_data()
            raw = bytearray()
            pax: dict[str, bytes] = {}
            long_name = long_link = None
            extended = meta = 0
            while True:
                block = None if self._ended else self._read_block()
                if block is None:
                    if self._lenient and not raw:
                        return
                    raise InvalidParameter("unexpected end of tar archive (no end-of-archive marker)")
                if block == bytes(BLOCK):
                    rest = bytearray(block)
                    while chunk := self._f.read(65536):
                        rest += chunk
                        if len(rest) > 1 << 20:
                            raise InvalidParameter("tar archive has more than 1 MiB after its end marker")
                    if raw:
                        raise InvalidParameter("corrupt tar: extended header without an entry")
                    self.trailer = bytes(rest)
                    return
                if not _checksum_ok(block):
                    raise InvalidParameter("corrupt tar header (checksum mismatch)")
                raw += block
                typ = chr(block[156]) if block[156] else REGULAR
                size = _number(block[124:136], "size")
                if typ in ("x", "g", "L", "K"):
                    extended += 1
                    meta += size
                    if meta > MAX_META or extended > MAX_EXTENDED:
                        raise InvalidParameter("tar extended headers too large or too many for one entry")
                    padded = (size + BLOCK - 1) // BLOCK * BLOCK
                    data = self._read_exact(padded)
                    raw += data
                    if typ == "x":
                        pax.update(_parse_pax(data[:size]))
                    elif typ == "L":
                        long_name = data[:size].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                    elif typ == "K":
                        long_link = data[:size].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                    continue  # "g" (global) headers carry nothing berth uses
                if typ == "S":
                    raise InvalidParameter("tar contains a sparse file, which berth does not support")
                if typ not in _KNOWN:
                    raise InvalidParameter(f"tar contains an entry of unknown type {typ!r}")
                break
            name = _string(block[0:100])
            prefix = _string(block[345:500]) if block[257:262] == b"ustar" else ""
            if prefix and block[257:263] == b"ustar\0":
                name = prefix + "/" + name
            if long_name is not None:
                name = long_name
            if "path" in pax:
                name = pax["path"].decode("utf-8", "surrogateescape")
            link = long_link if long_link is not None else _string(block[157:257])
            if "linkpath" in pax:
                link = pax["linkpath"].decode("utf-8", "surrogateescape")
            pax_size = _pax_int(pax, "size", MAX_SIZE)
            if pax_size is not None:
                size = pax_size
            if size > MAX_SIZE:
                raise InvalidParameter(f"tar entry {name[:200]!r} claims a size of {size} bytes")
            if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME or \
                    len(link.encode("utf-8", "surrogateescape")) > MAX_NAME:
                raise InvalidParameter(f"tar entry name or link target longer than {MAX_NAME} bytes")
            if "\0" in name or "\0" in link:
                raise InvalidParameter("tar entry name or link target contains a NUL byte")
            uid, gid, mtime = _pax_int(pax, "uid", 0xFFFFFFFE), _pax_int(pax, "gid", 0xFFFFFFFE), _pax_time(pax, "mtime")
            # only regular files carry data; other types' size fields are ignored, as tar does
            data_size = size if typ in (REGULAR, "7") else 0
            uid = uid if uid is not None else _number(block[108:116], "uid")
            gid = gid if gid is not None else _number(block[116:124], "gid")
            if uid > 0xFFFFFFFE or gid > 0xFFFFFFFE:
                raise InvalidParameter(f"tar entry {name[:200]!r} has an out-of-range owner {uid}:{gid}")
            if mtime is None:
                mtime = float(_number(block[136:148], "mtime"))
                if mtime >= 1 << 40:
                    raise InvalidParameter(f"tar entry {name[:200]!r} has an out-of-range time")
            entry = Entry(
                raw_header=bytes(raw), name=name, type=REGULAR if typ == "7" else typ, size=data_size,
                mode=_number(block[100:108], "mode") & 0o7777,
                uid=uid, gid=gid, mtime=mtime,
                linkname=link,
                devmajor=min(_number(block[329:337], "devmajor"), 0xFFFFFFFF) if typ in (CHAR, BLOCKDEV) else 0,
                devminor=min(_number(block[337:345], "devminor"), 0xFFFFFFFF) if typ in (CHAR, BLOCKDEV) else 0,
                xattrs={k[len("SCHILY.xattr."):]: v for k, v in pax.items() if k.startswith("SCHILY.xattr.")},
            )
            self._pending = entry.padded_size
            self._data_left = entry.size
            yield entry

    def read_data(self, n: int = 1 << 20) -> bytes:
        """Up to ``n`` bytes of the current entry's data; b"" when it is all read."""
        if self._data_left <= 0:
            return b""
        chunk = self._f.read(min(n, self._data_left))
        if not chunk:
            raise InvalidParameter("unexpected end of tar archive (truncated file data)")
        self._data_left -= len(chunk)
        self._pending -= len(chunk)
        return chunk

    def skip_data(self) -> None:
        while self._data_left > 0:
            self.read_data()
        if self._pending:
            if self._lenient:  # the padding may be missing at the very end
                while self._pending and (chunk := self._f.read(self._pending)):
                    self._pending -= len(chunk)
                self._ended = self._pending > 0
            else:
                self._read_exact(self._pending)
            self._pending = 0
