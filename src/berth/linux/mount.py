"""mount(2) and umount2(2) through libc, with errno turned into berth's error kinds."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from berth.errors import System

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise System(f"mount {fstype} on {target}: {os.strerror(err)}")


def umount(target: str, detach: bool = False) -> None:
    """Unmount ``target``; not mounted is not an error."""
    if _libc.umount2(target.encode(), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        if err in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            return
        raise System(f"umount {target}: {os.strerror(err)}")


def is_mounted(target: str) -> bool:
    real = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)
