"""What a request asks for, as the authorization policy's context: a container create's host paths
(symlinks resolved, ``--volumes-from`` included, every ancestor), devices, capabilities, namespace
modes and everything else that escalates; an exec's privileges."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from berth.container import defaults as cspec
from berth.container import hostconfig
from berth.errors import BerthError, InvalidParameter
from berth.security import policy as pol

HOST_NAMESPACES = ("network_mode", "pid_mode", "ipc_mode", "uts_mode", "userns_mode", "cgroupns_mode")


def create_context(body: dict[str, Any], host_binds: Callable[[str], list[str]],
                   daemon_sockets: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """The policy's context for a container create (or a start, from the stored create body): what it
    asks for that a rule may refuse, and its labels. ``host_binds(container)``: the host paths a
    ``--volumes-from`` container binds; ``daemon_sockets``: the daemon's own unix sockets."""
    body = hostconfig.canonical_keys(body, hostconfig.CONFIG_FIELDS)
    hc = body.get("HostConfig") or {}
    if not isinstance(hc, dict):
        raise InvalidParameter("HostConfig must be a JSON object")
    hc = hostconfig.canonical_keys(hc, hostconfig.HONOURED | frozenset(hostconfig.REFUSED))
    ctx = pol.neutral_context()
    paths: set[str] = set()
    for bind in _strings(hc.get("Binds")):
        src = bind.split(":", 1)[0]
        if src.startswith("/"):
            paths.add(src)
    for m in hc.get("Mounts") or []:
        if isinstance(m, dict):
            m = {k.lower(): v for k, v in m.items()}
            if str(m.get("type") or "").lower() == "bind" and isinstance(m.get("source"), str):
                paths.add(m["source"])
    for ref in _strings(hc.get("VolumesFrom")):
        try:
            paths.update(host_binds(ref.split(":", 1)[0]))
        except BerthError:
            continue  # the create answers for a container that does not exist
    resolved = {os.path.normpath(p) for p in paths} | {os.path.realpath(p) for p in paths}
    prefixes = {a for p in resolved for a in _ancestors(p)}
    devices = [str(d.get("PathOnHost") or "") for d in hc.get("Devices") or [] if isinstance(d, dict)]
    caps = sorted({c.upper().removeprefix("CAP_") for c in _strings(hc.get("CapAdd"))})
    opts = _strings(hc.get("SecurityOpt"))
    unconfined = {o.replace(":", "=", 1) for o in opts}
    ctx.update(
        privileged=bool(hc.get("Privileged")),
        host_paths=sorted(resolved), host_path_prefixes=sorted(prefixes),
        daemon_socket=any(s == p or s.startswith(p.rstrip("/") + "/") for s in daemon_sockets
                          for p in resolved),
        devices=sorted(set(devices)), cap_add=caps,
        network_mode=str(hc.get("NetworkMode") or ""), pid_mode=str(hc.get("PidMode") or ""),
        ipc_mode=str(hc.get("IpcMode") or ""), uts_mode=str(hc.get("UTSMode") or ""),
        userns_mode=str(hc.get("UsernsMode") or ""), cgroupns_mode=str(hc.get("CgroupnsMode") or ""),
        security_opt=sorted(set(opts)),
        seccomp_unconfined="seccomp=unconfined" in unconfined,
        image=str(body.get("Image") or ""), user=str(body.get("User") or ""),
    )
    rules = sorted(set(_strings(hc.get("DeviceCgroupRules"))))
    ctx["device_cgroup_rules"] = rules
    ctx["paths_unconfined"] = "systempaths=unconfined" in unconfined or any(
        isinstance(hc.get(k), list) and not set(default) <= set(_strings(hc.get(k)))
        for k, default in (("MaskedPaths", cspec.MASKED), ("ReadonlyPaths", cspec.READONLY)))
    ctx["escalates"] = bool(
        ctx["privileged"] or resolved or devices or caps or ctx["seccomp_unconfined"] or rules
        or ctx["paths_unconfined"] or unconfined & {"apparmor=unconfined", "label=disable"}
        or any(ctx[k] == "host" for k in HOST_NAMESPACES)
        or any(str(ctx[k]).startswith("container:") for k in ("pid_mode", "ipc_mode", "network_mode")))
    return ctx, _labels(body.get("Labels"))

def exec_context(body: dict[str, Any]) -> dict[str, Any]:
    body = {k.lower(): v for k, v in body.items()}
    ctx = pol.neutral_context()
    ctx.update(privileged=bool(body.get("privileged")), user=str(body.get("user") or ""))
    ctx["escalates"] = ctx["privileged"]
    return ctx


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _ancestors(path: str) -> list[str]:
    out = [path]
    while path not in ("/", ""):
        path = os.path.dirname(path)
        out.append(path)
    return out
