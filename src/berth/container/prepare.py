"""What a start prepares inside the container package: the namespaces of the containers that
``container:<name>`` modes join, a legacy link's environment, and the /etc files berth writes for
the container (bound over its /etc/hostname, /etc/hosts and /etc/resolv.conf)."""

from __future__ import annotations

from collections.abc import Callable

from berth.container import hostconfig
from berth.container.model import Container
from berth.container.registry import Layout, Registry
from berth.errors import Conflict, NotFound


def in_cgroup(pid: int, cid: str) -> bool:
    """Whether process ``pid`` is in container ``cid``'s cgroup (so not a pid reused since)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return cid in f.read()
    except OSError:
        return False



def namespace_joins(registry: Registry, modes: dict[str, hostconfig.Mode]) -> dict[str, str]:
    """Namespace files of the containers that ``container:<name>`` modes name (they must run)."""
    joins: dict[str, str] = {}
    for field, ns in (("PidMode", "pid"), ("IpcMode", "ipc")):
        mode = modes[field]
        if mode.kind != "container":
            continue
        other = registry.get(mode.target)
        pid = other.state.pid
        if not other.running or not pid:
            raise Conflict(f"cannot join {ns} namespace of a non running container: {mode.target}")
        if ns == "ipc":
            donor = hostconfig.modes(other.host_config)["IpcMode"].kind
            if donor not in ("shareable", "host"):
                raise Conflict(f"cannot join IPC of container {other.id[:12]}: non-shareable IPC (hint: use "
                               "IpcMode:shareable for the donor container)")
            # the donor's /dev/shm is a tmpfs berth mounted on the host for it (never a path through
            # the donor's root, where it could have put a symlink to the host's /)
            joins["shm"] = "/dev/shm" if donor == "host" else registry.layout.shm(other.id)
        if not in_cgroup(pid, other.id):  # the pid is the container's still (not one reused)
            raise Conflict(f"cannot join {ns} namespace of a non running container: {mode.target}")
        joins[ns] = f"/proc/{pid}/ns/{ns}"
    return joins


def link_env(registry: Registry, ctr: Container, bridge_address: Callable[[str], str]) -> list[str]:
    """A legacy link's environment on the default bridge, as dockerd sets it at start (daemon/links):
    ALIAS_NAME, ALIAS_PORT and ALIAS_PORT_<port>_<PROTO>{,_ADDR,_PORT,_PROTO} for each exposed port,
    ALIAS_ENV_<name> for the linked container's environment (not HOME or PATH)."""
    if (ctr.host_config.get("NetworkMode") or "default") not in ("default", "bridge"):
        return []
    env: list[str] = []
    for link in ctr.host_config.get("Links") or []:
        target, _, alias = str(link).partition(":")
        target = target.strip("/")
        alias = alias.rsplit("/", 1)[-1] if alias else target
        try:
            child = registry.get(target)
        except NotFound:
            continue
        ip = bridge_address(child.id)
        prefix = alias.upper().replace("-", "_")
        exposed = []
        for key in child.config.get("ExposedPorts") or {}:
            number, _, kind = str(key).partition("/")
            if number.isdigit():
                exposed.append((int(number), kind.lower() or "tcp"))
        exposed.sort(key=lambda p: (p[0], p[1] != "tcp"))
        if exposed:
            env.append(f"{prefix}_PORT={exposed[0][1]}://{ip}:{exposed[0][0]}")
        for port, proto in exposed:
            base = f"{prefix}_PORT_{port}_{proto.upper()}"
            env += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}",
                    f"{base}_PROTO={proto}"]
        env.append(f"{prefix}_NAME=/{ctr.name.strip('/')}/{alias}")
        for e in child.config.get("Env") or []:
            name, eq, val = str(e).partition("=")
            if eq and name not in ("HOME", "PATH"):
                env.append(f"{prefix}_ENV_{name}={val}")
    return env


def write_etc(layout: Layout, ctr: Container, hosts: str, resolv: str) -> dict[str, str]:
    """The /etc files berth binds into the container: destination → the file under berth's directory."""
    hostname = ctr.config["Hostname"]
    files = {
        "/etc/hostname": (layout.dir(ctr.id, "hostname"), hostname + "\n"),
        "/etc/hosts": (layout.dir(ctr.id, "hosts"), hosts),
        "/etc/resolv.conf": (layout.dir(ctr.id, "resolv.conf"), resolv),
    }
    for _, (path, text) in files.items():
        with open(path, "w") as f:
            f.write(text)
    return {dest: path for dest, (path, _) in files.items()}

