"""Network namespaces as files (as ``ip netns add`` makes them), and running code inside one.

A namespace is made by a short-lived thread that unshares its network namespace and bind-mounts
``/proc/thread-self/ns/net`` onto the file; the thread then ends and the mount keeps the namespace.
The directory holding the files is a shared bind mount of itself, so that removing a file's mount
also reaches the copies that mount namespaces created meanwhile hold.

``inside(path, fn)`` runs ``fn`` in a fresh thread that has entered the namespace: sockets it opens
(netlink, DNS) stay in that namespace after the thread is gone. The calling thread never moves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from berth.errors import System
from berth.linux.mount import is_mounted, mount, umount

T = TypeVar("T")
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_SHARED = 1 << 20
MS_REC = 16384


def _errno_error(what: str) -> System:
    err = ctypes.get_errno()
    return System(f"{what}: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=run, name="berth-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def prepare_dir(directory: str) -> None:
    """Make ``directory`` a shared mount of itself (once)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    if not is_mounted(directory):
        mount(directory, directory, "none", MS_BIND)
    mount("none", directory, "none", MS_SHARED | MS_REC)


def create(path: str, then: Callable[[], T] | None = None) -> T | None:
    """A new, empty network namespace (only ``lo``, down) kept alive by a bind mount on ``path``;
    ``then`` runs inside it before the thread ends (to open sockets there without another setns)."""
    with open(path, "x"):
        pass

    def work() -> T | None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _errno_error("unshare(CLONE_NEWNET)")
        mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, "none", MS_BIND)
        return then() if then is not None else None

    try:
        return _in_thread(work)
    except BaseException:
        os.unlink(path)
        raise


def remove(path: str) -> None:
    """Unmount and delete a namespace file; gone already is not an error."""
    umount(path, detach=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def inside(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that has joined the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def work() -> T:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise _errno_error(f"setns({path})")
        return fn()

    try:
        return _in_thread(work)
    finally:
        os.close(fd)

