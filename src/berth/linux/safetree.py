"""Trees walked by descriptor, never by path: listing, walking, sizing and copying a directory that a
container can change while berth looks (a directory swapped for a symlink to "/" is never followed),
and lookups beneath a directory that follow no symlink. Paths inside a container's root are
resolved by ``safepath``; this module takes the descriptors it gives."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from berth.linux.safepath import RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, have_openat2, openat2, reopen, split


def scandir(dirfd: int) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of the directory ``dirfd`` (any descriptor of it), sorted by name."""
    fd = reopen(dirfd, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = sorted(os.listdir(fd))
        out = []
        for name in names:
            try:
                out.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed meanwhile
        return out
    finally:
        os.close(fd)


def open_regular_child(dirfd: int, name: str) -> int:
    """A readable descriptor of the entry ``name`` if it is a regular file, else -1: checked through
    an ``O_PATH`` descriptor before it is opened for reading, so a device node or a FIFO swapped in
    meanwhile is never opened (the daemon is outside the container's device cgroup)."""
    try:
        pfd = open_child(dirfd, name)
    except OSError:
        return -1
    try:
        if not stat.S_ISREG(os.fstat(pfd).st_mode):
            return -1
        return reopen(pfd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return -1
    finally:
        os.close(pfd)


def open_child(dirfd: int, name: str, flags: int = os.O_PATH) -> int:
    """The entry ``name`` of directory ``dirfd``, never following a symlink (ELOOP for one, unless
    ``flags`` is O_PATH, which names the link itself)."""
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)


def walk(dirfd: int, prefix: str = "") -> Iterator[tuple[str, int, str, os.stat_result]]:
    """Depth first, parents before children: (relative path, parent directory fd, name, lstat) of
    every entry below ``dirfd``. Directories are entered by descriptor, never by a path, so a rename
    or a symlink swap below cannot lead the walk out of the tree. The parent fd is valid only until
    the next item."""
    for name, st in scandir(dirfd):
        rel = f"{prefix}/{name}" if prefix else name
        yield rel, dirfd, name, st
        if stat.S_ISDIR(st.st_mode):
            try:
                child = open_child(dirfd, name, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                continue  # replaced by something else meanwhile
            try:
                yield from walk(child, rel)
            finally:
                os.close(child)


def tree_size(path: str) -> int:
    """Bytes of the non-directories below ``path`` (a directory of berth's own), walked by descriptor;
    0 when it is missing."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return sum(st.st_size for _rel, _p, _n, st in walk(fd) if not stat.S_ISDIR(st.st_mode))
    except OSError:
        return 0
    finally:
        os.close(fd)


def copy_tree(src: int, dst: int, on_skip: object = None) -> None:
    """Copy the directory tree ``src`` into the directory ``dst`` (both descriptors), keeping modes,
    owners and times; symlinks are copied as links (never followed); regular files by content;
    FIFOs made anew; sockets and devices skipped (``on_skip(rel)`` is called for each)."""
    for rel, pfd, name, st in walk(src):
        dparent_path = os.path.dirname(rel)
        dparent = open_dir_beneath(dst, dparent_path) if dparent_path else os.dup(dst)
        try:
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                try:
                    os.mkdir(name, 0o700, dir_fd=dparent)
                except FileExistsError:
                    pass
            elif stat.S_ISREG(st.st_mode):
                sfd = open_regular_child(pfd, name)
                if sfd < 0:
                    continue  # swapped for something else meanwhile
                try:
                    dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                  dir_fd=dparent)
                    try:
                        _copy_fd(sfd, dfd)
                    finally:
                        os.close(dfd)
                finally:
                    os.close(sfd)
            elif stat.S_ISLNK(st.st_mode):
                lfd = open_child(pfd, name)
                try:
                    target = os.readlink("", dir_fd=lfd)
                finally:
                    os.close(lfd)
                os.symlink(target, name, dir_fd=dparent)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(name, 0o600, dir_fd=dparent)
            else:
                if callable(on_skip):
                    on_skip(rel)
                continue
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dparent, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                _fchmodat(dparent, name, mode)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dparent, follow_symlinks=False)
        finally:
            os.close(dparent)
    # directory times last: creating their entries changed them
    for rel, _pfd, _name, st in walk(src):
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                os.utime(rel, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def _fchmodat(dirfd: int, name: str, mode: int) -> None:
    """chmod of an entry that is known not to be a symlink (checked through an O_PATH descriptor)."""
    fd = open_child(dirfd, name)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            return
        os.chmod(f"/proc/self/fd/{fd}", mode)  # fchmod() refuses O_PATH descriptors
    finally:
        os.close(fd)


def open_dir_beneath(dirfd: int, rel: str) -> int:
    """The directory ``rel`` below ``dirfd``, refusing any symlink on the way (for trees berth writes
    itself, such as a new volume: nothing there may point elsewhere)."""
    if have_openat2():
        return openat2(dirfd, rel, os.O_PATH | os.O_DIRECTORY, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    fd = os.dup(dirfd)
    try:
        for comp in split(rel):
            if comp == "..":
                raise OSError(errno.EXDEV, "'..' is not allowed here", rel)
            nfd = open_child(fd, comp, os.O_PATH | os.O_DIRECTORY)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def exists_beneath(dirfd: int, rel: str) -> bool:
    """Whether ``rel`` exists below ``dirfd`` with no symlink on the way (the last component may be
    one): how a path of an overlay's upper layer is looked up in a lower layer."""
    comps = split(rel)
    if not comps or ".." in comps:
        return False
    try:
        pfd = open_dir_beneath(dirfd, "/".join(comps[:-1])) if len(comps) > 1 else os.dup(dirfd)
    except OSError:
        return False
    try:
        os.stat(comps[-1], dir_fd=pfd, follow_symlinks=False)
        return True
    except OSError:
        return False
    finally:
        os.close(pfd)


def _copy_fd(src: int, dst: int) -> None:
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 30)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            break
        if n == 0:
            return
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
