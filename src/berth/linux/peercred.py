"""SO_PEERCRED: who is on the other end of a unix socket."""

from __future__ import annotations

import grp
import pwd
import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred | None:
    """Return the peer's pid/uid/gid, or None when the socket is not a connected unix socket."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid, uid, gid)


def user_name(uid: int) -> str:
    """The login name for ``uid``, or the number as text when it has no passwd entry."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_id(name: str) -> int:
    """The gid of group ``name`` (a name or a number); raises KeyError when there is none."""
    if name.isdigit():
        return int(name)
    return grp.getgrnam(name).gr_gid
