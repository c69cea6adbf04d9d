"""docker cp and docker export: paths inside a container's root, tarred out or extracted into, on
descriptors from ``berth.linux.safepath`` only.

Reading (``stat``, ``tar_stream``): the path is resolved inside the root as the container sees it
(symlinks followed in the root; the last component is not followed, so copying a symlink copies the
link, as docker cp does); the tree below is walked by descriptor, files are opened ``O_NOFOLLOW |
O_NONBLOCK`` relative to their directory and checked with ``fstat`` before a byte is read, so a
container that swaps a directory for a symlink while the copy runs (CVE-2018-15664) cannot lead
the daemon to the host's files, and a FIFO costs nothing.

Writing (``extract``): every member's parent directory is resolved inside the root (never a joined
host path), and the member is made with ``*at`` calls relative to it; a symlink met where a file is
to be written is replaced, never followed. The archive is read with berth's own tar reader
(``berth.tarfmt``, bounded headers), not Python's tarfile.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from berth.errors import Conflict, InvalidParameter, NotFound
from berth.linux import safetree
from berth.linux.idmap import IDMap
from berth.linux.safepath import Root
from berth.tarfmt import BLOCKDEV, CHAR, DIR, FIFO, HARDLINK, REGULAR, SYMLINK, Entry, TarReader

_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_NAMED_PIPE = 1 << 25
_GO_DEVICE = 1 << 26
_GO_CHAR = 1 << 21
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_STICKY = 1 << 20


def _lstat(root: Root, path: str, container: str) -> os.stat_result:
    try:
        return root.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    except OSError as exc:
        raise InvalidParameter(f"{path}: {exc.strerror}") from None


def stat_header(root: Root, path: str, container: str) -> str:
    """The X-Docker-Container-Path-Stat value: base64 JSON with Go's FileMode bits."""
    st = _lstat(root, path, container)
    mode = stat.S_IMODE(st.st_mode) & 0o777
    for bit, go in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if st.st_mode & bit:
            mode |= go
    link = ""
    if stat.S_ISDIR(st.st_mode):
        mode |= _GO_DIR
    elif stat.S_ISLNK(st.st_mode):
        mode |= _GO_SYMLINK
        fd = root.open(path, os.O_PATH, follow=False)
        try:
            link = os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
    elif stat.S_ISFIFO(st.st_mode):
        mode |= _GO_NAMED_PIPE
    elif stat.S_ISCHR(st.st_mode):
        mode |= _GO_DEVICE | _GO_CHAR
    elif stat.S_ISBLK(st.st_mode):
        mode |= _GO_DEVICE
    name = os.path.basename(path.rstrip("/")) or "/"
    info = {"name": name, "size": st.st_size, "mode": mode,
            "mtime": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat().replace("+00:00", "Z"),
            "linkTarget": link}
    return base64.b64encode(json.dumps(info).encode()).decode()


# ---- tar out ----------------------------------------------------------------------------------
class _Out:
    """Builds tar records from descriptors (names never travel back into a path lookup); owners as
    the container sees them (``idmap``: a remapped container's host ids shifted back)."""

    def __init__(self, idmap: IDMap | None = None) -> None:
        self.links: dict[tuple[int, int], str] = {}  # (dev, ino) → first name of a hard-linked file
        self.idmap = idmap

    def header(self, name: str, st: os.stat_result, typ: bytes, linkname: str = "", size: int = 0) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = typ
        info.mode = stat.S_IMODE(st.st_mode)
        if self.idmap is not None:
            info.uid, info.gid = self.idmap.container_uid(st.st_uid), self.idmap.container_gid(st.st_gid)
        else:
            info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        info.linkname = linkname
        info.size = size
        if typ in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def entry(self, dirfd: int, name: str, st: os.stat_result, arcname: str) -> Iterator[bytes]:
        """The records of one entry ``name`` of directory ``dirfd`` (its data included)."""
        if stat.S_ISDIR(st.st_mode):
            yield self.header(arcname, st, tarfile.DIRTYPE)
        elif stat.S_ISLNK(st.st_mode):
            fd = safetree.open_child(dirfd, name)
            try:
                target = os.readlink("", dir_fd=fd)
            finally:
                os.close(fd)
            yield self.header(arcname, st, tarfile.SYMTYPE, target)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                yield self.header(arcname, st, tarfile.LNKTYPE, self.links[key])
                return
            fd = safetree.open_regular_child(dirfd, name)
            if fd < 0:
                return  # gone, or swapped for something else meanwhile: not copied
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    return
                if fst.st_nlink > 1:
                    self.links[key] = arcname
                size = fst.st_size
                yield self.header(arcname, fst, tarfile.REGTYPE, size=size)
                left = size
                while left:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break  # shrank while read: the record is padded to its announced size
                    yield chunk
                    left -= len(chunk)
                if left:
                    yield bytes(left)
                if size % 512:
                    yield bytes(512 - size % 512)
            finally:
                os.close(fd)
        elif stat.S_ISFIFO(st.st_mode):
            yield self.header(arcname, st, tarfile.FIFOTYPE)
        elif stat.S_ISCHR(st.st_mode):
            yield self.header(arcname, st, tarfile.CHRTYPE)
        elif stat.S_ISBLK(st.st_mode):
            yield self.header(arcname, st, tarfile.BLKTYPE)
        # sockets are not archived (as tar and docker do)


def tar_stream(root: Root, path: str, arcname: str, container: str, end: bool = True,
               idmap: IDMap | None = None) -> Iterator[bytes]:
    """A tar of ``path`` inside ``root`` (a file, link or directory tree) under ``arcname``, produced
    lazily. With ``end=False`` the end-of-archive blocks are left out, so that streams can be joined."""
    try:
        pfd, name = root.parent(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # the root itself
            yield from tree_stream(root.fd, arcname, end=end, include_top=True, idmap=idmap)
            return
        raise InvalidParameter(f"{path}: {exc.strerror}") from None
    try:
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container {container}") from None
        out = _Out(idmap)
        yield from out.entry(pfd, name, st, arcname)
        if stat.S_ISDIR(st.st_mode):
            try:
                dfd = safetree.open_child(pfd, name, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                dfd = -1
            if dfd >= 0:
                try:
                    for rel, dirfd, child, cst in safetree.walk(dfd):
                        yield from out.entry(dirfd, child, cst, f"{arcname}/{rel}")
                finally:
                    os.close(dfd)
    finally:
        os.close(pfd)
    if end:
        yield bytes(1024)


def tree_stream(dirfd: int, arcname: str = "", end: bool = True, include_top: bool = False,
                idmap: IDMap | None = None) -> Iterator[bytes]:
    """A tar of everything below the directory ``dirfd`` (names relative to it, or under ``arcname``)."""
    out = _Out(idmap)
    if include_top and arcname not in ("", "."):
        yield out.header(arcname, os.fstat(dirfd), tarfile.DIRTYPE)
    prefix = "" if arcname in ("", ".") else arcname + "/"
    for rel, parent, name, st in safetree.walk(dirfd):
        yield from out.entry(parent, name, st, prefix + rel)
    if end:
        yield bytes(1024)


def _opaque(dirfd: int, name: str) -> bool:
    """Whether overlayfs marked the upper directory ``name`` opaque (it hides the lower ones)."""
    try:
        fd = safetree.open_child(dirfd, name, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
            try:
                if os.getxattr(fd, attr) == b"y":
                    return True
            except OSError:
                continue
        return False
    finally:
        os.close(fd)


def layer_stream(upper_fd: int, hidden: Callable[[str], bool], idmap: IDMap | None = None,
                 on_skip: Callable[[str], None] | None = None) -> Iterator[bytes]:
    """``docker commit``'s layer: a tar of a container's overlayfs upper directory, its whiteouts as
    image layers carry them (a 0/0 character device NAME → ``.wh.NAME``, an opaque directory → its
    ``.wh..wh..opq``). ``hidden(path)``: the runtime's mount points, not the container's changes.
    Device nodes are left out (berth's layer reader refuses them), each reported to ``on_skip``."""
    out = _Out(idmap)
    for rel, parent, name, st in safetree.walk(upper_fd):
        if hidden("/" + rel):
            continue
        head, _, base = rel.rpartition("/")
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            wh = f"{head}/.wh.{base}" if head else f".wh.{base}"
            yield out.header(wh, st, tarfile.REGTYPE)
            continue
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            if on_skip is not None:
                on_skip("/" + rel)
            continue
        yield from out.entry(parent, name, st, rel)
        if stat.S_ISDIR(st.st_mode) and _opaque(parent, name):
            yield out.header(f"{rel}/.wh..wh..opq", st, tarfile.REGTYPE)
    yield bytes(1024)


# ---- tar in -----------------------------------------------------------------------------------
def _member_path(name: str) -> list[str]:
    """The components of a member name, relative to the extraction point; '..' is refused (it could
    only climb out of the extraction point, which docker's untar refuses too)."""
    comps = [c for c in name.split("/") if c not in ("", ".")]
    if ".." in comps:
        raise InvalidParameter(f"refused to extract {name!r}: it has a '..' component")
    return comps


def extract(src: BinaryIO, root: Root, path: str, container: str, no_overwrite_dir_non_dir: bool,
            owner: tuple[int, int] | None = None,
            writable: Callable[[str], None] | None = None, idmap: IDMap | None = None,
            mode: int | None = None) -> None:
    """Extract the tar ``src`` into the directory ``path`` of ``root``. ``owner`` (uid, gid) replaces
    the archive's owners (``copyUIDGID``) and ``mode`` the modes of its files and directories (COPY
    --chmod); owners are as the container sees them, shifted to host ids
    by ``idmap`` for a remapped container; ``writable(logical_path)`` raises when the resolved
    destination may not be written (a read-only rootfs or volume)."""
    try:
        dest_fd = root.open(path, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {container}") from None
    except OSError as exc:
        raise InvalidParameter(f"{path}: {exc.strerror}") from None
    try:
        if not stat.S_ISDIR(os.fstat(dest_fd).st_mode):
            raise InvalidParameter(f"extraction point is not a directory: {path}")
    finally:
        os.close(dest_fd)
    dest = root.resolve(path)
    if writable is not None:
        writable(dest)
    reader = TarReader(src)
    dirs: list[tuple[str, Entry]] = []
    try:
        for entry in reader:
            comps = _member_path(entry.name)
            if not comps:
                continue  # "./": the extraction point itself
            _extract_one(root, dest, comps, entry, reader, no_overwrite_dir_non_dir, owner, writable, idmap, mode)
            if entry.type == DIR:
                dirs.append(("/".join(comps), entry))
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise Conflict("container rootfs is marked read-only") from None
        if exc.errno == errno.ENOSPC:
            raise InvalidParameter("no space left on device while extracting") from None
        raise InvalidParameter(f"cannot extract: {exc.strerror}: {exc.filename or ''}".rstrip(": ")) from None
    for rel, entry in reversed(dirs):  # directory times last: their entries changed them
        try:
            fd = root.open(f"{dest}/{rel}", os.O_PATH | os.O_DIRECTORY, follow=False)
        except OSError:
            continue
        try:
            os.utime(f"/proc/self/fd/{fd}", (entry.mtime, entry.mtime))
        except OSError:
            pass
        finally:
            os.close(fd)


def _extract_one(root: Root, dest: str, comps: list[str], e: Entry, reader: TarReader, no_overwrite: bool,
                 owner: tuple[int, int] | None, writable: Callable[[str], None] | None,
                 idmap: IDMap | None, mode: int | None = None) -> None:
    parent_path = dest.rstrip("/") + "/" + "/".join(comps[:-1])
    name = comps[-1]
    if writable is not None and len(comps) > 1:
        writable(root.resolve(parent_path))
    pfd = root.mkdir_all(parent_path, 0o755, *((idmap.uid, idmap.gid) if idmap is not None else (-1, -1)))
    try:
        try:
            old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        is_dir = e.type == DIR
        if old is not None:
            old_dir = stat.S_ISDIR(old.st_mode)
            if old_dir != is_dir and (no_overwrite or old_dir):
                raise InvalidParameter(f"cannot overwrite {'directory' if old_dir else 'non-directory'} "
                                       f"{'/'.join(comps)!r} with {'directory' if is_dir else 'non-directory'}")
            if not old_dir:
                os.unlink(name, dir_fd=pfd)
        uid, gid = owner if owner is not None else (e.uid, e.gid)
        if idmap is not None:
            uid, gid = idmap.host_uid(uid), idmap.host_gid(gid)
        if e.type == DIR:
            if old is None:
                os.mkdir(name, 0o700, dir_fd=pfd)
        elif e.type == REGULAR:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                while chunk := reader.read_data():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        elif e.type == SYMLINK:
            target = e.linkname
            if not target.startswith("/"):
                # as docker's untar: a relative link may not point above the extraction point
                depth = len(comps) - 1
                for c in (c for c in target.split("/") if c not in ("", ".")):
                    depth += -1 if c == ".." else 1
                    if depth < 0:
                        raise InvalidParameter(f"invalid symlink {'/'.join(comps)!r} -> {target!r}")
            os.symlink(target, name, dir_fd=pfd)
        elif e.type == HARDLINK:
            lcomps = _member_path(e.linkname)
            if not lcomps:
                raise InvalidParameter(f"invalid hard link {'/'.join(comps)!r} -> {e.linkname!r}")
            lpfd, lname = root.parent(dest.rstrip("/") + "/" + "/".join(lcomps))
            try:
                os.link(lname, name, src_dir_fd=lpfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(lpfd)
            return  # the link shares the target's owner, mode and times
        elif e.type == FIFO:
            os.mkfifo(name, 0o600, dir_fd=pfd)
        elif e.type in (CHAR, BLOCKDEV):
            raise InvalidParameter(f"refused to extract device node {'/'.join(comps)!r}")
        else:
            raise InvalidParameter(f"refused to extract {'/'.join(comps)!r}: unsupported entry type")
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        if e.type != SYMLINK:
            fd = safetree.open_child(pfd, name)
            try:
                os.chmod(f"/proc/self/fd/{fd}", e.mode if mode is None or e.type not in (REGULAR, DIR)
                         else mode)  # fchmod() refuses O_PATH descriptors
                os.utime(f"/proc/self/fd/{fd}", (e.mtime, e.mtime))
            finally:
                os.close(fd)
    finally:
        os.close(pfd)


def copy_up(src: Root, path: str, dest_dir: str, on_skip: Callable[[str], None] | None = None) -> bool:
    """Copy the image's content at ``path`` (resolved inside ``src``) into the new, empty volume
    directory ``dest_dir``: what ``docker run`` does for a volume's first mount. False when there is
    nothing to copy (no such directory in the image)."""
    try:
        sfd = src.open(path, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    dfd = os.open(dest_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if safetree.scandir(dfd):
            return False  # the volume has content already: never overwritten
        st = os.fstat(sfd)
        safetree.copy_tree(sfd, dfd, on_skip)
        os.chown(f"/proc/self/fd/{dfd}", st.st_uid, st.st_gid)
        os.chmod(f"/proc/self/fd/{dfd}", stat.S_IMODE(st.st_mode))
        return True
    finally:
        os.close(sfd)
        os.close(dfd)

