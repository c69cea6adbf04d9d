"""One SSH session to a host being provisioned (paramiko): commands with their exit codes and
output, and files put in place.

The host's key is checked against the machine's own ``known_hosts`` (OpenSSH's format, the file
``berth machine ssh`` uses too): taken the first time, refused ever after when it changes. Files
are staged over SFTP in a private directory and installed by a root command, so a login that is not
root (but may ``sudo -n``) provisions the same way.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from typing import Any

import paramiko

from berth.errors import Unavailable

OUTPUT_LIMIT = 1 << 20  # what a command may print before the rest is dropped


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str


class RemoteError(Unavailable):
    pass


class Remote:
    def __init__(self, host: str, port: int, user: str, key: str, known_hosts: str, timeout: float = 30) -> None:
        self.host, self.port, self.user, self.key = host, port, user, key
        self.known_hosts = known_hosts
        self.timeout = timeout
        self.client: paramiko.SSHClient | None = None
        self.sudo = ""  # "sudo -n " for a login that is not root
        self.stage = ""

    def __enter__(self) -> Remote:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        client = paramiko.SSHClient()
        if not os.path.exists(self.known_hosts):
            with open(os.open(self.known_hosts, os.O_WRONLY | os.O_CREAT, 0o600), "w"):
                pass
        client.load_host_keys(self.known_hosts)
        # a host not in known_hosts is taken and saved there (paramiko saves to the loaded file);
        # one whose key differs from the saved one raises BadHostKeyException whatever the policy
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        kwargs: dict[str, Any] = {"username": self.user, "port": self.port, "timeout": self.timeout,
                                  "banner_timeout": self.timeout, "auth_timeout": self.timeout}
        if self.key:
            kwargs.update(key_filename=self.key, look_for_keys=False, allow_agent=False)
        try:
            client.connect(self.host, **kwargs)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise RemoteError(f"the SSH host key of {self.host} is not the one remembered in {self.known_hosts} "
                              f"(it offered {exc.key.get_name()} {exc.key.get_base64()[:24]}…): refusing to connect. "
                              "If the host was reinstalled, remove its line from that file.") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(f"SSH to {self.user}@{self.host}:{self.port} refused the login: {exc}") from None
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            client.close()
            raise RemoteError(f"cannot reach {self.host}:{self.port} over SSH: {exc}") from None
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            if self.stage:
                try:
                    self.run(f"rm -rf {shlex.quote(self.stage)}", check=False, timeout=30)
                except RemoteError:
                    pass
                self.stage = ""
            self.client.close()
            self.client = None

    def run(self, script: str, *, root: bool = False, check: bool = True, timeout: float = 600,
            stdin: bytes | None = None) -> Result:
        """``sh -c script`` on the host (as root with ``root``); ``check``: a non-zero exit raises."""
        assert self.client is not None
        command = f"{self.sudo if root else ''}sh -c {shlex.quote(script)}"
        transport = self.client.get_transport()
        if transport is None:
            raise RemoteError(f"the SSH connection to {self.host} is closed")
        chan = transport.open_session(timeout=self.timeout)
        chan.settimeout(timeout)
        try:
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                if chan.recv_ready():
                    data = chan.recv(65536)
                    if len(out) < OUTPUT_LIMIT:
                        out += data
                elif chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    if len(err) < OUTPUT_LIMIT:
                        err += data
                elif chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                else:
                    chan.status_event.wait(0.05)
            rc = chan.recv_exit_status()
        except TimeoutError:
            raise RemoteError(f"{self.host}: a command took more than {timeout:.0f} s: {script[:80]}") from None
        finally:
            chan.close()
        result = Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and rc != 0:
            raise RemoteError(f"{self.host}: `{script[:120]}` exited with {rc}: "
                              f"{(result.err or result.out).strip()[-800:]}")
        return result

    def staging(self) -> str:
        if not self.stage:
            self.stage = self.run("mktemp -d /tmp/berth-machine.XXXXXX").out.strip()
        return self.stage

    def put(self, data: bytes, path: str, mode: int) -> None:
        """``data`` as ``path`` on the host, owned by root with ``mode``, replaced in one rename."""
        staged = f"{self.staging()}/{os.path.basename(path)}"
        assert self.client is not None
        with self.client.open_sftp() as sftp:
            with sftp.open(staged, "wb") as f:
                f.write(data)
        q = shlex.quote
        self.run(f"mkdir -p {q(os.path.dirname(path))} && install -o 0 -g 0 -m {mode:o} {q(staged)} {q(path)}.new "
                 f"&& mv -f {q(path)}.new {q(path)} && rm -f {q(staged)}", root=True)

    def upload(self, local: str, name: str) -> str:
        """A local file to the staging directory; returns its path there."""
        staged = f"{self.staging()}/{name}"
        assert self.client is not None
        with self.client.open_sftp() as sftp:
            sftp.put(local, staged)
        return staged
