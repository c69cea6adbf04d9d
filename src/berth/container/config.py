"""A container's configuration at create: the request and the image's config checked field by field
(both are untrusted: a bad value is a 400 here, never a traceback later), then merged into the
Config that the container keeps, as dockerd merges them."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from berth import netvalues as ports
from berth.container import hostconfig, logdrivers
from berth.container import mounts as cmounts
from berth.container import security as csecurity
from berth.container.registry import Registry
from berth.errors import InvalidParameter, NotFound
from berth.linux.idmap import IDMap


def parse_request(body: Any, default_log: tuple[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the create body, its HostConfig) with canonical keys, checked; the daemon's log driver (and
    its log-opts unless the request has some) filled in."""
    if not isinstance(body, dict):
        raise InvalidParameter("the container config must be a JSON object")
    body = hostconfig.canonical_keys(body, hostconfig.CONFIG_FIELDS)
    image_name = body.get("Image")
    if not image_name or not isinstance(image_name, str):
        raise InvalidParameter("no image specified")
    hc = body.get("HostConfig") or {}
    if not isinstance(hc, dict):
        raise InvalidParameter("HostConfig must be a JSON object")
    hc = hostconfig.canonical_keys(hc, hostconfig.HONOURED | frozenset(hostconfig.REFUSED))
    body = {**body, "HostConfig": hc}
    check_config(body)
    lc = hc.get("LogConfig") or {}
    if not lc.get("Type"):
        hc = {**hc, "LogConfig": {"Type": default_log[0], "Config": lc.get("Config") or dict(default_log[1])}}
    check_host_config(hc)
    cmounts.resources(hc, memsw=True)  # bad limits are refused at create, as dockerd does
    csecurity.check(hc, hc.get("NetworkMode") or "none")
    modes = hostconfig.modes(hc)
    if modes["UTSMode"].kind == "host" and body.get("Hostname"):
        raise InvalidParameter("Conflicting options: hostname and the UTS mode")
    return body, hc


def check_bind_sources(hc: dict[str, Any]) -> None:
    for m in hc.get("Mounts") or []:
        if m.get("Type") == "bind" and m.get("Source", "").startswith("/") and not os.path.exists(m["Source"]):
            raise InvalidParameter('invalid mount config for type "bind": bind source path does not exist: '
                                   f'{m["Source"]}')


def merge(body: dict[str, Any], icfg: Any, image_name: str, cid: str) -> dict[str, Any]:
    """The container's Config: the request's values, the image's where the request has none."""
    if not isinstance(icfg, dict):
        raise InvalidParameter(f"image {image_name} has an invalid config")
    check_config(icfg, f"image {image_name} has an invalid config: ")
    health = icfg.get("Healthcheck")
    if health is not None and not isinstance(health, dict):
        raise InvalidParameter(f"image {image_name} has an invalid config: Healthcheck must be an object")
    cfg: dict[str, Any] = {
        "Hostname": body.get("Hostname") or "", "Domainname": body.get("Domainname") or "",
        "User": body.get("User") or icfg.get("User") or "", "AttachStdin": bool(body.get("AttachStdin")),
        "AttachStdout": bool(body.get("AttachStdout")), "AttachStderr": bool(body.get("AttachStderr")),
        "Tty": bool(body.get("Tty")), "OpenStdin": bool(body.get("OpenStdin")),
        "StdinOnce": bool(body.get("StdinOnce")), "Image": image_name,
        "WorkingDir": body.get("WorkingDir") or icfg.get("WorkingDir") or "",
        "StopSignal": body.get("StopSignal") or icfg.get("StopSignal") or "SIGTERM",
    }
    if body.get("StopTimeout") is not None:
        cfg["StopTimeout"] = body["StopTimeout"]
    env = {e.split("=", 1)[0]: e for e in icfg.get("Env") or []}
    for e in body.get("Env") or []:
        env[e.split("=", 1)[0]] = e
    cfg["Env"] = list(env.values())
    entry = body.get("Entrypoint")
    if entry is not None:
        cfg["Entrypoint"] = [entry] if isinstance(entry, str) else entry
        cfg["Cmd"] = body.get("Cmd") or None
    else:
        cfg["Entrypoint"] = icfg.get("Entrypoint")
        cfg["Cmd"] = body.get("Cmd") or icfg.get("Cmd")
    if isinstance(cfg["Cmd"], str):
        cfg["Cmd"] = [cfg["Cmd"]]
    if not (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or []):
        raise InvalidParameter("no command specified")
    cfg["Labels"] = {**(icfg.get("Labels") or {}), **(body.get("Labels") or {})}
    cfg["ExposedPorts"] = body.get("ExposedPorts") or icfg.get("ExposedPorts")
    health = body.get("Healthcheck") or icfg.get("Healthcheck")
    if health:
        cfg["Healthcheck"] = check_health(health)
    if not cfg["Hostname"]:
        cfg["Hostname"] = cid[:12]
    if body.get("MacAddress"):
        cfg["MacAddress"] = body["MacAddress"]
    return cfg


def check_ports(hc: dict[str, Any]) -> None:
    """PortBindings as dockerd checks them: "PORT[/PROTO]" keys, numeric (or range) host ports, IPs."""
    bindings = hc.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise InvalidParameter("HostConfig.PortBindings must be a JSON object")
    for key, entries in bindings.items():
        ports.parse_port_key(key)
        if entries is not None and not isinstance(entries, list):
            raise InvalidParameter(f"invalid port binding for {key!r}")
        for e in entries or []:
            if e is not None and not isinstance(e, dict):
                raise InvalidParameter(f"invalid port binding for {key!r}")
            ports.parse_host_port((e or {}).get("HostPort") or "")
            hip = (e or {}).get("HostIp") or ""
            if hip:
                ports.parse_ip(hip)


_STRING_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")


def check_config(body: dict[str, Any], what: str = "") -> None:
    """A container config (the create request's, or the image's: both are untrusted), type by type:
    a bad value is a 400 here, never a traceback later. ``what`` prefixes the messages."""
    try:
        _check_config_fields(body)
        for key in body.get("ExposedPorts") or {}:
            ports.parse_port_key(key)
    except InvalidParameter as exc:
        raise InvalidParameter(what + exc.message) from None


def _check_config_fields(body: dict[str, Any]) -> None:
    for key in _STRING_LISTS:
        value = body.get(key)
        if value is None or (key in ("Cmd", "Entrypoint") and isinstance(value, str)):
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidParameter(f"{key} must be a list of strings")
    for key in ("Hostname", "Domainname", "User", "WorkingDir", "StopSignal", "MacAddress", "Image"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidParameter(f"{key} must be a string")
    for key in ("Labels", "ExposedPorts", "Volumes"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise InvalidParameter(f"{key} must be a JSON object")
    for k, v in (body.get("Labels") or {}).items():
        if not isinstance(v, str):
            raise InvalidParameter(f"label {k!r} must have a string value")
    for e in body.get("Env") or []:
        if not e or e.startswith("=") or "\0" in e:
            raise InvalidParameter(f"invalid environment variable: {e!r}")
    wd = body.get("WorkingDir") or ""
    if wd and not wd.startswith("/"):
        raise InvalidParameter(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    timeout = body.get("StopTimeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise InvalidParameter("StopTimeout must be an integer")


def check_health(health: Any) -> dict[str, Any]:
    """A Healthcheck (from the request or the image), every field typed, with dockerd's limits."""
    if not isinstance(health, dict):
        raise InvalidParameter("Healthcheck must be a JSON object")
    test = health.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise InvalidParameter("Healthcheck.Test must be a list of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidParameter(f"invalid healthcheck test: {test[0]!r} (use CMD, CMD-SHELL or NONE)")
    if test and test[0] == "CMD-SHELL" and len(test) != 2:
        raise InvalidParameter("Healthcheck CMD-SHELL takes one string")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = health.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidParameter(f"Healthcheck.{key} must be a positive number of nanoseconds")
        if 0 < value < 1_000_000:
            raise InvalidParameter(f"{key} in Healthcheck cannot be less than 1ms")
    retries = health.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidParameter("--health-retries cannot be negative")
    return dict(health)


def check_host_config(hc: dict[str, Any]) -> None:
    hostconfig.check_fields(hc)
    check_ports(hc)
    for entry in hc.get("ExtraHosts") or []:
        host, sep, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
        if not sep or not host:
            raise InvalidParameter(f"bad format for add-host: {entry!r}")
        if ip != "host-gateway":
            try:
                ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                raise InvalidParameter(f"invalid IP address in add-host: {ip!r}") from None
    for server in hc.get("Dns") or []:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidParameter(f"{server} is not an ip address") from None
    policy = hc.get("RestartPolicy") or {}
    restart = policy.get("Name") or "no"
    if restart not in ("no", "always", "unless-stopped", "on-failure"):
        raise InvalidParameter(f"invalid restart policy '{restart}'")
    retries = int(policy.get("MaximumRetryCount") or 0)
    if retries and restart != "on-failure":
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if retries < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if restart != "no" and hc.get("AutoRemove"):
        raise InvalidParameter("conflicting options: cannot specify both --restart and --rm")
    logdrivers.parse(hc.get("LogConfig"))

def check_remapped(registry: Registry, hc: dict[str, Any], modes: dict[str, hostconfig.Mode], idmap: IDMap) -> None:
    """As dockerd: what would give a remapped container the host's root needs --userns=host, and
    a namespace it joins must be one of a container with the same mapping (another may be the host's)."""
    if hc.get("Privileged"):
        raise InvalidParameter("privileged mode is incompatible with user namespaces.  You must run the "
                               "container in the host namespace when running privileged mode")
    net_mode = hc.get("NetworkMode") or ""
    if net_mode == "host":
        raise InvalidParameter("Cannot share the host's network namespace when user namespaces are enabled")
    for field, what in (("PidMode", "PID"), ("IpcMode", "IPC")):
        if modes[field].kind == "host":
            raise InvalidParameter(f"Cannot share the host {what} namespace when user namespaces are enabled")
    targets = [m.target for m in (modes["PidMode"], modes["IpcMode"]) if m.kind == "container"]
    if net_mode.startswith("container:"):
        targets.append(net_mode.split(":", 1)[1])
    for target in targets:
        try:
            other = registry.get(target)
        except NotFound as exc:
            raise InvalidParameter(exc.message) from None
        if other.idmap != idmap:
            raise InvalidParameter(f"cannot join the namespaces of container {target}: it does not run "
                                   "with this daemon's user namespace (userns-remap)")

def volumes_from(registry: Registry, hc: dict[str, Any]) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """``--volumes-from CONTAINER[:ro|:rw]``: (volumes, binds) of those containers, read-only as the
    mode says or as they were."""
    vols: list[tuple[str, str, bool]] = []
    binds: list[str] = []
    entries = hc.get("VolumesFrom") or []
    if not isinstance(entries, list):
        raise InvalidParameter("HostConfig.VolumesFrom must be a list")
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise InvalidParameter(f"invalid volumes-from {entry!r}")
        ref, _, mode = entry.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidParameter(f"invalid mode for volumes-from: {mode}")
        try:
            other = registry.get(ref)
        except NotFound as exc:  # a 404 from create makes the docker CLI try to pull the image
            raise InvalidParameter(exc.message) from None
        for name, dst, ro in registry.volumes_of(other.id):
            vols.append((name, dst, ro if not mode else mode == "ro"))
        for b in other.host_config.get("Binds") or []:
            parts = b.split(":")
            if parts[0].startswith("/") and len(parts) >= 2:
                opts = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o not in ("ro", "rw")]
                ro = mode == "ro" or (not mode and len(parts) == 3 and "ro" in parts[2].split(","))
                binds.append(":".join(parts[:2] + [",".join(opts + (["ro"] if ro else []))]).rstrip(":"))
    return vols, binds

