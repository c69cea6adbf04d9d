"""systemd's socket-activation (LISTEN_FDS) and readiness (sd_notify) protocols.

sd_listen_fds: systemd passes sockets as fds 3..3+LISTEN_FDS-1 and sets LISTEN_PID to the pid it
started; LISTEN_FDNAMES (optional) names them, colon-separated. The variables are removed from the
environment once read, so that child processes do not mistake them for their own.
"""

from __future__ import annotations

import os
import socket

from berth.errors import InvalidParameter

SD_LISTEN_FDS_START = 3


def listen_fds(environ: dict[str, str] | None = None, *, unset: bool = True) -> list[tuple[int, str]]:
    """The (fd, name) pairs systemd passed to this process; empty when none were passed."""
    env = os.environ if environ is None else environ
    pid = env.get("LISTEN_PID", "")
    count = env.get("LISTEN_FDS", "")
    names = env.get("LISTEN_FDNAMES", "")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if not pid or not count:
        return []
    if not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit():
        raise InvalidParameter(f"invalid LISTEN_FDS value from systemd: {count!r}")
    n = int(count)
    name_list = names.split(":") if names else []
    out = []
    for i in range(n):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        out.append((fd, name_list[i] if i < len(name_list) else "unknown"))
    return out


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. "READY=1") to NOTIFY_SOCKET; False when there is no such socket."""
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto(state.encode(), addr)
        except OSError:
            return False
    return True
