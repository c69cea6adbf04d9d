"""Container statistics from its cgroups (v1 or v2), in the Engine API's shape, and its processes (top)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from typing import Any

from berth.errors import InvalidParameter
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


_MAX_LINKS = 64  # interfaces reported: a container with CAP_NET_ADMIN may make many


def networks(pid: int) -> dict[str, dict[str, int]] | None:
    """Per-interface counters of the network namespace ``pid`` is in (the kernel's view, from the
    host's /proc), loopback left out as dockerd does; None when the process is gone."""
    try:
        lines = _read(f"/proc/{pid}/net/dev").splitlines()[2:]
    except OSError:
        return None
    out: dict[str, dict[str, int]] = {}
    for line in lines[:_MAX_LINKS + 1]:
        ifname, _, rest = line.partition(":")
        f = rest.split()
        ifname = ifname.strip()
        if ifname == "lo" or len(f) < 12 or not all(x.isdigit() for x in f[:12]):
            continue
        n = [int(x) for x in f]
        out[ifname] = {"rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
                       "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11]}
    return out or None


def _blkio_v1(path: str) -> list[dict[str, Any]] | None:
    out = []
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0] and parts[2].isdigit():
            major, _, minor = parts[0].partition(":")
            if major.isdigit() and minor.isdigit():
                out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out or None


def _blkio_v2(path: str) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """io.stat as dockerd reports it on cgroup v2: bytes and operations, ops "read" and "write"."""
    nbytes: list[dict[str, Any]] = []
    nios: list[dict[str, Any]] = []
    for line in _read(path).splitlines():
        dev, *fields = line.split()
        major, _, minor = dev.partition(":")
        if not (major.isdigit() and minor.isdigit()):
            continue
        kv = dict(f.split("=", 1) for f in fields if "=" in f)
        for key, op, into in (("rbytes", "read", nbytes), ("wbytes", "write", nbytes), ("rios", "read", nios),
                              ("wios", "write", nios)):
            if kv.get(key, "").isdigit():
                into.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv[key])})
    return nbytes or None, nios or None


def sample(cid: str, name: str, v2: bool, pid: int = 0) -> dict[str, Any]:
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
        io_bytes, io_ops = _blkio_v2(f"{base}/io.stat")
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
        blkio = f"/sys/fs/cgroup/blkio/berth/{cid}"
        io_bytes = _blkio_v1(f"{blkio}/blkio.throttle.io_service_bytes_recursive")
        io_ops = _blkio_v1(f"{blkio}/blkio.throttle.io_serviced_recursive")
    out = {
        "read": now, "name": "/" + name, "id": cid, "num_procs": 0,
        "pids_stats": {"current": pids},
        "cpu_stats": {"cpu_usage": {"total_usage": total, "usage_in_kernelmode": system, "usage_in_usermode": user},
                      "system_cpu_usage": system_cpu_ns(), "online_cpus": os.cpu_count() or 1,
                      "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": usage, "limit": limit, "stats": mstats},
        "blkio_stats": {"io_service_bytes_recursive": io_bytes, "io_serviced_recursive": io_ops,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
                        "sectors_recursive": None},
        "storage_stats": {},
    }
    nets = networks(pid) if pid else None
    if nets is not None:
        out["networks"] = nets
    return out


def empty(cid: str, name: str) -> dict[str, Any]:
    return {"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "name": "/" + name, "id": cid,
            "pids_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}, "memory_stats": {},
            "blkio_stats": {}, "num_procs": 0, "storage_stats": {}}


def top(cid: str, ps_args: str) -> dict[str, Any]:
    """`ps` on the host, keeping the container's processes (those in its cgroup), as dockerd does."""
    pids: set[str] = set()
    for path in (f"/sys/fs/cgroup/pids/berth/{cid}/cgroup.procs", f"/sys/fs/cgroup/berth/{cid}/cgroup.procs",
                 f"/sys/fs/cgroup/memory/berth/{cid}/cgroup.procs"):
        try:
            with open(path) as f:
                pids.update(f.read().split())
            break
        except OSError:
            continue
    args = ps_args.split() if ps_args else ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise InvalidParameter(f"ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidParameter("Couldn't find PID field in ps output")
    pid_col = titles.index("PID")
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col] in pids:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}
