"""Capabilities, privileged mode, no-new-privileges, ulimits, sysctls, devices, shm size and --init,
as OCI spec changes. Each refusal names the field and the value."""

from __future__ import annotations

import os
import shutil
import stat
from typing import Any

from berth.container import seccomp
from berth.container.spec import DEFAULT_CAPS, nofile_limit
from berth.errors import InvalidParameter, NotSupported

ALL_CAPS = sorted(set(DEFAULT_CAPS) | {
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_BLOCK_SUSPEND", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    "CAP_DAC_READ_SEARCH", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_LEASE", "CAP_LINUX_IMMUTABLE", "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE", "CAP_NET_ADMIN", "CAP_NET_BROADCAST", "CAP_PERFMON", "CAP_SYSLOG", "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT", "CAP_SYS_MODULE", "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM"})
NAMESPACED_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                      "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
INIT_BINARY = "/sbin/docker-init"
_CAP_BITS = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
             "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
             "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
             "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
             "PERFMON BPF CHECKPOINT_RESTORE").split()


def bounding_caps() -> list[str]:
    """The capabilities this daemon holds: what "all" means for --privileged (as Docker computes it)."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(ALL_CAPS)
    return sorted(f"CAP_{name}" for bit, name in enumerate(_CAP_BITS) if mask >> bit & 1)


def _cap(name: str) -> str:
    n = name.strip().upper()
    n = n if n.startswith("CAP_") or n == "ALL" else "CAP_" + n
    if n != "ALL" and n not in ALL_CAPS:
        raise InvalidParameter(f"unknown capability: {name!r}")
    return n


def capabilities(hc: dict[str, Any]) -> list[str]:
    if hc.get("Privileged"):
        return bounding_caps()
    add = [_cap(c) for c in hc.get("CapAdd") or []]
    drop = [_cap(c) for c in hc.get("CapDrop") or []]
    caps = set() if "ALL" in drop else set(DEFAULT_CAPS)
    caps |= set(bounding_caps()) if "ALL" in add else {c for c in add if c != "ALL"}
    caps -= {c for c in drop if c != "ALL"}
    return sorted(caps)


def init_path() -> str:
    for candidate in ("/usr/bin/tini-static", "/usr/sbin/docker-init", "/usr/bin/catatonit",
                      "/usr/libexec/podman/catatonit"):
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("tini-static") or shutil.which("catatonit")
    if not found:
        raise NotSupported("--init needs a static init binary: apt-get install tini")
    return found


def apply(config: dict[str, Any], hc: dict[str, Any], network_mode: str) -> None:
    """Change ``config`` (an OCI spec from spec.build) for the security-related HostConfig fields."""
    process, linux = config["process"], config["linux"]
    caps = capabilities(hc)
    process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    if not hc.get("Privileged"):
        linux["seccomp"] = seccomp.profile(caps)
    for opt in hc.get("SecurityOpt") or []:
        key, _, value = opt.replace(":", "=", 1).partition("=")
        if key == "no-new-privileges":
            process["noNewPrivileges"] = value in ("", "true", "1")
        elif key == "seccomp" and value == "unconfined":
            linux.pop("seccomp", None)
        elif key in ("label", "apparmor"):
            continue  # SELinux labels and AppArmor profiles: not applied by berth yet (see docs/design.md)
        else:
            raise NotSupported(f"security option {opt!r} is not supported by berth yet")
    if hc.get("Privileged"):
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        for m in config["mounts"]:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"]
    limit = nofile_limit()
    rlimits = {r["type"]: r for r in process.get("rlimits", [])}
    for u in hc.get("Ulimits") or []:
        name = str(u.get("Name", "")).upper()
        soft, hard = int(u.get("Soft", 0)), int(u.get("Hard", 0))
        if not name or soft > hard:
            raise InvalidParameter(f"invalid ulimit {u}: soft limit above hard limit or no name")
        if name == "NOFILE" and hard > limit:
            raise InvalidParameter(f"ulimit nofile={soft}:{hard} is above berthd's own open-files limit ({limit}); "
                                   "the runtime cannot raise it")
        rlimits[f"RLIMIT_{name}"] = {"type": f"RLIMIT_{name}", "soft": soft, "hard": hard}
    process["rlimits"] = list(rlimits.values())
    sysctls = hc.get("Sysctls") or {}
    for key in sysctls:
        namespaced = key in NAMESPACED_SYSCTLS or key.startswith("fs.mqueue.") or key.startswith("net.")
        if not namespaced:
            raise InvalidParameter(f"sysctl {key!r} is not allowed: it is not namespaced")
        if key.startswith("net.") and network_mode == "host":
            raise InvalidParameter(f"sysctl {key!r} is not allowed in the host network namespace")
    if sysctls:
        linux["sysctl"] = {k: str(v) for k, v in sysctls.items()}
    shm = int(hc.get("ShmSize") or 0)
    if shm:
        for m in config["mounts"]:
            if m["destination"] == "/dev/shm":
                m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [f"size={shm}"]
    devices = []
    for d in hc.get("Devices") or []:
        host, inside = d.get("PathOnHost", ""), d.get("PathInContainer") or d.get("PathOnHost", "")
        perms = d.get("CgroupPermissions") or "rwm"
        try:
            st = os.stat(host)
        except OSError:
            raise InvalidParameter(f"error gathering device information while adding custom device {host!r}: "
                                   "no such file or directory") from None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidParameter(f"{host!r} is not a device node")
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        devices.append({"path": inside, "type": kind, "major": major, "minor": minor,
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0})
        linux["resources"]["devices"].append({"allow": True, "type": kind, "major": major, "minor": minor,
                                              "access": perms})
    if devices:
        linux["devices"] = devices
    if hc.get("Init"):
        config["mounts"].append({"destination": INIT_BINARY, "type": "bind", "source": init_path(),
                                 "options": ["bind", "ro"]})
        process["args"] = [INIT_BINARY, "--", *process["args"]]
