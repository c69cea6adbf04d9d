"""Capabilities, privileged mode, security options, seccomp, masked paths, ulimits, sysctls,
devices, device cgroup rules, shm size and --init: what a HostConfig asks of a container's
confinement, parsed into one typed ``Settings`` that ``spec.build`` writes into the spec.

Every value from a request is parsed into a typed value before it reaches the spec, and every
refusal names the field and the value. Nothing here is shared between containers.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from typing import Any

from berth.container import seccomp
from berth.container.defaults import (
    DEFAULT_CAPS,
    DEFAULT_DEVICE_RULES,
    MASKED,
    READONLY,
    DeviceRule,
    nofile_limit,
)
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
_RULE = re.compile(r"^([acb]) (\*|[0-9]{1,10}):(\*|[0-9]{1,10}) ([rwm]{1,3})\Z")
_DEV_SKIP = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/.lxc", "/dev/.udev", "/dev/console", "/dev/ptmx")


def bounding_caps() -> list[str]:
    """The capabilities this daemon holds: what "all" means for --privileged (as Docker computes it)."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(ALL_CAPS)
    return sorted(f"CAP_{name}" for bit, name in enumerate(_CAP_BITS) if mask >> bit & 1)


def _cap(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidParameter(f"unknown capability: {name!r}")
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


@dataclass(frozen=True, slots=True)
class SecurityOpts:
    no_new_privileges: bool = False
    seccomp: str = ""  # "": the default profile; "unconfined"; else a profile's JSON text
    unconfined_paths: bool = False  # systempaths=unconfined
    writable_cgroups: bool = False


def parse_security_opts(opts: Any) -> SecurityOpts:
    """HostConfig.SecurityOpt, as dockerd parses it (``key=value`` or the legacy ``key:value``)."""
    nnp, prof, paths, cgroups = False, "", False, False
    if not isinstance(opts, list):
        raise InvalidParameter("HostConfig.SecurityOpt must be a list of strings")
    for opt in opts:
        if not isinstance(opt, str):
            raise InvalidParameter(f"Invalid --security-opt: {opt!r}")
        if opt == "no-new-privileges":
            nnp = True
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise InvalidParameter(f"Invalid --security-opt: {opt!r}")
        if key == "no-new-privileges":
            if value not in ("true", "false", "1", "0"):
                raise InvalidParameter(f"invalid --security-opt 2: {opt!r}")
            nnp = value in ("true", "1")
        elif key == "seccomp":
            prof = value
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidParameter(f"invalid --security-opt 2: {opt!r}")
            paths = True
        elif key == "writable-cgroups":
            if value not in ("true", "false"):
                raise InvalidParameter(f"invalid --security-opt 2: {opt!r}")
            cgroups = value == "true"
        elif key == "apparmor":
            if value != "unconfined":
                raise InvalidParameter(f"--security-opt {opt!r}: this host has no AppArmor, so the profile cannot "
                                       "be applied (berth refuses rather than run the container unconfined)")
        elif key == "label":
            if value != "disable":
                raise InvalidParameter(f"--security-opt {opt!r}: this host has no SELinux, so the label cannot be "
                                       "applied (berth refuses rather than run the container unlabelled)")
        else:
            raise InvalidParameter(f"Invalid --security-opt: {opt!r}")
    return SecurityOpts(nnp, prof, paths, cgroups)


def parse_device_rule(text: Any) -> DeviceRule:
    """A ``--device-cgroup-rule``: "c 1:3 rwm", "b 8:* r", "a *:* rwm"."""
    m = _RULE.match(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidParameter(f"invalid device cgroup format '{text}'")
    typ, major, minor, access = m.groups()
    return DeviceRule(True, typ, -1 if major == "*" else int(major), -1 if minor == "*" else int(minor), access)


@dataclass(frozen=True, slots=True)
class Device:
    path: str  # inside the container
    type: str  # c | b
    major: int
    minor: int
    mode: int
    uid: int
    gid: int
    access: str

    def oci(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.type, "major": self.major, "minor": self.minor,
                "fileMode": self.mode, "uid": self.uid, "gid": self.gid}


def _device_at(host: str, inside: str, access: str) -> Device | None:
    try:
        st = os.stat(host)
    except OSError:  # a dangling link in a device directory, or a node gone meanwhile
        return None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return None
    return Device(inside, "c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev), os.minor(st.st_rdev),
                  stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, access)


def parse_devices(entries: Any) -> list[Device]:
    """HostConfig.Devices (``--device HOST[:CONTAINER[:PERMS]]``): each host device node, or every
    device below a host directory, as dockerd does."""
    out: list[Device] = []
    for d in entries or []:
        if not isinstance(d, dict):
            raise InvalidParameter(f"invalid device specification: {d!r}")
        host = str(d.get("PathOnHost") or "")
        inside = str(d.get("PathInContainer") or host)
        perms = str(d.get("CgroupPermissions") or "rwm")
        if not host.startswith("/") or not inside.startswith("/") or ".." in inside.split("/"):
            raise InvalidParameter(f"invalid device mapping {host}:{inside}: paths must be absolute")
        if not perms or any(c not in "rwm" for c in perms) or len(set(perms)) != len(perms):
            raise InvalidParameter(f"invalid device cgroup permissions {perms!r} for {host} (use r, w and m)")
        try:
            st = os.stat(host)
        except OSError:
            raise InvalidParameter(f"error gathering device information while adding custom device {host!r}: "
                                   "no such file or directory") from None
        if stat.S_ISDIR(st.st_mode):
            for base, dirs, files in os.walk(host):
                dirs.sort()
                for f in sorted(files):
                    full = os.path.join(base, f)
                    with_dev = _device_at(full, os.path.join(inside, os.path.relpath(full, host)), perms)
                    if with_dev is not None:
                        out.append(with_dev)
            continue
        dev = _device_at(host, inside, perms)
        if dev is None:
            raise InvalidParameter(f"error gathering device information while adding custom device {host!r}: "
                                   "not a device node")
        out.append(dev)
    return out


def host_devices() -> list[Device]:
    """Every device node under the host's /dev (for --privileged), as dockerd lists them."""
    out: list[Device] = []
    for base, dirs, files in os.walk("/dev"):
        dirs[:] = sorted(d for d in dirs if os.path.join(base, d) not in _DEV_SKIP)
        for f in sorted(files):
            full = os.path.join(base, f)
            if full in _DEV_SKIP:
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append(Device(full, "c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev),
                                  os.minor(st.st_rdev), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, "rwm"))
    return out


def _path_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p.startswith("/") for p in value):
        raise InvalidParameter(f"HostConfig.{field} must be a list of absolute paths")
    return list(value)


def check(hc: dict[str, Any], network_mode: str) -> None:
    """Everything ``settings`` would refuse, without reading the host's devices or compiling the
    default profile (at create: bad input is a 400 there)."""
    caps = capabilities(hc)
    opts = parse_security_opts(hc.get("SecurityOpt") or [])
    if opts.seccomp not in ("", "unconfined") and not hc.get("Privileged"):
        seccomp.custom(opts.seccomp, caps)
    _ulimits(hc)
    _sysctls(hc, network_mode)
    parse_devices(hc.get("Devices"))
    for r in hc.get("DeviceCgroupRules") or []:
        parse_device_rule(r)
    for field in ("MaskedPaths", "ReadonlyPaths"):
        if hc.get(field) is not None:
            _path_list(hc[field], field)
    if hc.get("Init"):
        init_path()


def _ulimits(hc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    limit = nofile_limit()
    out: dict[str, dict[str, Any]] = {}
    for u in hc.get("Ulimits") or []:
        if not isinstance(u, dict):
            raise InvalidParameter(f"invalid ulimit {u!r}")
        name = str(u.get("Name", "")).upper()
        soft, hard = u.get("Soft", 0), u.get("Hard", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and -1 <= v < 1 << 63 for v in (soft, hard)):
            raise InvalidParameter(f"invalid ulimit {u}: soft and hard must be integers")
        if not re.fullmatch(r"[A-Z]{2,12}", name) or soft > hard or soft < -1:
            raise InvalidParameter(f"invalid ulimit {u}: soft limit above hard limit or no name")
        if name == "NOFILE" and hard > limit:
            raise InvalidParameter(f"ulimit nofile={soft}:{hard} is above berthd's own open-files limit ({limit}); "
                                   "the runtime cannot raise it")
        out[f"RLIMIT_{name}"] = {"type": f"RLIMIT_{name}", "soft": soft, "hard": hard}
    return out


def _sysctls(hc: dict[str, Any], network_mode: str) -> dict[str, str]:
    sysctls = hc.get("Sysctls") or {}
    if not isinstance(sysctls, dict):
        raise InvalidParameter("HostConfig.Sysctls must be an object")
    for key in sysctls:
        namespaced = key in NAMESPACED_SYSCTLS or key.startswith("fs.mqueue.") or key.startswith("net.")
        if not namespaced or not re.fullmatch(r"[a-z0-9_./-]+", key):
            raise InvalidParameter(f"sysctl {key!r} is not allowed: it is not namespaced")
        if key.startswith("net.") and network_mode == "host":
            raise InvalidParameter(f"sysctl {key!r} is not allowed in the host network namespace")
    return {k: str(v) for k, v in sysctls.items()}


@dataclass(frozen=True)
class Settings:
    """What a HostConfig asks of a container's confinement, parsed and typed once: ``spec.build``
    writes it into the spec it makes."""

    caps: tuple[str, ...]
    no_new_privileges: bool
    seccomp: dict[str, Any] | None  # the OCI seccomp section; None: unconfined
    masked: tuple[str, ...]
    readonly: tuple[str, ...]
    writable_sys: bool  # --privileged: /sys read-write
    writable_cgroup: bool  # --privileged or writable-cgroups=true: /sys/fs/cgroup read-write
    ulimits: dict[str, dict[str, Any]]  # RLIMIT_* → its OCI rlimit
    sysctls: dict[str, str]
    shm_size: int  # 0: the default
    device_rules: tuple[dict[str, Any], ...]  # the whole device cgroup
    devices: tuple[Device, ...]  # device nodes made in the container (the last of a path wins)
    init: str  # the host's init binary for --init, "" without


def settings(hc: dict[str, Any], network_mode: str, host_devices_list: list[Device] | None = None) -> Settings:
    """The security-related HostConfig fields, each checked (InvalidParameter naming it)."""
    privileged = bool(hc.get("Privileged"))
    caps = capabilities(hc)
    opts = parse_security_opts(hc.get("SecurityOpt") or [])
    if privileged or opts.seccomp == "unconfined":
        profile = None
    elif opts.seccomp:
        profile = seccomp.custom(opts.seccomp, caps)
    else:
        profile = seccomp.profile(caps)
    masked = tuple(_path_list(hc["MaskedPaths"], "MaskedPaths")) if hc.get("MaskedPaths") is not None else MASKED
    readonly = (tuple(_path_list(hc["ReadonlyPaths"], "ReadonlyPaths")) if hc.get("ReadonlyPaths") is not None
                else READONLY)
    if privileged or opts.unconfined_paths:
        masked, readonly = (), ()
    ulimits = _ulimits(hc)
    sysctls = _sysctls(hc, network_mode)
    shm = int(hc.get("ShmSize") or 0)
    if shm < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    devices = parse_devices(hc.get("Devices"))
    if privileged:
        devices = (host_devices_list if host_devices_list is not None else host_devices()) + devices
        rules = [DeviceRule(True).oci()]
    else:
        rules = [r.oci() for r in DEFAULT_DEVICE_RULES]
        rules += [DeviceRule(True, d.type, d.major, d.minor, d.access).oci() for d in devices]
        rules += [parse_device_rule(r).oci() for r in hc.get("DeviceCgroupRules") or []]
    seen: dict[str, Device] = {}
    for d in devices:
        seen[d.path] = d  # an explicit --device wins over the host's device of the same path
    return Settings(tuple(caps), opts.no_new_privileges, profile, masked, readonly, privileged,
                    privileged or opts.writable_cgroups, ulimits, sysctls, shm, tuple(rules), tuple(seen.values()),
                    init_path() if hc.get("Init") else "")
