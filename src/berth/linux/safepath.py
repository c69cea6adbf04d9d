"""Every host-side operation on a path inside a container's root or a volume: resolved *inside* that
root, then done on the descriptor the resolution returned.

Why: a container controls the files under its root and may change them at any moment. Joining
``rootfs + path`` and opening the result follows the container's symlinks on the host (``x -> /``
makes ``rootfs/x/etc/shadow`` the host's), and checking a path before reopening it by name is a
race the container wins by swapping a symlink in between (the CVE-2018-15664 class).

How:
- ``Root`` is a directory descriptor that stands for ``/``. ``Root.open`` resolves a path with
  ``openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``: the kernel follows symlinks as a
  chroot would (an absolute target starts again at the root, ``..`` stops there) and never leaves
  the root, whatever the container renames meanwhile. Kernels without openat2 (before 5.6) get a
  component walk: each component opened ``O_PATH | O_NOFOLLOW`` relative to the previous descriptor,
  symlinks read with ``readlinkat`` and resolved by this module, ``..`` taken from its own stack of
  descriptors, never from the kernel.
- A ``Root`` may carry mounts (logical path → directory): a stopped container's volumes, which are
  not mounted anywhere, are crossed into as the running container would see them. A running
  container's root is ``/proc/PID/root``, whose lookups cross its real mounts.
- Everything after the resolution uses descriptors: ``*at`` calls relative to a resolved directory,
  ``fstat`` of what was opened, and ``/proc/self/fd/N`` only where Linux has no ``*at`` form
  (reopening an ``O_PATH`` descriptor to read it).
- Reads take regular files only, opened ``O_NONBLOCK`` after an ``O_PATH`` check, with a size cap:
  a FIFO, a device or a 10 GB file where ``/etc/passwd`` should be is an error, never a hang or a
  daemon full of memory.

Errors are ``OSError`` from the primitives (callers choose the words), and berth's kinds from the
helpers that answer API requests (``read_file``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass, field

from berth.errors import InvalidParameter, NotFound

SYS_OPENAT2 = 437  # the same number on every architecture (the new syscall table)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
MAX_SYMLINKS = 40  # as the kernel's own limit
EAGAIN_RETRIES = 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_have_openat2: bool | None = None
_force_walk = False


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2); raises OSError (ENOSYS where the kernel lacks it)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def have_openat2() -> bool:
    global _have_openat2
    if _force_walk:
        return False
    if _have_openat2 is None:
        try:
            os.close(openat2(-100, "/", os.O_PATH, 0, RESOLVE_IN_ROOT))
            _have_openat2 = True
        except OSError as exc:
            _have_openat2 = exc.errno not in (errno.ENOSYS, errno.EPERM)  # EPERM: a seccomp filter refused it
    return _have_openat2


def force_walk(enabled: bool) -> None:
    """Use the component walk even where openat2 exists (tests of the fallback)."""
    global _force_walk
    _force_walk = enabled


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def clean(path: str) -> str:
    """The absolute, lexically clean form of a path inside a root ("/a/../b/" → "/b")."""
    out: list[str] = []
    for comp in split(path):
        if comp == "..":
            if out:
                out.pop()
        else:
            out.append(comp)
    return "/" + "/".join(out)


def is_within(path: str, base: str) -> bool:
    """Whether the clean path ``path`` is ``base`` or below it (component-wise, not a string prefix)."""
    path, base = clean(path), clean(base)
    return base == "/" or path == base or path.startswith(base + "/")


def reopen(fd: int, flags: int) -> int:
    """A new descriptor for what the ``O_PATH`` descriptor ``fd`` names, opened with ``flags``. Linux
    has no ``*at`` form for this: it goes through ``/proc/self/fd`` (a magic link to that very file,
    not a path lookup)."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


@dataclass
class Root:
    """A directory that stands for ``/`` in every resolution. Owns its descriptors: ``close()`` (or
    ``with``) releases them."""

    fd: int
    mounts: dict[str, int] = field(default_factory=dict)  # clean logical path → O_PATH directory fd
    label: str = ""  # for messages

    @classmethod
    def at(cls, path: str, mounts: dict[str, str] | None = None, label: str = "") -> Root:
        """The root at host path ``path`` (trusted: a directory of berth's own, or /proc/PID/root),
        with ``mounts`` (logical path → host directory of berth's own) crossed into."""
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        root = cls(fd, label=label or path)
        try:
            for logical, host in (mounts or {}).items():
                root.mounts[clean(logical)] = os.open(host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            root.close()
            raise
        return root

    @classmethod
    def of_process(cls, pid: int, cgroup_mark: str, label: str = "") -> Root:
        """The root of process ``pid`` as it sees it (its mounts crossed), opened through a pinned
        ``/proc/PID`` descriptor after checking that the process is in a cgroup whose path contains
        ``cgroup_mark``: if the process died and its pid went to another one meanwhile, the open fails
        instead of handing out that other process's root (the host's, say)."""
        pfd = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            cfd = os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=pfd)
            try:
                groups = os.read(cfd, 1 << 16).decode(errors="replace")
            finally:
                os.close(cfd)
            if cgroup_mark not in groups:
                raise ProcessLookupError(errno.ESRCH, f"process {pid} is not in {cgroup_mark}'s cgroup")
            fd = os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        finally:
            os.close(pfd)
        return cls(fd, label=label or f"/proc/{pid}/root")

    def close(self) -> None:
        for fd in [self.fd, *self.mounts.values()]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = -1
        self.mounts = {}

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- resolution ------------------------------------------------------------------------
    def open(self, path: str, flags: int = os.O_PATH, mode: int = 0, follow: bool = True) -> int:
        """A descriptor for ``path`` resolved inside this root. ``follow=False`` leaves a final
        symlink unfollowed (with ``O_PATH`` the descriptor then names the link itself). Raises
        OSError: ENOENT, ENOTDIR, ELOOP (too many links; or a final symlink opened without O_PATH)."""
        if not follow:
            flags |= os.O_NOFOLLOW
        if not self.mounts and have_openat2():
            for _ in range(EAGAIN_RETRIES):
                try:
                    return openat2(self.fd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:  # EAGAIN: a rename raced with ".."; the kernel asks to retry
                        raise
            # A container that renames without end can make every retry fail (a CPU-burning storm):
            # the walk does its own "..", which renames cannot disturb.
        fd = self._walk(path, follow)
        if flags & ~(os.O_NOFOLLOW | os.O_CLOEXEC) == os.O_PATH:
            return fd
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, "is a symbolic link", path)
            return reopen(fd, flags & ~os.O_NOFOLLOW)
        finally:
            os.close(fd)

    def _walk(self, path: str, follow_last: bool) -> int:
        """RESOLVE_IN_ROOT done by hand (see the module header): an O_PATH descriptor."""
        stack: list[int] = [os.dup(self.fd)]
        logical: list[str] = []
        parts = split(path)
        hops = 0
        try:
            while parts:
                comp = parts.pop(0)
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                        logical.pop()
                    continue
                here = "/" + "/".join([*logical, comp])
                mounted = self.mounts.get(here)
                if mounted is not None:
                    stack.append(os.dup(mounted))
                    logical.append(comp)
                    continue
                fd = os.open(comp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                    try:
                        target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                    if target.startswith("/"):
                        for extra in stack[1:]:
                            os.close(extra)
                        del stack[1:]
                        logical.clear()
                    parts = split(target) + parts
                    continue
                if parts and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append(fd)
                logical.append(comp)
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    def resolve(self, path: str, follow: bool = True) -> str:
        """The logical path ``path`` resolves to (symlinks followed inside the root), for messages and
        mount matching. Only the walk knows it; the kernel's resolution does not report it."""
        parts, hops = split(path), 0
        logical: list[str] = []
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if logical:
                    logical.pop()
                continue
            here = "/" + "/".join([*logical, comp])
            if here in self.mounts:
                logical.append(comp)
                continue
            try:
                fd = self.open(here, os.O_PATH, follow=False)
            except OSError:
                logical.append(comp)
                logical.extend(p for p in parts)
                break
            try:
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (parts or follow):
                    target = os.readlink("", dir_fd=fd)
                    hops += 1
                    if hops > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                    if target.startswith("/"):
                        logical.clear()
                    parts = split(target) + parts
                    continue
            finally:
                os.close(fd)
            logical.append(comp)
        return clean("/".join(logical))

    def lstat(self, path: str) -> os.stat_result:
        fd = self.open(path, os.O_PATH, follow=False)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def parent(self, path: str) -> tuple[int, str]:
        """(O_PATH descriptor of the directory that holds ``path``'s last component, that name): for
        creating, replacing or removing the entry itself with ``*at`` calls."""
        comps = split(clean(path))
        if not comps:
            raise OSError(errno.EINVAL, "the root has no parent", path)
        fd = self.open("/" + "/".join(comps[:-1]), os.O_PATH | os.O_DIRECTORY)
        return fd, comps[-1]

    def mkdir_all(self, path: str, mode: int = 0o755, uid: int = -1, gid: int = -1) -> int:
        """``mkdir -p`` inside the root (symlinks on the way followed inside it, as a chroot would):
        an O_PATH descriptor of the directory. Directories it makes get ``mode`` and, when given, the
        owner ``uid``/``gid``; existing ones are left as they are."""
        done: list[str] = []
        # Along the path as it resolves (a dangling symlink on the way is created where it points,
        # inside the root); each step is resolved again, so a swap meanwhile still stays inside.
        for comp in split(self.resolve(path)):
            done.append(comp)
            here = "/" + "/".join(done)
            try:
                os.close(self.open(here, os.O_PATH | os.O_DIRECTORY))
                continue
            except FileNotFoundError:
                pass
            pfd, name = self.parent(here)
            try:
                try:
                    os.mkdir(name, mode, dir_fd=pfd)
                except FileExistsError:
                    pass  # made meanwhile, or a dangling symlink: the open below decides
                else:
                    if uid >= 0 or gid >= 0:
                        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)
        return self.open("/" + "/".join(done), os.O_PATH | os.O_DIRECTORY)


def open_regular(root: Root, path: str, limit: int) -> tuple[int, int]:
    """(readable descriptor, size) of the regular file ``path``; never blocks (a FIFO is refused before
    it is opened for reading). Raises NotFound, or InvalidParameter for anything but a regular file or
    a file over ``limit`` bytes."""
    try:
        pfd = root.open(path, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidParameter(f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidParameter(f"{path} is not a regular file")
        if st.st_size > limit:
            raise InvalidParameter(f"{path} is larger than {limit} bytes")
        fd = reopen(pfd, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    finally:
        os.close(pfd)
    return fd, st.st_size


def read_file(root: Root, path: str, limit: int = 1 << 20) -> bytes:
    """The content of the regular file ``path`` inside ``root``, at most ``limit`` bytes (a file that
    grows past it while read is cut there). Errors as ``open_regular``."""
    fd, _ = open_regular(root, path, limit)
    try:
        chunks, total = [], 0
        while total < limit:
            chunk = os.read(fd, min(65536, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
