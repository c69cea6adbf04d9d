"""The OCI runtime spec (config.json) of a container, built whole, in one pass, from typed inputs:
Docker's defaults, the container's Config and HostConfig, and what the start prepared (the rootfs,
the network namespace, the /etc files, the volumes' mounts, the namespaces of containers it joins).

``build`` is the only producer of a spec, and has no side effect: the namespaces and /dev/shm come
from the namespace modes, mounts from the binds, tmpfs and volumes it is given, cgroup resources from
``mounts.resources``, and the confinement (capabilities, seccomp, masked paths, devices, rlimits,
sysctls, --init) from a ``security.Settings`` parsed before: each part is written once, as the spec
is made, never patched afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from berth.container import hostconfig, seccomp
from berth.container import mounts as cmounts
from berth.container import security as csecurity
from berth.container.defaults import (
    DEFAULT_PATH,
    nofile_limit,
)
from berth.container.users import User
from berth.linux.idmap import IDMap

_SHM_TMPFS = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ("nosuid", "noexec", "nodev", "mode=1777", "size=67108864")}


@dataclass(frozen=True)
class Inputs:
    rootfs: str
    args: list[str]
    env: list[str]  # the container's, links' first (a later one of the same name wins)
    cwd: str
    user: User
    hostname: str
    tty: bool
    host_config: dict[str, Any]
    modes: dict[str, hostconfig.Mode]
    cgroups_path: str
    cgroup_v2: bool
    memsw: bool  # whether the kernel accounts swap (memory.memsw.*)
    etc_files: dict[str, str]  # /etc/hostname, /etc/hosts, /etc/resolv.conf → files of berth's
    netns_path: str | None = None  # None: a new namespace (or the host's, with --network host)
    joins: dict[str, str] = field(default_factory=dict)  # "pid"/"ipc" → namespace file, "shm" → its tmpfs
    shm_source: str | None = None  # --ipc shareable: the tmpfs berth mounted for it
    user_mounts: list[dict[str, Any]] = field(default_factory=list)  # binds and tmpfs (``mounts.mounts``)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    security: csecurity.Settings | None = None  # None: parsed here from host_config
    idmap: IDMap | None = None
    compile_seccomp: bool = False  # crun: the profile goes as compiled BPF in an annotation


def _bind(dest: str, source: str) -> dict[str, Any]:
    return {"destination": dest, "type": "bind", "source": source, "options": ["rbind", "rprivate"]}


def _namespaces(i: Inputs) -> list[dict[str, Any]]:
    m = i.modes
    network_mode = i.host_config.get("NetworkMode", "none")
    ns: dict[str, dict[str, Any]] = {t: {"type": t} for t in ("pid", "ipc", "uts", "mount")}
    if network_mode != "host":
        ns["network"] = {"type": "network", "path": i.netns_path} if i.netns_path else {"type": "network"}
    if i.cgroup_v2:
        ns["cgroup"] = {"type": "cgroup"}
    if m["PidMode"].kind == "host":
        ns.pop("pid", None)
    elif m["PidMode"].kind == "container":
        ns["pid"] = {"type": "pid", "path": i.joins["pid"]}
    if m["IpcMode"].kind == "host":
        ns.pop("ipc", None)
    elif m["IpcMode"].kind == "container":
        ns["ipc"] = {"type": "ipc", "path": i.joins["ipc"]}
    if m["UTSMode"].kind == "host":
        ns.pop("uts", None)
    cg = m["CgroupnsMode"].kind
    if cg == "host":
        ns.pop("cgroup", None)
    elif cg == "private" or (cg == "" and i.cgroup_v2):
        ns["cgroup"] = {"type": "cgroup"}
    out = list(ns.values())
    if i.idmap is not None:
        out.append({"type": "user"})
    return out


def _shm(i: Inputs) -> dict[str, Any] | None:
    """/dev/shm as the IPC mode wants it: a tmpfs of its own, the host's, the donor's, or none."""
    ipc = i.modes["IpcMode"].kind
    if ipc == "host":
        return _bind("/dev/shm", "/dev/shm")
    if ipc == "container":
        return _bind("/dev/shm", i.joins["shm"])
    if ipc == "none":
        return None
    if ipc == "shareable" and i.shm_source:
        return _bind("/dev/shm", i.shm_source)
    return {**_SHM_TMPFS, "options": list(_SHM_TMPFS["options"])}


def _mounts(i: Inputs, sec: csecurity.Settings) -> list[dict[str, Any]]:
    shm = _shm(i)
    if shm is not None and sec.shm_size:
        shm["options"] = [o for o in shm["options"] if not o.startswith("size=")] + [f"size={sec.shm_size}"]
    sys_opts = ["nosuid", "noexec", "nodev"] + ([] if sec.writable_sys else ["ro"])
    cgroup_opts = ([] if sec.writable_cgroup else ["ro"]) + ["nosuid", "noexec", "nodev"]
    mounts: list[dict[str, Any] | None] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cgroup_opts},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        shm,
    ]
    out = [m for m in mounts if m is not None]
    out += [_bind(dest, src) for dest, src in i.etc_files.items()]
    out += i.user_mounts
    out += i.volume_mounts
    if sec.init:
        out.append({"destination": csecurity.INIT_BINARY, "type": "bind", "source": sec.init,
                    "options": ["bind", "ro"]})
    return out


def _env(i: Inputs) -> list[str]:
    env = list(i.env)
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH, *env]
    if not any(e.startswith("HOSTNAME=") for e in env):
        env = [*env, f"HOSTNAME={i.hostname}"]
    if i.tty and not any(e.startswith("TERM=") for e in env):
        env = [*env, "TERM=xterm"]
    if not any(e.startswith("HOME=") for e in env):
        env = [*env, f"HOME={i.user.home}"]
    return env


def build(i: Inputs) -> dict[str, Any]:
    hc = i.host_config
    sec = i.security if i.security is not None else csecurity.settings(hc, hc.get("NetworkMode", "none"))
    nofile = nofile_limit()
    caps = list(sec.caps)
    mounts = _mounts(i, sec)
    rlimits = {"RLIMIT_NOFILE": {"type": "RLIMIT_NOFILE", "hard": nofile, "soft": min(1024, nofile)}}
    rlimits.update(sec.ulimits)
    args = [csecurity.INIT_BINARY, "--", *i.args] if sec.init else list(i.args)
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": i.tty,
            "user": {"uid": i.user.uid, "gid": i.user.gid, "additionalGids": list(i.user.additional_gids)},
            "args": args,
            "env": _env(i),
            "cwd": i.cwd or "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)},
            "rlimits": list(rlimits.values()),
            "noNewPrivileges": sec.no_new_privileges,
        },
        "root": {"path": i.rootfs, "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": _namespaces(i),
            "cgroupsPath": i.cgroups_path,
            "resources": {"devices": [dict(r) for r in sec.device_rules]},
            "maskedPaths": list(sec.masked),
            "readonlyPaths": list(sec.readonly),
        },
    }
    if i.modes["UTSMode"].kind == "host":
        del config["hostname"]
    linux, process = config["linux"], config["process"]
    # as dockerd: a shared (slave) bind needs the container's root shared (slave) too, or the
    # runtime's private root cuts the propagation off
    props = {o for m in i.user_mounts for o in m["options"] if o in cmounts.PROPAGATIONS}
    if props & {"shared", "rshared"}:
        linux["rootfsPropagation"] = "rshared"
    elif props & {"slave", "rslave"}:
        linux["rootfsPropagation"] = "rslave"
    linux["resources"].update(cmounts.resources(hc, memsw=i.memsw))
    if sec.seccomp is not None:
        linux["seccomp"] = sec.seccomp
    if sec.sysctls:
        linux["sysctl"] = dict(sec.sysctls)
    if sec.devices:
        linux["devices"] = [d.oci() for d in sec.devices]
    if i.idmap is not None:
        linux.update(i.idmap.oci())
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(hc["OomScoreAdj"])
    if hc.get("Annotations"):
        config["annotations"] = {k: v for k, v in hc["Annotations"].items() if not k.startswith("run.oci.")}
    if i.compile_seccomp and "seccomp" in linux:
        bpf = seccomp.bpf_base64(json.dumps(linux["seccomp"], sort_keys=True))
        if bpf is not None:  # compiled once per profile here instead of by crun per container
            config.setdefault("annotations", {})[seccomp.BPF_ANNOTATION] = bpf
            del linux["seccomp"]  # crun ignores it then: 30 KB less JSON to write and parse
    size = hc.get("ConsoleSize") or []
    if i.tty and len(size) == 2 and all(size):
        process["consoleSize"] = {"height": size[0], "width": size[1]}
    return config
