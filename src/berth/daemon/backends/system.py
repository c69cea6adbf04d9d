"""GET /version, /info and /events, from the daemon's configuration and the host."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from berth import API_VERSION, MIN_API_VERSION, __version__
from berth.daemon.config import Config
from berth.daemon.events import EventBus

# Clients read GoVersion (docker-py's tests, `docker version`): berth's language and its version there.
_GO_VERSION = "python" + platform.python_version()
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_release() -> tuple[str, str]:
    fields = {}
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        fields[key] = value.strip('"')
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def _fs_type(path: str) -> str:
    """The filesystem type of ``path``'s mount (longest matching mount point in /proc/mounts)."""
    best, fstype = "", ""
    real = os.path.realpath(path)
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mnt = parts[1]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, parts[2]
    return fstype


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


async def _tool_version(path: str) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            path, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 5)
    except (TimeoutError, OSError):
        return ""
    first = out.decode(errors="replace").splitlines()[0] if out else ""
    return first.split()[-1] if first else ""


class SystemService:
    def __init__(self, cfg: Config, bus: EventBus, engine_id: str,
                 image_count: Callable[[], int] = lambda: 0,
                 container_counts: Callable[[], dict[str, int]] = dict) -> None:
        self.cfg = cfg
        self.image_count = image_count
        self.container_counts = container_counts
        self.bus = bus
        self.engine_id = engine_id
        self.labels = list(cfg.labels)
        self.tls_warnings: list[str] = []  # certificates near or past their expiry (set at start and reload)
        self._components: list[dict[str, Any]] | None = None

    async def _runtime_components(self) -> list[dict[str, Any]]:
        if self._components is None:
            comps = []
            for name in ("crun", "runc", "conmon"):
                path = shutil.which(name)
                if path:
                    comps.append({"Name": name, "Version": await _tool_version(path), "Details": {"Path": path}})
            self._components = comps
        return self._components

    async def system_version(self) -> dict[str, Any]:
        uname = platform.uname()
        engine = {
            "Name": "Engine",
            "Version": __version__,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": _GO_ARCH.get(uname.machine, uname.machine),
                "KernelVersion": uname.release,
                "Experimental": "false",
                "PythonVersion": platform.python_version(),
                "GoVersion": _GO_VERSION,
            },
        }
        return {
            "Platform": {"Name": f"berth {__version__}"},
            "Components": [engine, *await self._runtime_components()],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": _GO_VERSION,
            "Os": "linux",
            "Arch": _GO_ARCH.get(uname.machine, uname.machine),
            "KernelVersion": uname.release,
            "BuildTime": "",
        }

    async def system_info(self) -> dict[str, Any]:
        uname = platform.uname()
        os_name, os_version = _os_release()
        runtimes = {name: {"path": p} for name in ("crun", "runc") if (p := shutil.which(name))}
        security = []
        if _read("/sys/module/apparmor/parameters/enabled") == "Y":
            security.append("name=apparmor")
        if "Seccomp:" in _read("/proc/self/status"):
            security.append("name=seccomp,profile=builtin")
        if cgroup_version() == "2":
            security.append("name=cgroupns")
        if self.cfg.userns_remap:
            security.append("name=userns")
        warnings = list(self.tls_warnings)
        for h in self.cfg.hosts:
            if h.proto == "tcp" and not self.cfg.tls:
                warnings.append(f"WARNING: API is accessible on http://{h.address} without encryption.")
        mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return {
            "ID": self.engine_id,
            **{"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
               **self.container_counts()},
            "Images": self.image_count(),
            "Driver": "overlayfs",
            "DriverStatus": [["Backing Filesystem", _fs_type(self.cfg.data_root)]],
            "Plugins": {"Volume": [], "Network": ["host", "null"], "Authorization": None, "Log": ["journald", "json-file", "local", "syslog"]},
            "MemoryLimit": True, "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
            or cgroup_version() == "2",
            "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
            "OomKillDisable": cgroup_version() == "1",
            "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
            "Debug": self.cfg.debug,
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": len(asyncio.all_tasks()),
            "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()) + _tz_offset(),
            "LoggingDriver": self.cfg.log_driver,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(),
            "NEventsListener": self.bus.listeners,
            "KernelVersion": uname.release,
            "OperatingSystem": os_name,
            "OSVersion": os_version,
            "OSType": "linux",
            "Architecture": uname.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem_total,
            "GenericResources": None,
            "DockerRootDir": self.cfg.data_root,
            "HttpProxy": mask_credentials(os.environ.get("HTTP_PROXY", "") or os.environ.get("http_proxy", "")),
            "HttpsProxy": mask_credentials(os.environ.get("HTTPS_PROXY", "") or os.environ.get("https_proxy", "")),
            "NoProxy": os.environ.get("NO_PROXY", ""),
            "Name": socket.gethostname(),
            "Labels": self.labels,
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": runtimes,
            "DefaultRuntime": "crun" if "crun" in runtimes else "runc",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            "SecurityOptions": security,
            "CDISpecDirs": [],
            "Warnings": warnings,
        }

    def system_events(self, since: float | None, until: float | None,
                      filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        return self.bus.subscribe(since, until, filters)


def _tz_offset() -> str:
    off = -time.timezone if not time.localtime().tm_isdst else -time.altzone
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def mask_credentials(url: str) -> str:
    """A proxy URL with its user and password replaced, as dockerd shows them ("xxxxx:xxxxx@")."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    host = rest.split("@", 1)[1] if "@" in rest.split("/", 1)[0] else rest
    return f"{scheme}://xxxxx:xxxxx@{host}"
