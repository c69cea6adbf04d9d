"""``ssh://`` transport: each HTTP connection is one ``ssh HOST berth system dial-stdio`` process.

The ssh process's stdin and stdout are one end of a socketpair, so the HTTP client (and a later
hijacked attach stream) uses an ordinary socket, with ``shutdown(SHUT_WR)`` reaching the remote
daemon as a half-close. The remote runs ``berth system dial-stdio`` where berth is installed and
``docker system dial-stdio`` otherwise, so a host running dockerd, or berthd without the berth CLI,
answers too.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any
from urllib.parse import urlsplit

import requests.adapters
import urllib3
import urllib3.connection
from docker.transport.basehttpadapter import BaseHTTPAdapter

REMOTE_COMMAND = ("if command -v berth >/dev/null 2>&1; then exec berth system dial-stdio; "
                  "else exec docker system dial-stdio; fi")


def ssh_argv(url: str) -> list[str]:
    u = urlsplit(url)
    if not u.hostname:
        raise ValueError(f"invalid ssh address {url!r}")
    argv = ["ssh", "-o", "ConnectTimeout=30", "-T"]
    if u.username:
        argv += ["-l", u.username]
    if u.port:
        argv += ["-p", str(u.port)]
    return [*argv, "--", u.hostname, REMOTE_COMMAND]


class SSHCommandConnection(urllib3.connection.HTTPConnection):
    def __init__(self, argv: list[str], timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=theirs.fileno(), stdout=theirs.fileno(), close_fds=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(self.timeout)
        self.sock = ours

    def close(self) -> None:
        super().close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class SSHCommandPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, argv: list[str], timeout: float | None, maxsize: int) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self.argv = argv
        self.conn_timeout = timeout

    def _new_conn(self) -> SSHCommandConnection:
        return SSHCommandConnection(self.argv, self.conn_timeout)


class SSHCommandAdapter(BaseHTTPAdapter):
    __attrs__ = requests.adapters.HTTPAdapter.__attrs__ + ["pools", "argv", "timeout"]

    def __init__(self, url: str, timeout: float | None = 60, max_pool_size: int = 2) -> None:
        self.argv = ssh_argv(url)
        self.timeout = timeout
        self.max_pool_size = max_pool_size
        self.pools: dict[str, SSHCommandPool] = {}
        super().__init__()

    def get_connection(self, url: Any, proxies: Any = None) -> SSHCommandPool:
        pool = self.pools.get(url)
        if pool is None:
            pool = self.pools[url] = SSHCommandPool(self.argv, self.timeout, self.max_pool_size)
        return pool

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> SSHCommandPool:
        return self.get_connection(request.url, proxies)

    def request_url(self, request: Any, proxies: Any) -> str:
        return str(request.path_url)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
