"""inotify(7) on one directory, for the event loop: conmon writes a container's exit code into a file
in the exit directory, and the daemon learns of it without polling."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

from berth.errors import System

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
IN_CLOSE_WRITE = 0x08
IN_MOVED_TO = 0x80
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class DirWatch:
    """New or rewritten files in ``path``: ``fileno()`` for add_reader, ``read()`` for their names."""

    def __init__(self, path: str) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise System(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        if _libc.inotify_add_watch(self.fd, path.encode(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise System(f"inotify_add_watch {path}: {os.strerror(err)}")

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[str]:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        names, pos = [], 0
        while pos + _EVENT.size <= len(data):
            _, _, _, length = _EVENT.unpack_from(data, pos)
            raw = data[pos + _EVENT.size: pos + _EVENT.size + length]
            names.append(raw.rstrip(b"\0").decode())
            pos += _EVENT.size + length
        return names

    def close(self) -> None:
        os.close(self.fd)
