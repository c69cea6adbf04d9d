"""Binds, tmpfs mounts and resource limits from a create request, as OCI spec entries.

-v SRC:DST[:ro] creates a missing source directory (Docker's legacy behaviour); --mount type=bind
refuses one ("bind source path does not exist"). Named and anonymous volumes arrive with the volume
driver (they are refused until then).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from berth.errors import InvalidParameter, NotSupported


def _check_target(target: str) -> str:
    if not target.startswith("/"):
        raise InvalidParameter(f"invalid mount config: mount path must be absolute: {target!r}")
    if target == "/":
        raise InvalidParameter("invalid mount config: destination can't be '/'")
    return os.path.normpath(target)


def bind_target(bind: str) -> str:
    """The destination of a ``-v SRC:DST[:MODE]`` entry ("" when it has none)."""
    parts = bind.split(":")
    return os.path.normpath(parts[1]) if len(parts) >= 2 and parts[1].startswith("/") else ""


PROPAGATIONS = ("rprivate", "private", "rslave", "slave", "rshared", "shared")


def _mount_of(path: str) -> tuple[str, set[str]]:
    """(mount point, optional fields such as shared:N, master:N) of the mount holding ``path``."""
    real = os.path.realpath(path)
    best, fields = "/", set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mnt = parts[4].replace("\\040", " ")
            optional = set(parts[6:parts.index("-")])
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fields = mnt, {o.split(":")[0] for o in optional}
    return best, fields


def check_propagation(src: str, prop: str) -> None:
    """As dockerd: a shared bind needs its source on a shared mount, a slave one on a shared or slave
    mount (otherwise the propagation asked for could not happen)."""
    if prop in ("shared", "rshared") or prop in ("slave", "rslave"):
        mnt, fields = _mount_of(src)
        if prop.endswith("shared") and "shared" not in fields:
            raise InvalidParameter(f"path {src} is mounted on {mnt} but it is not a shared mount")
        if prop.endswith("slave") and not fields & {"shared", "master"}:
            raise InvalidParameter(f"path {src} is mounted on {mnt} but it is not a shared or slave mount")


def mounts(hc: dict[str, Any], create: bool = True) -> list[dict[str, Any]]:
    """The binds and tmpfs mounts of a HostConfig. ``create=False`` only lists them (a missing -v
    source directory is not made)."""
    out: list[dict[str, Any]] = []
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or len(parts) > 3:
            raise InvalidParameter(f"invalid volume specification: '{bind}'")
        src, dst = parts[0], _check_target(parts[1])
        mode = parts[2].split(",") if len(parts) == 3 else []
        if not src.startswith("/"):
            continue  # a named volume: see volume_requests
        if create and not os.path.exists(src):
            os.makedirs(src, mode=0o755)  # -v creates a missing host directory, as dockerd does
        bad = [m for m in mode if m not in ("ro", "rw", "z", "Z", *PROPAGATIONS)]
        if bad:
            raise InvalidParameter(f"invalid mode: {','.join(bad)}")
        prop = next((m for m in mode if m in PROPAGATIONS), "rprivate")
        if create:
            check_propagation(src, prop)
        out.append({"destination": dst, "type": "bind", "source": src,
                    "options": ["rbind", prop] + (["ro"] if "ro" in mode else [])})
    for m in hc.get("Mounts") or []:
        typ, target = m.get("Type", "volume"), _check_target(m.get("Target") or m.get("Destination") or "")
        if typ == "bind":
            src = m.get("Source") or ""
            if not src.startswith("/"):
                raise InvalidParameter(f'invalid mount config for type "bind": invalid mount path: {src!r} mount '
                                       "path must be absolute")
            if create and not os.path.exists(src):
                raise InvalidParameter(f'invalid mount config for type "bind": bind source path does not exist: {src}')
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            if prop not in PROPAGATIONS:
                raise InvalidParameter(f'invalid mount config for type "bind": invalid propagation mode: {prop}')
            if create:
                check_propagation(src, prop)
            out.append({"destination": target, "type": "bind", "source": src,
                        "options": ["rbind", prop] + (["ro"] if m.get("ReadOnly") else [])})
        elif typ == "tmpfs":
            opts = m.get("TmpfsOptions") or {}
            options = ["nosuid", "nodev", "noexec"]
            if opts.get("SizeBytes"):
                options.append(f"size={int(opts['SizeBytes'])}")
            if opts.get("Mode"):
                options.append(f"mode={int(opts['Mode']):o}")
            out.append({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
        elif typ != "volume":
            raise NotSupported(f"mounts of type {typ!r} are not supported by berth yet (bind, volume and tmpfs are)")
    for target, opts in (hc.get("Tmpfs") or {}).items():
        options = ["nosuid", "nodev", "noexec"] + [o for o in (opts or "").split(",") if o]
        out.append({"destination": _check_target(target), "type": "tmpfs", "source": "tmpfs", "options": options})
    return out


def volume_requests(hc: dict[str, Any], image_volumes: dict[str, Any] | None) -> list[tuple[str, str, bool]]:
    """(volume name or "" for a new anonymous one, destination, read-only) for every volume the
    container needs: -v NAME:DST, --mount type=volume, and the image's VOLUMEs not mounted otherwise."""
    out: list[tuple[str, str, bool]] = []
    taken: set[str] = set()
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) >= 2:
            dst = _check_target(parts[1])
            taken.add(dst)
            if not parts[0].startswith("/"):
                out.append((parts[0], dst, len(parts) == 3 and "ro" in parts[2].split(",")))
    for m in hc.get("Mounts") or []:
        dst = _check_target(m.get("Target") or m.get("Destination") or "")
        taken.add(dst)
        if m.get("Type", "volume") == "volume":
            out.append((m.get("Source") or "", dst, bool(m.get("ReadOnly"))))
    taken.update(_check_target(t) for t in (hc.get("Tmpfs") or {}))
    for dst in sorted(image_volumes or {}):
        if os.path.normpath(dst) not in taken:
            out.append(("", os.path.normpath(dst), False))
    return out


def _int(hc: dict[str, Any], key: str) -> int:
    value = hc.get(key)
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"HostConfig.{key} must be an integer, not {value!r}")
    return value


_CPUSET = re.compile(r"^[0-9]{1,4}(-[0-9]{1,4})?(,[0-9]{1,4}(-[0-9]{1,4})?)*\Z")


def _throttle(entries: Any, key: str, rate_key: str) -> list[dict[str, Any]]:
    """--device-read-bps and friends: [{"Path": "/dev/sda", "Rate": N}] → OCI major/minor/rate."""
    out = []
    for e in entries or []:
        path = e.get("Path") if isinstance(e, dict) else None
        rate = e.get(rate_key) if isinstance(e, dict) else None
        if not isinstance(path, str) or not isinstance(rate, int) or rate < 0:
            raise InvalidParameter(f"invalid HostConfig.{key} entry {e!r}")
        try:
            st = os.stat(path)
        except OSError:
            raise InvalidParameter(f"HostConfig.{key}: no such device {path}") from None
        if not stat.S_ISBLK(st.st_mode):
            raise InvalidParameter(f"HostConfig.{key}: {path} is not a block device")
        out.append({"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                    ("weight" if rate_key == "Weight" else "rate"): rate})
    return out


def resources(hc: dict[str, Any], memsw: bool) -> dict[str, Any]:
    """linux.resources for memory, CPU, pids and block I/O; InvalidParameter with dockerd's words
    for bad values."""
    res: dict[str, Any] = {}
    memory, swap = _int(hc, "Memory"), _int(hc, "MemorySwap")
    if memory < 0:
        raise InvalidParameter("invalid memory limit: it must be positive")
    if memory and memory < 6 * 1024 * 1024:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if swap and swap != -1 and memory and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    mem: dict[str, Any] = {}
    if memory:
        mem["limit"] = memory
        if memsw:
            mem["swap"] = -1 if swap == -1 else (swap or 2 * memory)
    reservation = _int(hc, "MemoryReservation")
    if reservation:
        if reservation < 6 * 1024 * 1024:
            raise InvalidParameter("Minimum memory reservation allowed is 6MB")
        if memory and reservation > memory:
            raise InvalidParameter("Minimum memory limit can not be less than memory reservation limit, see usage")
        mem["reservation"] = reservation
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1:
        if not isinstance(swappiness, int) or not 0 <= swappiness <= 100:
            raise InvalidParameter(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
        mem["swappiness"] = swappiness
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    nano = _int(hc, "NanoCpus")
    if nano:
        if nano < 0 or nano > (os.cpu_count() or 1) * 1_000_000_000:
            raise InvalidParameter(f"range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only "
                                   f"{os.cpu_count()} CPUs available")
        if _int(hc, "CpuQuota") or _int(hc, "CpuPeriod"):
            raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        cpu.update(period=100000, quota=nano * 100000 // 1_000_000_000)
    for key, name, low in (("CpuQuota", "quota", 1000), ("CpuPeriod", "period", 1000), ("CpuShares", "shares", 2),
                           ("CpuRealtimePeriod", "realtimePeriod", 1), ("CpuRealtimeRuntime", "realtimeRuntime", 1)):
        value = _int(hc, key)
        if value:
            if value < low and not (key == "CpuQuota" and value == -1):
                raise InvalidParameter(f"HostConfig.{key} {value} is out of range")
            cpu[name] = value
    for key, name in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        text = hc.get(key) or ""
        if text:
            if not isinstance(text, str) or not _CPUSET.match(text):
                raise InvalidParameter(f"Invalid value {text} for cpuset {name}")
            cpu[name] = text
    if cpu:
        res["cpu"] = cpu
    pids = _int(hc, "PidsLimit")
    if pids:
        res["pids"] = {"limit": pids if pids > 0 else -1}
    blkio: dict[str, Any] = {}
    weight = _int(hc, "BlkioWeight")
    if weight:
        if not 10 <= weight <= 1000:
            raise InvalidParameter("Range of blkio weight is from 10 to 1000")
        blkio["weight"] = weight
    for key, oci, rate in (("BlkioWeightDevice", "weightDevice", "Weight"),
                           ("BlkioDeviceReadBps", "throttleReadBpsDevice", "Rate"),
                           ("BlkioDeviceWriteBps", "throttleWriteBpsDevice", "Rate"),
                           ("BlkioDeviceReadIOps", "throttleReadIOPSDevice", "Rate"),
                           ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice", "Rate")):
        found = _throttle(hc.get(key), key, rate)
        if found:
            blkio[oci] = found
    if blkio:
        res["blockIO"] = blkio
    return res
