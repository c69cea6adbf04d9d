"""The OCI runtime spec (config.json) for a container: Docker's defaults, the image config, the
create request. Only what berth honours is translated; the rest is refused by the backend."""

from __future__ import annotations

import os
import resource
import stat
from typing import Any

from berth.errors import InvalidParameter

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
# Docker's default device cgroup: deny all, then the usual character devices.
DEVICES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, -1), (10, 200))
]
for d in DEVICES:
    if d.get("minor") == -1:
        d.pop("minor")


def nofile_limit() -> int:
    """Never ask the runtime for more open files than this daemon may have (20000 on these hosts)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(hard if hard != resource.RLIM_INFINITY else 1048576, 1048576)


def _read_db(rootfs: str, rel: str) -> list[list[str]]:
    """/etc/passwd or /etc/group of the image, read without following any symlink out of it."""
    path = rootfs
    for comp in rel.split("/"):
        path = os.path.join(path, comp)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return []
        if stat.S_ISLNK(st.st_mode):
            return []
    with open(path, errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]


def resolve_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """"name", "uid", "name:group", "uid:gid" → (uid, gid, additional gids), as Docker resolves them."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "etc/passwd")
    groups = _read_db(rootfs, "etc/group")
    uid = gid = None
    login = None
    for row in passwd:
        if len(row) >= 4 and (row[0] == name or row[2] == name):
            uid, gid, login = int(row[2]), int(row[3]), row[0]
            break
    if uid is None:
        if not name.isdigit():
            raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(name), 0
    if group:
        for row in groups:
            if len(row) >= 3 and (row[0] == group or row[2] == group):
                gid = int(row[2])
                break
        else:
            if not group.isdigit():
                raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    extra = sorted({int(row[2]) for row in groups if len(row) >= 4 and login and login in row[3].split(",")
                    and row[2].isdigit() and int(row[2]) != gid})
    return uid, gid if gid is not None else 0, extra


def build(*, rootfs: str, args: list[str], env: list[str], cwd: str, user: tuple[int, int, list[int]],
          hostname: str, tty: bool, readonly_rootfs: bool, network_mode: str, cgroups_path: str,
          etc_files: dict[str, str], cgroup_v2: bool, netns_path: str | None = None) -> dict[str, Any]:
    uid, gid, extra_gids = user
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
            "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
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
            "resources": {"devices": DEVICES},
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    }
