"""Container statistics from its cgroups (v1 or v2), in the Engine API's shape."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from berth.linux.files import read_text

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


_read = read_text


def _int(path: str) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _kv(path: str) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def system_cpu_ns() -> int:
    first = _read("/proc/stat").splitlines()[0].split()[1:8]
    return sum(int(x) for x in first) * _TICK_NS


def sample(cid: str, name: str, v2: bool) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    if v2:
        base = f"/sys/fs/cgroup/berth/{cid}"
        cpu = _kv(f"{base}/cpu.stat")
        total, user, system = (cpu.get("usage_usec", 0) * 1000, cpu.get("user_usec", 0) * 1000,
                               cpu.get("system_usec", 0) * 1000)
        usage = _int(f"{base}/memory.current")
        limit_text = _read(f"{base}/memory.max").strip()
        limit = int(limit_text) if limit_text.isdigit() else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        mstats = _kv(f"{base}/memory.stat")
        pids = _int(f"{base}/pids.current")
    else:
        total = _int(f"/sys/fs/cgroup/cpuacct/berth/{cid}/cpuacct.usage")
        ticks = _kv(f"/sys/fs/cgroup/cpuacct/berth/{cid}/cpuacct.stat")
        user, system = ticks.get("user", 0) * _TICK_NS, ticks.get("system", 0) * _TICK_NS
        base = f"/sys/fs/cgroup/memory/berth/{cid}"
        usage = _int(f"{base}/memory.usage_in_bytes")
        limit = min(_int(f"{base}/memory.limit_in_bytes") or 1 << 62,
                    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        mstats = _kv(f"{base}/memory.stat")
        pids = _int(f"/sys/fs/cgroup/pids/berth/{cid}/pids.current")
    return {
        "read": now, "name": "/" + name, "id": cid, "num_procs": 0,
        "pids_stats": {"current": pids},
        "cpu_stats": {"cpu_usage": {"total_usage": total, "usage_in_kernelmode": system, "usage_in_usermode": user},
                      "system_cpu_usage": system_cpu_ns(), "online_cpus": os.cpu_count() or 1,
                      "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": usage, "limit": limit, "stats": mstats},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None},
        "storage_stats": {},
    }


def empty(cid: str, name: str) -> dict[str, Any]:
    return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "name": "/" + name, "id": cid,
            "pids_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}, "memory_stats": {},
            "blkio_stats": {}, "num_procs": 0, "storage_stats": {}}
