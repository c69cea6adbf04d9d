"""The terminal side of attach, exec and run: the container's output demultiplexed to our stdout and
stderr, our stdin to the container, and signals forwarded as the docker CLI's --sig-proxy does."""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Any

import docker
from docker.utils.socket import frames_iter


def proxy_signals(client: Any, cid: str) -> None:
    """As the docker CLI's --sig-proxy (on by default): SIGINT, SIGTERM and SIGHUP go to the container."""
    import signal as sig

    def forward(signum: int, _frame: Any) -> None:
        threading.Thread(target=lambda: quiet_kill(client, cid, signum), daemon=True).start()

    for s in (sig.SIGINT, sig.SIGTERM, sig.SIGHUP):
        sig.signal(s, forward)


def quiet_kill(client: Any, cid: str, signum: int) -> None:
    try:
        client.kill(cid, signal=signum)
    except docker.errors.APIError:
        pass


def copy_frames(sock: Any, tty: bool = False) -> None:
    """Write a demultiplexed attach/exec stream to our stdout and stderr as it arrives."""
    for stream, data in frames_iter(sock, tty=tty):
        out = sys.stdout.buffer if stream != 2 else sys.stderr.buffer
        out.write(data)
        out.flush()


def pump_stdin(raw: socket.socket) -> None:
    try:
        while data := os.read(sys.stdin.fileno(), 65536):
            raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass
