"""The machine store, in docker-machine's layout, so that hosts docker-machine made are berth's too:

    ~/.docker/machine/                     (``MACHINE_STORAGE_PATH`` overrides it)
        certs/ca.pem, ca-key.pem, cert.pem, key.pem        the store's CA and client certificate
        machines/NAME/config.json                          the host (docker-machine 0.16's format)
        machines/NAME/ca.pem, cert.pem, key.pem            what DOCKER_CERT_PATH points at
        machines/NAME/server.pem, server-key.pem, id_rsa   the host's server material, the SSH key

What a host's entry says is read into a typed ``Machine``; the engine's URL is
``tcp://IPAddress:EnginePort`` (the generic driver's ``EnginePort``, 2376 by default). A host's
state is asked of the host itself: its engine over mutual TLS (with the machine's client
certificate), else its SSH port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidParameter, NotFound

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]*\Z")  # docker-machine's host names
# what may stand in an ssh destination: never an option ("-o…"), never a second host ("a@b")
ADDRESS = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]*|[0-9A-Fa-f:.]+:[0-9A-Fa-f:.]*)\Z")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
DEFAULT_ENGINE_PORT = 2376
SHELLS = ("bash", "sh", "zsh", "fish", "powershell", "cmd")
ENV_VARS = ("DOCKER_TLS_VERIFY", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_MACHINE_NAME")


def store_path(environ: Mapping[str, str]) -> str:
    return environ.get("MACHINE_STORAGE_PATH") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".docker", "machine")


@dataclass(frozen=True)
class Machine:
    name: str
    driver: str
    ip: str
    engine_port: int
    ssh_user: str
    ssh_port: int
    ssh_key: str
    dir: str  # machines/NAME: DOCKER_CERT_PATH
    raw: dict[str, Any]  # config.json as it is (inspect shows it)

    @property
    def berth(self) -> dict[str, Any]:
        """What berth adds to a record it made (docker-machine's records have none): SSHOnly, Service, Version."""
        section = self.raw.get("Berth")
        return section if isinstance(section, dict) else {}

    @property
    def ssh_only(self) -> bool:
        return bool(self.berth.get("SSHOnly"))

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        if self.ssh_only:
            return f"ssh://{self.ssh_user}@{host}" + (f":{self.ssh_port}" if self.ssh_port != 22 else "")
        return f"tcp://{host}:{self.engine_port}"

    def cert(self, name: str) -> str:
        return os.path.join(self.dir, name)


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self.machines_dir = os.path.join(path, "machines")

    def names(self) -> list[str]:
        if not os.path.isdir(self.machines_dir):
            return []
        return sorted(n for n in os.listdir(self.machines_dir)
                      if NAME.match(n) and os.path.isfile(os.path.join(self.machines_dir, n, "config.json")))

    def get(self, name: str) -> Machine:
        if not NAME.match(name or ""):
            raise InvalidParameter(f"invalid machine name {name!r}: letters, digits, '.' and '-' only")
        path = os.path.join(self.machines_dir, name, "config.json")
        try:
            with open(path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise NotFound(f'Host does not exist: "{name}"') from None
        except (OSError, ValueError) as exc:
            raise InvalidParameter(f"machine {name}: cannot read {path}: {exc}") from None
        return parse(name, raw, os.path.dirname(path))

    def remove(self, name: str) -> None:
        """The host's record and material (its certificates, its SSH key) go from the store."""
        if not NAME.match(name or "") or name not in self.names() and not os.path.isdir(
                os.path.join(self.machines_dir, name)):
            raise NotFound(f'Host does not exist: "{name}"')
        shutil.rmtree(os.path.join(self.machines_dir, name))

    def all(self) -> list[Machine | tuple[str, str]]:
        """Every machine, or (name, why it cannot be read) for an entry that is broken."""
        out: list[Machine | tuple[str, str]] = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except InvalidParameter as exc:
                out.append((name, exc.message))
        return out


def parse(name: str, raw: Any, directory: str) -> Machine:
    """A host's config.json, field by field (a store may hold hand-edited or older entries)."""
    if not isinstance(raw, dict):
        raise InvalidParameter(f"machine {name}: config.json is not a JSON object")
    driver: dict[str, Any] = raw["Driver"] if isinstance(raw.get("Driver"), dict) else {}
    ip = driver.get("IPAddress") or ""
    if not isinstance(ip, str):
        raise InvalidParameter(f"machine {name}: Driver.IPAddress must be a string")

    def port(key: str, default: int) -> int:
        value = driver.get(key) or default
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise InvalidParameter(f"machine {name}: Driver.{key} must be a port number")
        return value

    user = str(driver.get("SSHUser") or "root")
    if ip and not ADDRESS.match(ip):
        raise InvalidParameter(f"machine {name}: Driver.IPAddress {ip!r} is neither an IP address nor a host name")
    if not USER.match(user):
        raise InvalidParameter(f"machine {name}: Driver.SSHUser {user!r} is not a user name")
    return Machine(name, str(raw.get("DriverName") or "generic"), ip, port("EnginePort", DEFAULT_ENGINE_PORT),
                   user, port("SSHPort", 22),
                   str(driver.get("SSHKeyPath") or driver.get("SSHKey") or ""), directory, raw)


# ---- the state of a host ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    state: str  # Running | Stopped | Error
    version: str  # the engine's, "" when it did not answer
    error: str


def _tls_context(m: Machine) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=m.cert("ca.pem"))
    ctx.load_cert_chain(m.cert("cert.pem"), m.cert("key.pem"))
    return ctx


def engine_version(m: Machine, timeout: float) -> str:
    """GET /version of the host's engine over mutual TLS with the machine's client certificate."""
    with socket.create_connection((m.ip, m.engine_port), timeout=timeout) as raw, \
            _tls_context(m).wrap_socket(raw, server_hostname=m.ip) as s:  # refused before TLS files matter
        s.settimeout(timeout)
        s.sendall(f"GET /version HTTP/1.1\r\nHost: {m.ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 1 << 20 and (chunk := s.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(head.split(b"\r\n", 1)[0].decode(errors="replace") or "no answer")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return str(json.loads(body).get("Version") or "")


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _ssh_version(m: Machine, timeout: float) -> str:
    """The engine's version asked on the host itself (an ssh-only machine has no TCP port)."""
    import subprocess

    argv = ssh_argv(m, ["berth version --format '{{.Server.Version}}'"], tty=False)
    argv[1:1] = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise OSError("the host did not answer over SSH in time") from None
    if r.returncode != 0:
        raise OSError((r.stderr or r.stdout).strip()[-200:] or f"ssh exited with {r.returncode}")
    return r.stdout.strip()


def status(m: Machine, timeout: float) -> Status:
    """Running when its engine answers; Stopped when it refuses and the host's SSH port answers (the engine
    is stopped) or when neither answers (the host is down); Running with an error when the engine is
    listening but does not answer as it should."""
    if not m.ip:
        return Status("Error", "", "the machine has no IP address")
    refused = False
    try:
        return Status("Running", _ssh_version(m, timeout) if m.ssh_only else engine_version(m, timeout), "")
    except ConnectionRefusedError:
        refused, why = True, ""
    except (OSError, ValueError, ssl.SSLError) as exc:
        why = f"Unable to query docker version: {exc}"
    if _reachable(m.ip, m.ssh_port, timeout):
        if refused:
            return Status("Stopped", "Unknown", "")
        return Status("Running", "Unknown", why)
    return Status("Stopped", "Unknown", "")


# ---- what points a client at a host ------------------------------------------------------------------
def _line(shell: str, key: str, value: str | None) -> str:
    """One variable set (``value``) or removed (None), in ``shell``'s syntax."""
    if shell == "fish":
        return f"set -e {key};" if value is None else f'set -gx {key} "{value}";'
    if shell == "powershell":
        return f"Remove-Item Env:\\\\{key}" if value is None else f'$Env:{key} = "{value}"'
    if shell == "cmd":
        return f"SET {key}=" if value is None else f"SET {key}={value}"
    return f"unset {key}" if value is None else f'export {key}="{value}"'


def _usage(shell: str, args: str, command: str) -> list[str]:
    how = {"fish": f"# eval ({command} {args})", "powershell": f"# & {command} {args} | Invoke-Expression",
           "cmd": f"REM @FOR /f \"tokens=*\" %i IN ('{command} {args}') DO @%i"}.get(shell, f"# eval $({command} {args})")
    return [f"{'REM' if shell == 'cmd' else '#'} Run this command to configure your shell: ", how]


def env_lines(m: Machine, shell: str, no_proxy: str | None, command: str = "berth machine") -> list[str]:
    """docker-machine env's output for ``shell``: the exports, then how to use them. ``no_proxy``: the
    current NO_PROXY (None: leave it alone), to which the host's address is added."""
    values: dict[str, str | None] = {"DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": m.url, "DOCKER_CERT_PATH": m.dir,
                                     "DOCKER_MACHINE_NAME": m.name}
    if m.ssh_only:  # no TLS: the engine is reached through ssh
        values.update(DOCKER_TLS_VERIFY=None, DOCKER_CERT_PATH=None)
    if no_proxy is not None:
        parts = [p for p in no_proxy.split(",") if p]
        values["NO_PROXY"] = ",".join(parts if m.ip in parts else [*parts, m.ip])
    return [*(_line(shell, k, v) for k, v in values.items()), *_usage(shell, f"env {m.name}", command)]


def unset_lines(shell: str, no_proxy: bool, command: str = "berth machine") -> list[str]:
    """``env --unset``: the variables removed again."""
    keys = [*ENV_VARS, *(["NO_PROXY"] if no_proxy else [])]
    return [*(_line(shell, k, None) for k in keys), *_usage(shell, "env -u", command)]


def config_flags(m: Machine) -> list[str]:
    """docker-machine config's output: the docker CLI's flags for the host."""
    if m.ssh_only:
        return [f"-H={m.url}"]
    return ["--tlsverify", f'--tlscacert="{m.cert("ca.pem")}"', f'--tlscert="{m.cert("cert.pem")}"',
            f'--tlskey="{m.cert("key.pem")}"', f"-H={m.url}"]


# ---- ssh and scp -----------------------------------------------------------------------------------
def ssh_options(m: Machine) -> list[str]:
    """OpenSSH's options for the host: its key, its port, and its host key checked against the one
    remembered in ``machines/NAME/known_hosts`` (taken the first time, never blindly after: a host
    whose key changed is refused, where docker-machine turned checking off)."""
    if not m.ip:
        raise InvalidParameter(f"machine {m.name} has no IP address")
    opts = ["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={m.cert('known_hosts')}", "-o", "LogLevel=ERROR"]
    if m.ssh_key:
        opts += ["-i", m.ssh_key]
    return opts


def ssh_argv(m: Machine, command: list[str], tty: bool) -> list[str]:
    return ["ssh", *ssh_options(m), "-p", str(m.ssh_port), *(["-t"] if tty else ["-T"]), "--",
            f"{m.ssh_user}@{m.ip}", *command]


def scp_argv(store: Store, args: list[str], recursive: bool) -> list[str]:
    """``[NAME:]SRC [NAME:]DST`` with each NAME: a machine of the store (at most one of them)."""
    machine: Machine | None = None
    out = []
    for arg in args:
        name, sep, path = arg.partition(":")
        if sep and NAME.match(name) and name in store.names():
            m = store.get(name)
            if machine is not None and machine.name != m.name:
                raise InvalidParameter("scp between two machines is not supported: copy through this host")
            machine = m
            host = f"[{m.ip}]" if ":" in m.ip else m.ip
            out.append(f"{m.ssh_user}@{host}:{path}")
        else:
            out.append(arg)
    if machine is None:
        raise InvalidParameter("scp needs a machine: NAME:PATH as the source or the destination")
    return ["scp", *ssh_options(machine), "-P", str(machine.ssh_port), *(["-r"] if recursive else []), "--", *out]
