"""The OCI runtime spec (config.json) for a container: Docker's defaults, the image config, the
create request. Only what berth honours is translated; the rest is refused by the backend."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidParameter, NotFound
from berth.linux import safepath
from berth.linux.safepath import Root

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Defaults are tuples and frozen values: a spec is built from fresh copies of them, so nothing one
# container's options change can reach the next container (a module-level list once did).
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE")
MASKED: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap")
READONLY: tuple[str, ...] = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """One device cgroup rule: allow or deny ``access`` (r, w, m) to type c/b/a, major:minor (-1: any)."""

    allow: bool
    type: str = "a"
    major: int = -1
    minor: int = -1
    access: str = "rwm"

    def oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allow": self.allow, "access": self.access}
        if self.type != "a":
            out["type"] = self.type
        if self.major >= 0:
            out["major"] = self.major
        if self.minor >= 0:
            out["minor"] = self.minor
        return out


# Docker's default device cgroup: deny all, then the usual character devices.
DEFAULT_DEVICE_RULES: tuple[DeviceRule, ...] = (DeviceRule(False),) + tuple(
    DeviceRule(True, "c", major, minor)
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, -1), (10, 200)))
PASSWD_LIMIT = 4 << 20  # /etc/passwd or /etc/group larger than this is refused, not read into memory


def nofile_limit() -> int:
    """Never ask the runtime for more open files than this daemon may have (20000 on these hosts)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(hard if hard != resource.RLIM_INFINITY else 1048576, 1048576)


def _read_db(root: Root, rel: str) -> list[list[str]]:
    """/etc/passwd or /etc/group of the container, resolved inside its root, regular files only,
    never blocking, at most PASSWD_LIMIT bytes; [] when it does not exist."""
    try:
        data = safepath.read_file(root, rel, PASSWD_LIMIT)
    except NotFound:
        return []
    except InvalidParameter as exc:
        raise InvalidParameter(f"unable to read the container's {rel}: {exc.message}") from None
    text = data.decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def resolve_user(root: Root, user: str, group_add: tuple[str, ...] = ()) -> User:
    """"name", "uid", "name:group", "uid:gid" → the user, as Docker resolves it; ``group_add``
    (``--group-add``: names or ids) joins the additional groups. The home directory is found here
    too, so that the runtime never reads the container's /etc/passwd itself (it does, to set HOME,
    when HOME is missing: a FIFO there would hang it)."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    numeric = name.isdigit() and (not group or group.isdigit()) and not group_add
    try:
        passwd = _read_db(root, "/etc/passwd")
        groups = _read_db(root, "/etc/group")
    except InvalidParameter:
        if not numeric:
            raise
        passwd = groups = []  # "uid[:gid]" needs no name: a broken passwd only loses the extra groups
    uid = gid = None
    login = None
    home = "/"
    for row in passwd:
        if len(row) >= 4 and (row[0] == name or row[2] == name) and row[2].isdigit() and row[3].isdigit():
            uid, gid, login = int(row[2]), int(row[3]), row[0]
            if len(row) >= 6 and row[5].startswith("/"):
                home = row[5]
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
        if len(name) > 10:
            raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
    if group:
        for row in groups:
            if len(row) >= 3 and (row[0] == group or row[2] == group) and row[2].isdigit():
                gid = int(row[2])
                break
        else:
            if not group.isdigit() or len(group) > 10:
                raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    extra = {int(row[2]) for row in groups if len(row) >= 4 and login and login in row[3].split(",")
             and row[2].isdigit() and int(row[2]) != gid}
    for wanted in group_add:
        found = [r for r in groups if len(r) >= 3 and r[0] == wanted and r[2].isdigit()]
        if found:
            extra.add(int(found[0][2]))
        elif wanted.isdigit():
            extra.add(int(wanted))
        else:
            raise InvalidParameter(f"Unable to find group {wanted}: no matching entries in group file")
    for v in (uid, gid, *extra):
        if v is not None and not 0 <= v <= 0xFFFFFFFE:
            raise InvalidParameter(f"user or group id {v} is out of range")
    if login is None and uid == 0:
        home = "/root"
    return User(uid, gid if gid is not None else 0, tuple(sorted(extra)), home)


def build(*, rootfs: str, args: list[str], env: list[str], cwd: str, user: User,
          hostname: str, tty: bool, readonly_rootfs: bool, network_mode: str, cgroups_path: str,
          etc_files: dict[str, str], cgroup_v2: bool, netns_path: str | None = None) -> dict[str, Any]:
    nofile = nofile_limit()
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if network_mode != "host":
        namespaces.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    if cgroup_v2:
        namespaces.append({"type": "cgroup"})
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH, *env]
    if not any(e.startswith("HOSTNAME=") for e in env):
        env = [*env, f"HOSTNAME={hostname}"]
    if tty and not any(e.startswith("TERM=") for e in env):
        env = [*env, "TERM=xterm"]
    if not any(e.startswith("HOME=") for e in env):
        env = [*env, f"HOME={user.home}"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]
    for dest, src in etc_files.items():
        mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]})
    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
            "args": args,
            "env": env,
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": min(1024, nofile)}],
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [r.oci() for r in DEFAULT_DEVICE_RULES]},
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
        },
    }
