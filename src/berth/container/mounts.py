"""Binds, tmpfs mounts and resource limits from a create request, as OCI spec entries.

-v SRC:DST[:ro] creates a missing source directory (Docker's legacy behaviour); --mount type=bind
refuses one ("bind source path does not exist"). Named and anonymous volumes arrive with the volume
driver (they are refused until then).
"""

from __future__ import annotations

import os
from typing import Any

from berth.errors import InvalidParameter, NotSupported


def _check_target(target: str) -> str:
    if not target.startswith("/"):
        raise InvalidParameter(f"invalid mount config: mount path must be absolute: {target!r}")
    if target == "/":
        raise InvalidParameter("invalid mount config: destination can't be '/'")
    return os.path.normpath(target)


def mounts(hc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or len(parts) > 3:
            raise InvalidParameter(f"invalid volume specification: '{bind}'")
        src, dst = parts[0], _check_target(parts[1])
        mode = parts[2].split(",") if len(parts) == 3 else []
        if not src.startswith("/"):
            continue  # a named volume: see volume_requests
        if not os.path.exists(src):
            os.makedirs(src, mode=0o755)  # -v creates a missing host directory, as dockerd does
        bad = [m for m in mode if m not in ("ro", "rw", "z", "Z", "rprivate", "private", "rslave", "slave",
                                            "rshared", "shared")]
        if bad:
            raise InvalidParameter(f"invalid mode: {','.join(bad)}")
        out.append({"destination": dst, "type": "bind", "source": src,
                    "options": ["rbind", "rprivate"] + (["ro"] if "ro" in mode else [])})
    for m in hc.get("Mounts") or []:
        typ, target = m.get("Type", "volume"), _check_target(m.get("Target") or m.get("Destination") or "")
        if typ == "bind":
            src = m.get("Source") or ""
            if not src.startswith("/"):
                raise InvalidParameter(f'invalid mount config for type "bind": invalid mount path: {src!r} mount '
                                       "path must be absolute")
            if not os.path.exists(src):
                raise InvalidParameter(f'invalid mount config for type "bind": bind source path does not exist: {src}')
            out.append({"destination": target, "type": "bind", "source": src,
                        "options": ["rbind", "rprivate"] + (["ro"] if m.get("ReadOnly") else [])})
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


def resources(hc: dict[str, Any], memsw: bool) -> dict[str, Any]:
    """linux.resources for memory, CPU and pids; InvalidParameter with dockerd's words for bad values."""
    res: dict[str, Any] = {}
    memory = int(hc.get("Memory") or 0)
    swap = int(hc.get("MemorySwap") or 0)
    if memory < 0:
        raise InvalidParameter("invalid memory limit: it must be positive")
    if memory and memory < 6 * 1024 * 1024:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if swap and swap != -1 and memory and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory:
        mem: dict[str, Any] = {"limit": memory}
        if memsw:
            mem["swap"] = -1 if swap == -1 else (swap or 2 * memory)
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    nano = int(hc.get("NanoCpus") or 0)
    if nano:
        if nano < 0 or nano > (os.cpu_count() or 1) * 1_000_000_000:
            raise InvalidParameter(f"range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only "
                                   f"{os.cpu_count()} CPUs available")
        cpu.update(period=100000, quota=nano * 100000 // 1_000_000_000)
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = str(hc["CpusetCpus"])
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids:
        res["pids"] = {"limit": int(pids) if int(pids) > 0 else -1}
    return res
