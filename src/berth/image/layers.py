"""The layer store: each layer extracted once, under its chain ID, as an overlayfs lower directory.

    <root>/layers/<chain-id hex>/diff/        the extracted files (an overlayfs lowerdir)
                                /tar-split    how to write the layer's tar back byte for byte
                                /shadow/      contents of files a later entry of the same tar replaced
    <root>/tmp/<random>/                      staging; anything here at start is swept

Invariants: a layer directory exists under layers/ only once its extraction finished and was
synced; it is renamed in, never written in place. Extraction never follows a symlink, never writes
outside ``diff/``, and refuses absolute paths, ``..`` components, symlinks whose relative target
leaves the layer, hard links to anything outside it, and device nodes. OCI whiteouts become overlayfs
whiteouts: ``.wh.NAME`` → a 0/0 character device NAME, ``.wh..wh..opq`` → the directory's
``trusted.overlay.opaque=y`` xattr.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import stat
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from berth import tarfmt
from berth.errors import InvalidParameter, NotFound, System
from berth.image.streams import ChunkReader, HashingReader, open_layer

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_REC = struct.Struct("<cQ")  # record kind, payload length


def _record(kind: bytes, payload: bytes) -> bytes:
    return _REC.pack(kind, len(payload)) + payload


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def syncfs(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise System(f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Extracted:
    staging: str  # the staging directory (holds diff/, tar-split, shadow/)
    diff_id: str
    size: int  # bytes of the extracted files (regular file data)
    tar_size: int  # bytes of the uncompressed layer tar
    raw_digest: str = ""  # sha256 of the bytes as given (compressed or not)
    raw_size: int = 0


def _clean_name(name: str) -> list[str]:
    """Path components of a tar entry name; refuses absolute paths and '..'."""
    if name.startswith("/"):
        raise InvalidParameter(f"layer entry {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"layer entry {name!r} has a '..' component")
    return parts


class _Extractor:
    def __init__(self, staging: str) -> None:
        self.root = os.path.join(staging, "diff")
        self.shadow = os.path.join(staging, "shadow")
        os.mkdir(self.root, 0o755)
        self.split = open(os.path.join(staging, "tar-split"), "wb")
        self.dir_times: list[tuple[str, float]] = []
        self.size = 0
        self.file_record: dict[str, int] = {}  # path → record number of the F record holding its data
        self.records = 0

    def record(self, kind: bytes, payload: bytes) -> None:
        self.split.write(_record(kind, payload))
        self.records += 1

    def _parent(self, parts: list[str], name: str) -> str:
        """The parent directory of ``parts`` inside root, created if missing; never via a symlink."""
        path = self.root
        for comp in parts[:-1]:
            path = os.path.join(path, comp)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidParameter(f"layer entry {name!r} goes through {comp!r}, which is not a directory "
                                       "(a symlink or file in this layer)")
        return path

    def _make_room(self, path: str, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
            return
        rel = os.path.relpath(path, self.root)
        if stat.S_ISREG(st.st_mode) and rel in self.file_record:
            # an earlier entry's data lives in this file: keep it for tar-split, out of the rootfs
            os.makedirs(self.shadow, exist_ok=True)
            target = os.path.join(self.shadow, str(self.file_record.pop(rel)))
            os.rename(path, target)
            return
        os.unlink(path)

    def apply(self, reader: tarfmt.TarReader, e: tarfmt.Entry) -> None:
        parts = _clean_name(e.name)
        if not parts:  # the root directory itself
            self.record(b"H", e.raw_header)
            if e.type == tarfmt.DIR:
                os.chown(self.root, e.uid, e.gid)
                os.chmod(self.root, e.mode)
                self.dir_times.append((self.root, e.mtime))
            return
        parent = self._parent(parts, e.name)
        base = parts[-1]
        path = os.path.join(parent, base)
        rel = "/".join(parts)
        if base == OPAQUE:
            self.record(b"H", e.raw_header)
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX):
            self.record(b"H", e.raw_header)
            hidden = os.path.join(parent, base[len(WHITEOUT_PREFIX):])
            self._make_room(hidden, keep_dir=False)
            os.mknod(hidden, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
            return
        t = e.type
        if t in (tarfmt.CHAR, tarfmt.BLOCKDEV):
            raise InvalidParameter(f"layer entry {e.name!r} is a device node: not allowed in image layers")
        self._make_room(path, keep_dir=t == tarfmt.DIR)
        if t == tarfmt.DIR:
            self.record(b"H", e.raw_header)
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
            os.chown(path, e.uid, e.gid)
            os.chmod(path, e.mode)
            self._xattrs(path, e)
            self.dir_times.append((path, e.mtime))
        elif t == tarfmt.REGULAR:
            self.record(b"F", rel.encode("utf-8", "surrogateescape") + b"\0" + e.raw_header
                        + struct.pack("<Q", e.size))
            self.file_record[rel] = self.records - 1
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                while chunk := reader.read_data():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fchown(fd, e.uid, e.gid)
                os.fchmod(fd, e.mode)
                for key, value in e.xattrs.items():
                    if not key.startswith("trusted."):
                        os.setxattr(fd, key, value)
                os.utime(fd, (e.mtime, e.mtime))
            finally:
                os.close(fd)
        elif t == tarfmt.SYMLINK:
            self.record(b"H", e.raw_header)
            target = e.linkname
            if not target.startswith("/"):
                depth = len(parts) - 1
                for comp in target.split("/"):
                    if comp == "..":
                        depth -= 1
                        if depth < 0:
                            raise InvalidParameter(f"layer entry {e.name!r} is a symlink to {target!r}, "
                                                   "outside the layer")
                    elif comp not in ("", "."):
                        depth += 1
            os.symlink(target, path)
            os.lchown(path, e.uid, e.gid)
            os.utime(path, (e.mtime, e.mtime), follow_symlinks=False)
        elif t == tarfmt.HARDLINK:
            self.record(b"H", e.raw_header)
            tparts = _clean_name(e.linkname)
            if not tparts:
                raise InvalidParameter(f"layer entry {e.name!r} is a hard link to the layer's root")
            tpath = os.path.join(self._parent(tparts, e.linkname), tparts[-1])
            try:
                st = os.lstat(tpath)
            except FileNotFoundError:
                raise InvalidParameter(f"layer entry {e.name!r} is a hard link to {e.linkname!r}, which is not "
                                       "in the layer") from None
            if stat.S_ISDIR(st.st_mode):
                raise InvalidParameter(f"layer entry {e.name!r} is a hard link to a directory")
            os.link(tpath, path, follow_symlinks=False)
        elif t == tarfmt.FIFO:
            self.record(b"H", e.raw_header)
            os.mkfifo(path, 0o600)
            os.chown(path, e.uid, e.gid)
            os.chmod(path, e.mode)
        else:  # pragma: no cover - tarfmt refuses other types
            raise InvalidParameter(f"layer entry {e.name!r} has unsupported type {t!r}")

    def _xattrs(self, path: str, e: tarfmt.Entry) -> None:
        for key, value in e.xattrs.items():
            if not key.startswith("trusted."):  # never let a layer forge overlayfs metadata
                os.setxattr(path, key, value, follow_symlinks=False)

    def finish(self, trailer: bytes) -> None:
        self.record(b"T", trailer)
        self.split.close()
        for path, mtime in reversed(self.dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        self.size = disk_size(self.root)


def disk_size(root: str) -> int:
    """Docker's layer size: lstat sizes of everything but directories, each inode once."""
    total = 0
    seen: set[int] = set()
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
    return total


class LayerStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.layers = os.path.join(root, "layers")
        self.tmp = os.path.join(root, "tmp")
        os.makedirs(self.layers, mode=0o700, exist_ok=True)
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)

    def path(self, chain_id: str) -> str:
        return os.path.join(self.layers, _hex(chain_id))

    def diff_path(self, chain_id: str) -> str:
        """The layer's files: an overlayfs lower directory."""
        return os.path.join(self.path(chain_id), "diff")

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(self.path(chain_id))

    def new_staging(self) -> str:
        path = os.path.join(self.tmp, uuid.uuid4().hex)
        os.mkdir(path, 0o700)
        return path

    def extract(self, src: BinaryIO, staging: str | None = None, src_hashed: bool = False) -> Extracted:
        """Extract a (possibly compressed) layer tar into a new staging directory.

        Raises InvalidParameter for a malformed or unsafe layer; the staging directory is removed
        then. The caller commits the result with ``commit`` or throws it away with ``discard``.
        """
        staging = staging or self.new_staging()
        try:
            plain, raw = open_layer(src, src if src_hashed else None)  # src has digest, size, drain
            hashed = HashingReader(plain)
            reader = tarfmt.TarReader(hashed)  # type: ignore[arg-type]
            ex = _Extractor(staging)
            for entry in reader:
                ex.apply(reader, entry)
            hashed.drain()
            if raw is not None:
                raw.drain()
            ex.finish(reader.trailer)
        except BaseException as exc:
            self.discard(staging)
            if isinstance(exc, (EOFError, OSError)) and not isinstance(exc, FileNotFoundError) and \
                    getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
                raise InvalidParameter(f"invalid layer: {exc}") from None
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise System(f"no space left while extracting a layer under {self.root}", cause=exc) from None
            if type(exc).__name__ in ("BadGzipFile", "ZstdError"):
                raise InvalidParameter(f"invalid compressed layer: {exc}") from None
            raise
        raw_digest, raw_size = (raw.digest, raw.size) if raw is not None else (hashed.digest, hashed.size)
        return Extracted(staging, hashed.digest, ex.size, hashed.size, raw_digest, raw_size)

    def adopt(self, directory: str, tar_chunks: Iterator[bytes]) -> Extracted:
        """A new layer whose files are ``directory`` itself (an overlayfs upper directory of berth's
        own that nothing uses any more: a build step's), moved, not copied. ``tar_chunks`` is that
        directory as a layer tar: the diff ID and the tar-split come from it; its file contents are
        the directory's. The caller commits the result or discards it, as ``extract``'s."""
        staging = self.new_staging()
        try:
            hashed = HashingReader(ChunkReader(tar_chunks))  # type: ignore[arg-type]
            reader = tarfmt.TarReader(hashed)  # type: ignore[arg-type]
            with open(os.path.join(staging, "tar-split"), "wb") as split:
                for e in reader:
                    parts = _clean_name(e.name)
                    base = parts[-1] if parts else ""
                    if e.type == tarfmt.REGULAR and parts and not base.startswith(WHITEOUT_PREFIX):
                        split.write(_record(b"F", "/".join(parts).encode("utf-8", "surrogateescape") + b"\0"
                                            + e.raw_header + struct.pack("<Q", e.size)))
                        reader.skip_data()
                    else:
                        split.write(_record(b"H", e.raw_header))
                hashed.drain()
                split.write(_record(b"T", reader.trailer))
            os.rename(directory, os.path.join(staging, "diff"))
        except BaseException:
            self.discard(staging)
            raise
        diff = os.path.join(staging, "diff")
        return Extracted(staging, hashed.digest, disk_size(diff), hashed.size, hashed.digest, hashed.size)

    def commit(self, ex: Extracted, chain_id: str) -> bool:
        """Move a synced staging directory into place as ``chain_id``; False if it already exists."""
        if self.exists(chain_id):
            self.discard(ex.staging)
            return False
        syncfs(ex.staging)
        os.rename(ex.staging, self.path(chain_id))
        dfd = os.open(self.layers, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True

    def discard(self, staging: str) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def remove(self, chain_id: str) -> None:
        """Delete a layer: rename into tmp first (atomic), then remove the files."""
        path = self.path(chain_id)
        if not os.path.isdir(path):
            return
        doomed = os.path.join(self.tmp, "rm-" + uuid.uuid4().hex)
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def sweep(self, known: set[str]) -> list[str]:
        """Remove staging leftovers and layer directories no image references (after a crash)."""
        removed = []
        for name in os.listdir(self.tmp):
            shutil.rmtree(os.path.join(self.tmp, name), ignore_errors=True)
            removed.append(f"tmp/{name}")
        known_hex = {_hex(c) for c in known}
        for name in os.listdir(self.layers):
            if name not in known_hex:
                shutil.rmtree(os.path.join(self.layers, name), ignore_errors=True)
                removed.append(f"layers/{name}")
        return removed

    def tar_stream(self, chain_id: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The layer's tar exactly as it was loaded (its sha256 is the diff ID)."""
        base = self.path(chain_id)
        split_path = os.path.join(base, "tar-split")
        if not os.path.exists(split_path):
            raise NotFound(f"layer {chain_id} is not in the store")
        diff = os.path.join(base, "diff")
        shadow = os.path.join(base, "shadow")
        shadows = set(os.listdir(shadow)) if os.path.isdir(shadow) else set()
        with open(split_path, "rb") as f:
            recno = 0
            while head := f.read(_REC.size):
                kind, length = _REC.unpack(head)
                payload = f.read(length)
                if kind == b"F":
                    rel, _, rest = payload.partition(b"\0")
                    raw_header, size = rest[:-8], struct.unpack("<Q", rest[-8:])[0]
                    yield raw_header
                    src = os.path.join(shadow, str(recno)) if str(recno) in shadows else \
                        os.path.join(diff, rel.decode("utf-8", "surrogateescape"))
                    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    try:
                        left = size
                        while left:
                            data = os.read(fd, min(chunk, left))
                            if not data:
                                raise System(f"layer {chain_id} is damaged: {rel!r} is shorter than recorded")
                            left -= len(data)
                            yield data
                    finally:
                        os.close(fd)
                    pad = -size % tarfmt.BLOCK
                    if pad:
                        yield bytes(pad)
                else:
                    yield payload
                recno += 1
