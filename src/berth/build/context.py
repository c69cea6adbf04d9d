"""The build context: the request's tar (plain, gzip, bzip2 or xz) unpacked into a directory of the
build's own, through a ``safepath.Root`` so that nothing lands outside it whatever the names and
links in the tar; ``.dockerignore`` applied; the Dockerfile read.

A context is untrusted input. Names with ``..`` are refused; symlinks are kept as they are (they may
point anywhere: they are only ever resolved inside the context's root); device nodes are refused;
runs of zeros are written as holes, so a sparse file costs no disk; the whole is bounded
(``MAX_CONTEXT`` bytes of file data, ``MAX_ENTRIES`` entries, ``MAX_DEPTH`` directories deep).
"""

from __future__ import annotations

import bz2
import errno
import lzma
import os
import stat
from typing import Any, BinaryIO

from berth import tarfmt
from berth.build import digest, dockerignore
from berth.build.parse import MAX_SIZE
from berth.errors import InvalidParameter, NotFound, System
from berth.linux import safepath

MAX_CONTEXT = 16 << 30
MAX_ENTRIES = 1 << 20
MAX_DEPTH = 256  # directories: the walks over a context (.dockerignore, COPY's hash) go a level per call
SMALL_FILE = 32 << 20  # files up to this size are read whole (one at a time) and may come from the files cache
_ZEROS = bytes(1 << 20)
_ZERO_VIEW = memoryview(_ZEROS)


class _Decompressed:
    """bzip2 or xz, read in pieces (gzip goes through the image package's reader)."""

    def __init__(self, f: BinaryIO, d: bz2.BZ2Decompressor | lzma.LZMADecompressor) -> None:
        self.f, self.d, self.buf = f, d, b""

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n < 0 else n
        while True:
            if self.buf:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            if self.d.eof:
                return b""
            data = b""
            if self.d.needs_input:
                data = self.f.read(1 << 18)
                if not data:
                    raise InvalidParameter("the build context is truncated (its compressed stream ends early)")
            try:
                self.buf = self.d.decompress(data, max_length=1 << 18)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise InvalidParameter(f"the build context is not a valid compressed tar: {exc}") from None


def open_context(f: BinaryIO, gunzip: type) -> BinaryIO:
    """A reader of the context's tar, whatever its compression (gzip's reader is passed in)."""
    head = b""
    while len(head) < 6:
        chunk = f.read(6 - len(head))
        if not chunk:
            break
        head += chunk

    class _Rejoined:
        def __init__(self) -> None:
            self.head = head

        def read(self, n: int = -1) -> bytes:
            if self.head:
                out, self.head = self.head[:n] if n >= 0 else self.head, self.head[n:] if n >= 0 else b""
                return out
            return f.read(n)

    src: BinaryIO = _Rejoined()  # type: ignore[assignment]
    if head[:2] == b"\x1f\x8b":
        return gunzip(src)
    if head[:3] == b"BZh":
        return _Decompressed(src, bz2.BZ2Decompressor())  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return _Decompressed(src, lzma.LZMADecompressor())  # type: ignore[return-value]
    return src


def _parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"build context entry {name!r} has a '..' component")
    if len(parts) > MAX_DEPTH + 1:
        raise InvalidParameter(f"build context entry {name[:200]!r}... is nested more than {MAX_DEPTH} directories deep")
    return parts


def _write(fd: int, reader: tarfmt.TarReader, h: Any) -> int:
    written = 0
    while chunk := reader.read_data():
        h.update(chunk)
        n = len(chunk)
        if n <= len(_ZEROS) and _ZERO_VIEW[:n] == chunk:  # compared in place, nothing copied
            os.lseek(fd, n, os.SEEK_CUR)  # a hole
        else:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        written += n
    os.ftruncate(fd, written)  # a file that ends in a hole still has its size
    return written


def _small_file(reader: tarfmt.TarReader, e: tarfmt.Entry, pfd: int, name: str, cfd: int) -> str:
    """A small file: read whole, hashed, then linked from the files cache when the same content,
    mode and time are there (creating a file costs a millisecond on some disks, a link does not),
    else written and added to the cache. Its content hash (``digest``)."""
    parts = []  # the pieces as read (1 MiB at most each: no large buffer is allocated and faulted in)
    h = digest.hasher()
    while chunk := reader.read_data():
        h.update(chunk)
        parts.append(chunk)
    hexed = h.hexdigest()
    key = f"{hexed}-{e.mode & 0o7777:o}-{int(e.mtime * 1e9)}"
    try:
        os.link(key, name, src_dir_fd=cfd, dst_dir_fd=pfd, follow_symlinks=False)
        return hexed
    except FileNotFoundError:
        pass
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, e.mode & 0o7777)
        os.utime(fd, (e.mtime, e.mtime))
    finally:
        os.close(fd)
    try:
        os.link(name, key, src_dir_fd=pfd, dst_dir_fd=cfd, follow_symlinks=False)
    except FileExistsError:
        pass  # another build put it there meanwhile
    return hexed


def unpack(src: BinaryIO, dest: str, cache: str | None = None) -> dict[str, str]:
    """Unpack the context tar ``src`` into the (empty, berth's own) directory ``dest``; the sha256 of
    each regular file, by its path in the context (COPY's cache key needs them: they are taken as
    the bytes go by rather than read again). ``cache``: a directory of berth's own, on the same
    filesystem, where small files are kept by content, mode and time between builds."""
    digests: dict[str, str] = {}
    cfd = os.open(cache, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if cache else -1
    try:
        return _unpack(src, dest, digests, cfd)
    finally:
        if cfd >= 0:
            os.close(cfd)


def _unpack(src: BinaryIO, dest: str, digests: dict[str, str], cfd: int) -> dict[str, str]:
    total = entries = 0
    reader = tarfmt.TarReader(src, lenient_end=True)  # as the docker CLI may send it
    dirs: list[tuple[str, float]] = []
    with safepath.Root.at(dest, label="build context") as root:
        try:
            for e in reader:
                entries += 1
                if entries > MAX_ENTRIES:
                    raise InvalidParameter(f"the build context has more than {MAX_ENTRIES} entries")
                parts = _parts(e.name)
                if not parts:
                    continue
                path = "/" + "/".join(parts)
                if e.type == tarfmt.DIR:
                    os.close(root.mkdir_all(path, 0o755))
                    fd = root.open(path, os.O_RDONLY | os.O_DIRECTORY, follow=False)
                    try:
                        os.fchmod(fd, e.mode & 0o7777)
                    finally:
                        os.close(fd)
                    dirs.append((path, e.mtime))
                    continue
                pfd = root.mkdir_all("/" + "/".join(parts[:-1]), 0o755)
                name = parts[-1]
                try:
                    try:
                        old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                        if stat.S_ISDIR(old.st_mode):
                            raise InvalidParameter(f"build context entry {e.name!r} replaces a directory")
                        os.unlink(name, dir_fd=pfd)
                    except FileNotFoundError:
                        pass
                    if e.type == tarfmt.REGULAR:
                        total += e.size
                        if total > MAX_CONTEXT:
                            raise InvalidParameter(f"the build context is larger than {MAX_CONTEXT >> 30} GiB")
                        if cfd >= 0 and e.size <= SMALL_FILE:
                            digests[path] = _small_file(reader, e, pfd, name, cfd)
                            continue
                        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o600, dir_fd=pfd)
                        try:
                            h = digest.hasher()
                            _write(fd, reader, h)
                            digests[path] = h.hexdigest()
                            os.fchmod(fd, e.mode & 0o7777)
                            os.utime(fd, (e.mtime, e.mtime))
                        finally:
                            os.close(fd)
                    elif e.type == tarfmt.SYMLINK:
                        digests.pop(path, None)
                        os.symlink(e.linkname, name, dir_fd=pfd)
                        os.utime(name, (e.mtime, e.mtime), dir_fd=pfd, follow_symlinks=False)
                    elif e.type == tarfmt.HARDLINK:
                        lparts = _parts(e.linkname)
                        if not lparts:
                            raise InvalidParameter(f"build context entry {e.name!r} links to the context's root")
                        lpfd, lname = root.parent("/" + "/".join(lparts))
                        try:
                            os.link(lname, name, src_dir_fd=lpfd, dst_dir_fd=pfd, follow_symlinks=False)
                        finally:
                            os.close(lpfd)
                        target = "/" + "/".join(lparts)
                        if target in digests:
                            digests[path] = digests[target]
                    elif e.type == tarfmt.FIFO:
                        continue  # nothing a COPY could use; dockerd skips them too
                    else:
                        raise InvalidParameter(f"build context entry {e.name!r} is a device node")
                finally:
                    os.close(pfd)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise System(f"no space left for the build context under {dest}", cause=exc) from None
            raise InvalidParameter(f"cannot unpack the build context: {exc.strerror}: "
                                   f"{exc.filename or ''}".rstrip(": ")) from None
        for path, mtime in reversed(dirs):
            try:
                fd = root.open(path, os.O_RDONLY | os.O_DIRECTORY, follow=False)
            except OSError:
                continue
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
    return digests


def trim_cache(cache: str, limit: int) -> int:
    """Keep the small-files cache under ``limit`` bytes: when it is over, remove the entries used
    least recently (a link to or from an entry sets its ctime) until it is under three quarters of
    it. Entries a context links to right now are left. The bytes freed."""
    entries = []
    total = 0
    with os.scandir(cache) as it:
        for e in it:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += st.st_size
            entries.append((st.st_ctime_ns, st.st_size, st.st_nlink, e.name))
    if total <= limit:
        return 0
    freed = 0
    cfd = os.open(cache, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for _, size, links, name in sorted(entries):
            if total - freed <= limit * 3 // 4:
                break
            if links > 1:
                continue
            try:
                os.unlink(name, dir_fd=cfd)
            except FileNotFoundError:
                continue  # another build's trim took it
            freed += size
    finally:
        os.close(cfd)
    return freed


def read_small(dest: str, path: str, limit: int = MAX_SIZE) -> bytes | None:
    """A file of the context (resolved inside it), None when there is none."""
    with safepath.Root.at(dest, label="build context") as root:
        try:
            return safepath.read_file(root, path, limit)
        except NotFound:
            return None


def ignore(dest: str) -> dockerignore.Matcher:
    data = read_small(dest, ".dockerignore", 1 << 20)
    return dockerignore.read(data.decode("utf-8", "replace") if data else "")


def apply_ignore(dest: str, matcher: dockerignore.Matcher, keep: tuple[str, ...] = ()) -> None:
    """Remove what ``matcher`` excludes from the unpacked context (never following a symlink)."""
    if not matcher.patterns:
        return

    def walk(dfd: int, rel: str) -> bool:
        """Prune the directory ``dfd``; True when everything in it went."""
        empty = True
        for entry in os.scandir(dfd):
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    gone = walk(sub, path)
                finally:
                    os.close(sub)
                if gone and matcher.excluded(path) and path not in keep:
                    os.rmdir(entry.name, dir_fd=dfd)
                else:
                    empty = False
            elif matcher.excluded(path) and path not in keep:
                os.unlink(entry.name, dir_fd=dfd)
            else:
                empty = False
        return empty

    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk(fd, "")
    finally:
        os.close(fd)
