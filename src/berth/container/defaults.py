"""Docker's defaults for a container's process and cgroup: capabilities, masked and read-only
paths, the device cgroup, PATH, the open-files limit. Tuples and frozen values: a spec is built from
fresh copies of them, so nothing one container's options change can reach the next container (a
module-level list once did)."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Any

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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


def nofile_limit() -> int:
    """Never ask the runtime for more open files than this daemon may have (20000 on these hosts)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(hard if hard != resource.RLIM_INFINITY else 1048576, 1048576)
