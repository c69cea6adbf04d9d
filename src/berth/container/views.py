"""How a container shows: its Status text ("Up 3 weeks (healthy)"), its entry in the container list,
and the inspect document, as dockerd makes them."""

from __future__ import annotations

import os
import time
from typing import Any

from berth.container import logs as clogs
from berth.container import mounts as cmounts
from berth.container.model import Container
from berth.container.registry import Layout
from berth.units import human_duration


def unix_time(ts: str) -> float:
    return clogs.parse_time(ts.replace("Z", "+00:00")) if ts else 0.0


def _ago(ts: str) -> str:
    return human_duration(max(0.0, time.time() - unix_time(ts)))


def status_text(ctr: Container) -> str:
    st = ctr.state
    if st.restarting:
        return f"Restarting ({st.exit_code}) {_ago(st.finished_at)} ago"
    if st.running:
        health = st.health.status if st.health is not None else ""
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return "Up " + _ago(st.started_at) + suffix.get(health, "")
    if st.status == "exited":
        return f"Exited ({st.exit_code}) {_ago(st.finished_at)} ago"
    return "Created"


def summary(ctr: Container, ports: list[dict[str, Any]], networks: dict[str, Any]) -> dict[str, Any]:
    """The container's entry in GET /containers/json."""
    return {"Id": ctr.id, "Names": ["/" + ctr.name], "Image": ctr.image, "ImageID": ctr.image_id,
            "Command": " ".join(ctr.command), "Created": int(unix_time(ctr.created)), "Ports": ports,
            "Labels": ctr.config.get("Labels") or {}, "State": ctr.state.status, "Status": status_text(ctr),
            "HostConfig": {"NetworkMode": ctr.host_config.get("NetworkMode")},
            "NetworkSettings": {"Networks": networks}, "Mounts": []}


def inspect(ctr: Container, layout: Layout, lowers: list[str], volumes: list[tuple[str, str, bool, str]],
            network_settings: dict[str, Any]) -> dict[str, Any]:
    """GET /containers/{id}/json; ``volumes``: (name, destination, read-only, host directory)."""
    p = layout.paths(ctr.id)
    cmd = ctr.command
    return {
        "Id": ctr.id, "Created": ctr.created, "Path": cmd[0] if cmd else "", "Args": cmd[1:],
        "State": ctr.state.view(), "Image": ctr.image_id, "ResolvConfPath": layout.dir(ctr.id, "resolv.conf"),
        "HostnamePath": layout.dir(ctr.id, "hostname"), "HostsPath": layout.dir(ctr.id, "hosts"),
        "LogPath": p.log_path, "Name": "/" + ctr.name, "RestartCount": ctr.restart_count, "Driver": "overlay2",
        "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": {**ctr.host_config, "Runtime": ctr.runtime},
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(lowers), "UpperDir": layout.dir(ctr.id, "upper"),
            "WorkDir": layout.dir(ctr.id, "work"), "MergedDir": os.path.join(p.bundle, "rootfs")}},
        "Mounts": [*bind_views(ctr.host_config),
                   *({"Type": "volume", "Name": n, "Source": src, "Destination": d, "Driver": "local", "Mode": "z",
                      "RW": not ro, "Propagation": ""} for n, d, ro, src in volumes)],
        "Config": ctr.config, "NetworkSettings": network_settings,
    }


def bind_views(hc: dict[str, Any]) -> list[dict[str, Any]]:
    """Inspect's Mounts entries for host paths (``-v /src:/dst[:opts]``, ``--mount type=bind``) and
    ``--mount type=tmpfs``, as dockerd shows them."""
    out: list[dict[str, Any]] = []
    for bind in hc.get("Binds") or []:
        parts = str(bind).split(":")
        if len(parts) < 2 or not parts[0].startswith("/"):
            continue
        opts = parts[2].split(",") if len(parts) > 2 else []
        prop = next((o for o in opts if o in cmounts.PROPAGATIONS), "rprivate")
        out.append({"Type": "bind", "Source": parts[0], "Destination": parts[1], "Mode": parts[2] if len(parts) > 2
                    else "", "RW": "ro" not in opts, "Propagation": prop})
    for m in hc.get("Mounts") or []:
        kind = m.get("Type") or "volume"
        if kind == "bind":
            prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
            out.append({"Type": "bind", "Source": m.get("Source") or "", "Destination": m.get("Target") or "",
                        "Mode": "", "RW": not m.get("ReadOnly"), "Propagation": prop})
        elif kind == "tmpfs":
            out.append({"Type": "tmpfs", "Source": "", "Destination": m.get("Target") or "", "Mode": "",
                        "RW": not m.get("ReadOnly"), "Propagation": ""})
    return out
