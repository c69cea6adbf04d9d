"""Which HostConfig fields berth honours, and the refusal for each one it does not: nothing a client
asks for is silently ignored (a container that asked for isolation and did not get it is the worst
outcome). Also the namespace modes (PidMode, IpcMode, UTSMode, CgroupnsMode, UsernsMode) parsed
into typed values (``spec.build`` turns them into the OCI namespaces and mounts).

Every field of the v1.47 HostConfig is in exactly one of ``HONOURED`` or ``REFUSED`` (a unit test
checks the list against the spec); a refused field is accepted only at its "not used" value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidParameter, NotSupported

HONOURED = frozenset({
    "Annotations", "AutoRemove", "Binds", "BlkioDeviceReadBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps", "BlkioWeight", "BlkioWeightDevice", "CapAdd", "CapDrop", "CgroupParent", "CgroupnsMode",
    "ConsoleSize", "ContainerIDFile", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuShares",
    "CpusetCpus", "CpusetMems", "DeviceCgroupRules", "Devices", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts",
    "GroupAdd", "Init", "IpcMode", "Isolation", "Links", "LogConfig", "MaskedPaths", "Memory", "MemoryReservation",
    "MemorySwap", "MemorySwappiness", "Mounts", "NanoCpus", "NetworkMode", "OomKillDisable", "OomScoreAdj",
    "PidMode", "PidsLimit", "PortBindings", "Privileged", "PublishAllPorts", "ReadonlyPaths", "ReadonlyRootfs",
    "RestartPolicy", "Runtime", "SecurityOpt", "ShmSize", "Sysctls", "Tmpfs", "UTSMode", "Ulimits", "UsernsMode",
    "VolumeDriver", "VolumesFrom",
})


def _empty(v: Any) -> bool:
    return v in (None, "", 0, False, [], {})


# field → (is it at its "not used" value, the refusal)
REFUSED: dict[str, tuple[Callable[[Any], bool], BaseException]] = {
    "DeviceRequests": (_empty, NotSupported("HostConfig.DeviceRequests (--gpus) is not supported by berth: it has "
                                            "no device driver plugins")),
    "StorageOpt": (_empty, NotSupported("HostConfig.StorageOpt (--storage-opt) is not supported by berth's overlay "
                                        "storage")),
    "KernelMemoryTCP": (_empty, InvalidParameter("HostConfig.KernelMemoryTCP: kernel TCP memory limits are "
                                                 "deprecated and not supported")),
    "CpuCount": (_empty, InvalidParameter("HostConfig.CpuCount is only for Windows containers; use --cpus")),
    "CpuPercent": (_empty, InvalidParameter("HostConfig.CpuPercent is only for Windows containers; use --cpus")),
    "IOMaximumBandwidth": (_empty, InvalidParameter("HostConfig.IOMaximumBandwidth is only for Windows "
                                                    "containers; use --device-write-bps")),
    "IOMaximumIOps": (_empty, InvalidParameter("HostConfig.IOMaximumIOps is only for Windows containers; use "
                                               "--device-write-iops")),
    "Cgroup": (_empty, NotSupported("HostConfig.Cgroup (joining another container's cgroup) is not supported by "
                                    "berth")),
}


CONFIG_FIELDS = frozenset({
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
    "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
    "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
    "HostConfig", "NetworkingConfig",
})


def canonical_keys(obj: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """``obj`` with its keys spelled as the API spells them: Go's JSON decoding matches field names
    whatever their case, and clients rely on it (docker-py sends ``CPURealtimeRuntime``). Unknown keys
    stay as they are; the exact spelling wins over another one for the same field."""
    by_lower = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = by_lower.get(key.lower(), key) if isinstance(key, str) else key
        if name in out and key != name:
            continue  # the exact spelling is kept
        out[name] = value
    return out


def check_fields(hc: dict[str, Any]) -> None:
    for key, (unused, refusal) in REFUSED.items():
        if key in hc and not unused(hc[key]):
            raise type(refusal)(str(refusal))
    if hc.get("Isolation") not in (None, "", "default"):
        raise InvalidParameter(f"invalid isolation '{hc['Isolation']}' on linux")
    size = hc.get("ConsoleSize")
    if size is not None and (not isinstance(size, list) or len(size) not in (0, 2)
                             or not all(isinstance(v, int) and 0 <= v < 65536 for v in size)):
        raise InvalidParameter("HostConfig.ConsoleSize must be [height, width]")
    ann = hc.get("Annotations")
    if ann is not None and (not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                               for k, v in ann.items())):
        raise InvalidParameter("HostConfig.Annotations must map strings to strings")
    parent = hc.get("CgroupParent") or ""
    if parent and (not isinstance(parent, str) or not re.fullmatch(r"[A-Za-z0-9_./-]{1,200}", parent)
                   or ".." in parent.split("/")):
        raise InvalidParameter(f"invalid cgroup parent {parent!r}")
    adj = hc.get("OomScoreAdj") or 0
    if not isinstance(adj, int) or not -1000 <= adj <= 1000:
        raise InvalidParameter(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    for g in hc.get("GroupAdd") or []:
        if not isinstance(g, str) or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}", g):
            raise InvalidParameter(f"invalid --group-add value {g!r}")
    modes(hc)


@dataclass(frozen=True, slots=True)
class Mode:
    """A namespace mode: ``kind`` "" (the default) | private | host | container | none | shareable;
    ``target`` the container named by ``container:<name>``."""

    kind: str
    target: str = ""


_ALLOWED = {
    "PidMode": ("", "host", "container"),
    "IpcMode": ("", "private", "shareable", "host", "none", "container"),
    "UTSMode": ("", "host"),
    "CgroupnsMode": ("", "private", "host"),
    "UsernsMode": ("", "host"),
}


def modes(hc: dict[str, Any]) -> dict[str, Mode]:
    """The namespace modes of a HostConfig; InvalidParameter with dockerd's words for a bad one."""
    out = {}
    for field, allowed in _ALLOWED.items():
        value = hc.get(field) or ""
        if not isinstance(value, str):
            raise InvalidParameter(f"invalid {field}: {value!r}")
        kind, sep, target = value.partition(":")
        if kind == "container" and sep and target and "container" in allowed:
            out[field] = Mode("container", target)
        elif not sep and kind in allowed and kind != "container":
            out[field] = Mode(kind)  # "": the default (private; for cgroups, private on cgroup v2 only)
        else:
            what = {"PidMode": "pid", "IpcMode": "ipc", "UTSMode": "uts", "CgroupnsMode": "cgroup namespace",
                    "UsernsMode": "userns"}[field]
            raise InvalidParameter(f"invalid {what} mode: {value}" if field != "IpcMode" else
                                   f"invalid IPC mode: {value}")
    if out["UTSMode"].kind == "host" and hc.get("_Hostname"):
        raise InvalidParameter("Conflicting options: hostname and the UTS mode")
    return out
