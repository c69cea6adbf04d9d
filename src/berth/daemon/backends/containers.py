"""The container backend: create/start/stop/kill/wait/logs/attach/rm/list/inspect.

It composes the image store (rootfs layers), the container package (spec, runtime, logs) and the
database. Every multi-step operation collects its undo steps in an ExitStack that is disarmed only on
success, so a failed start leaves no mount, runtime container or half-updated state behind.

Exits: conmon writes ``<exit dir>/<id>`` when a container ends; an inotify watch on that directory
calls ``_exited``, which records the code, releases the runtime container and the rootfs mount,
wakes waiters, emits "die", and removes AutoRemove containers. At start, ``reconcile`` does the same
for containers that ended while berthd was down.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from berth.api.hijack import parse_detach_keys
from berth.container import archive as carchive
from berth.container import hostconfig, logdrivers, names, seccomp, spec
from berth.container import logs as clogs
from berth.container import mounts as cmounts
from berth.container import security as csecurity
from berth.container import stats as cstats
from berth.container.runtime import (
    OCIRuntime,
    Paths,
    connect_attach,
    parse_signal,
    pid_alive,
    read_exit_code,
    receive_console,
    wait_pid_gone,
)
from berth.daemon.backends import logship
from berth.daemon.backends.bridge import BodyPipe, iterate_in_thread, run_in_own_thread
from berth.daemon.backends.networks import Member, NetworkService, Setup
from berth.daemon.backends.networks import mode_of as networks_mode_of
from berth.daemon.events import EventBus, make_event
from berth.errors import BerthError, Conflict, InvalidParameter, NotFound, NotModified, NotSupported, System
from berth.image import importer
from berth.image import reference as image_reference
from berth.image.store import ImageStore, NewLayer
from berth.image.streams import decompressed
from berth.linux import cgroups, safepath
from berth.linux.files import read_text
from berth.linux.idmap import IDMap, UserNamespace, mount_overlay, share_with_remapped_root
from berth.linux.inotify import DirWatch
from berth.linux.mount import MS_NODEV, MS_NOEXEC, MS_NOSUID, is_mounted, umount
from berth.linux.mount import mount as mount_fs
from berth.network import ports
from berth.store.db import Database
from berth.volume.local import LocalVolumes

log = logging.getLogger("berth.containers")
HEALTH_OUTPUT_MAX = 4096  # bytes of a healthcheck's output kept in State.Health.Log (dockerd's maxOutputLen)
_KILL_WAIT = 10.0  # seconds a SIGKILL's answer waits for the exit to be recorded
_REMOVED_EXITS_KEPT = 256  # exit codes of --rm containers kept for a late wait
_REMOVED_EXITS_FOR = 10.0  # seconds



class _ExecFailed(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _check_ports(hc: dict[str, Any]) -> None:
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


def _check_config(body: dict[str, Any], what: str = "") -> None:
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


def _check_health(health: Any) -> dict[str, Any]:
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


def _in_cgroup(pid: int, cid: str) -> bool:
    """Whether process ``pid`` is in container ``cid``'s cgroup (so not a pid reused since)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return cid in f.read()
    except OSError:
        return False


def _is_hex(text: str) -> bool:
    return len(text) <= 64 and all(c in "0123456789abcdef" for c in text)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _unix(ts: str) -> float:
    return clogs.parse_time(ts.replace("Z", "+00:00")) if ts else 0.0


@dataclass
class Ctr:
    id: str
    name: str
    image: str
    image_id: str
    created: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any]
    runtime: str

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))


def _new_state() -> dict[str, Any]:
    return {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
            "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z"}


class ContainerService:
    def __init__(self, db: Database, images: ImageStore, bus: EventBus, data_root: str, exec_root: str,
                 runtimes: dict[str, OCIRuntime], default_runtime: str, volumes: LocalVolumes,
                 networks: NetworkService, userns: UserNamespace | None = None,
                 default_log: tuple[str, dict[str, str]] = ("json-file", {})) -> None:
        self.db = db
        self.default_log = (default_log[0], MappingProxyType(dict(default_log[1])))
        self.networks = networks
        networks.container_ref = self._ref
        networks.member_of = lambda cid: self._member(self._get(cid))
        networks.is_running = lambda cid: self._get(cid).running
        networks.pid_of = lambda cid: int(self._get(cid).state.get("Pid") or 0)
        networks.files_of = lambda cid: (read_text(os.path.join(self.root, cid, "hosts")),
                                         read_text(os.path.join(self.root, cid, "resolv.conf")))
        self.images = images
        self.volumes = volumes
        self.bus = bus
        self.root = os.path.join(data_root, "containers")
        self.run_root = os.path.join(exec_root, "containers")
        self.exit_dir = os.path.join(exec_root, "exits")
        for d in (self.root, self.run_root, self.exit_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        if userns is not None:  # the runtime reaches bundles and /etc files as the remapped root
            for d in (self.root, self.run_root):
                share_with_remapped_root(d, userns.idmap)
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self._waiters: dict[str, list[tuple[str, asyncio.Future[int]]]] = {}
        self._shippers: dict[str, asyncio.Task[tuple[str, int] | None]] = {}  # container ID → its syslog/journald shipper
        self._journal_marks: dict[str, tuple[str, int]] = {}  # container ID → last journald entry its shipper sent
        self._removed_exits: dict[str, tuple[str, int, float]] = {}  # --rm containers: ID → (name, code, when)
        self._locks: dict[str, asyncio.Lock] = {}
        self._watch: DirWatch | None = None
        # attach calls waiting for a container's stdin socket (the docker CLI attaches before start)
        self._stdin_waiters: dict[str, list[asyncio.Future[socket.socket]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_restarts: dict[str, asyncio.TimerHandle] = {}
        self._health_tasks: dict[str, asyncio.Task[None]] = {}
        self._rotator: asyncio.Task[None] | None = None
        self._rootfs_users: dict[str, int] = {}  # readers of a stopped container's files (cp, export)
        self._rootfs_lock = threading.Lock()
        self._changed: dict[str, asyncio.Event] = {}  # set when a container stops: log followers finish at once
        self.userns = userns  # userns-remap: the namespace whose ids remap containers' root
        self.cgroup_v2 = cgroups.layout() == "v2"
        self.memsw = self.cgroup_v2 or os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")

    # ---- persistence ---------------------------------------------------------------------------
    def _row(self, r: Any) -> Ctr:
        return Ctr(r["id"], r["name"], r["image"], r["image_id"], r["created"], json.loads(r["config"]),
                   json.loads(r["host_config"]), json.loads(r["state"]), r["runtime"])

    def _get(self, name_or_id: str) -> Ctr:
        key = name_or_id.lstrip("/")
        with self.db.read() as c:
            r = c.execute("SELECT * FROM containers WHERE id = ? OR name = ?", (key, key)).fetchone()
            if r is None and key and _is_hex(key):  # an ID prefix (never a LIKE pattern: no "%" or "_" in it)
                rows = c.execute("SELECT * FROM containers WHERE id LIKE ?", (key + "%",)).fetchall()
                if len(rows) > 1:
                    raise InvalidParameter(f"multiple IDs found with provided prefix: {key}")
                r = rows[0] if rows else None
        if r is None:
            raise NotFound(f"No such container: {name_or_id}")
        return self._row(r)

    def _save_state(self, ctr: Ctr) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE containers SET state = ? WHERE id = ?", (json.dumps(ctr.state), ctr.id))

    def all(self) -> list[Ctr]:
        with self.db.read() as c:
            return [self._row(r) for r in c.execute("SELECT * FROM containers ORDER BY created DESC")]

    def images_in_use(self) -> set[str]:
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT DISTINCT image_id FROM containers")}

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _paths(self, ctr: Ctr) -> Paths:
        run = os.path.join(self.run_root, ctr.id)
        return Paths(bundle=run, run_dir=os.path.join(run, "run"), exit_dir=self.exit_dir,
                     log_path=os.path.join(self.root, ctr.id, f"{ctr.id}-json.log"))

    def _event(self, action: str, ctr: Ctr, **extra: str) -> None:
        # labels first: an image's label named "name" or "image" cannot disguise the event (as dockerd)
        attrs = {**(ctr.config.get("Labels") or {}), "name": ctr.name, "image": ctr.image, **extra}
        self.bus.publish(make_event("container", action, ctr.id, attrs))

    # ---- create --------------------------------------------------------------------------------
    def _check_host_config(self, hc: dict[str, Any]) -> None:
        hostconfig.check_fields(hc)
        _check_ports(hc)
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

    def create(self, body: dict[str, Any], name: str, api_version: str) -> dict[str, Any]:
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
        _check_config(body)
        lc = hc.get("LogConfig") or {}
        if not lc.get("Type"):  # the daemon's log-driver (and its log-opts unless the request has some)
            hc = {**hc, "LogConfig": {"Type": self.default_log[0], "Config": lc.get("Config") or dict(self.default_log[1])}}
        self._check_host_config(hc)
        cmounts.resources(hc, memsw=True)  # bad limits are refused at create, as dockerd does
        csecurity.check(hc, hc.get("NetworkMode") or "none")
        modes = hostconfig.modes(hc)
        if modes["UTSMode"].kind == "host" and body.get("Hostname"):
            raise InvalidParameter("Conflicting options: hostname and the UTS mode")
        idmap = self.userns.idmap if self.userns is not None and modes["UsernsMode"].kind != "host" else None
        if idmap is not None:
            self._check_remapped(hc, modes, idmap)
        for m in hc.get("Mounts") or []:
            if m.get("Type") == "bind" and m.get("Source", "").startswith("/") and not os.path.exists(m["Source"]):
                raise InvalidParameter('invalid mount config for type "bind": bind source path does not exist: '
                                       f'{m["Source"]}')
        try:
            image_id = self.images.resolve(image_name)
        except NotFound:
            raise NotFound(f"No such image: {image_name}") from None
        icfg = self.images.config(image_id).get("config") or {}
        if not isinstance(icfg, dict):
            raise InvalidParameter(f"image {image_name} has an invalid config")
        _check_config(icfg, f"image {image_name} has an invalid config: ")
        health = icfg.get("Healthcheck")
        if health is not None and not isinstance(health, dict):
            raise InvalidParameter(f"image {image_name} has an invalid config: Healthcheck must be an object")
        cfg: dict[str, Any] = {
            "Hostname": body.get("Hostname") or "", "Domainname": body.get("Domainname") or "",
            "User": body.get("User") or icfg.get("User") or "", "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout")), "AttachStderr": bool(body.get("AttachStderr")),
            "Tty": bool(body.get("Tty")), "OpenStdin": bool(body.get("OpenStdin")), "StdinOnce": bool(body.get("StdinOnce")),
            "Image": image_name,
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
            cfg["Healthcheck"] = _check_health(health)
        cid = secrets.token_hex(32)
        if not cfg["Hostname"]:
            cfg["Hostname"] = cid[:12]
        mode, plan = self.networks.plan(hc, body.get("NetworkingConfig"))
        if mode != "none" and body.get("NetworkDisabled"):
            mode, plan = "none", []
        if body.get("MacAddress"):
            cfg["MacAddress"] = body["MacAddress"]
        hc = {**hc, "NetworkMode": mode,
              "LogConfig": {"Type": (hc.get("LogConfig") or {}).get("Type") or self.default_log[0],
                            "Config": (hc.get("LogConfig") or {}).get("Config") or {}}}
        inherited, inherited_binds = self._volumes_from(hc)
        if inherited_binds:
            own = {cmounts.bind_target(b) for b in hc.get("Binds") or []}
            hc["Binds"] = list(hc.get("Binds") or []) + [b for b in inherited_binds if cmounts.bind_target(b) not in own]
        # docker-py's create_container(runtime=) puts Runtime beside Config (dockerd ignores it there)
        runtime = hc.get("Runtime") or body.get("Runtime") or self.default_runtime
        if runtime not in self.runtimes:
            raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
        hc["Runtime"] = runtime  # inspect shows the runtime chosen, as dockerd does
        with self.db.read() as c:
            taken = {r[0] for r in c.execute("SELECT name FROM containers")}
        name = names.check(name) if name else names.random_name(taken)
        ctr = Ctr(cid, name, image_name, image_id, _now(), cfg, hc, _new_state(), runtime)
        if idmap is not None:
            ctr.state["_IDMap"] = [idmap.uid, idmap.gid, idmap.size]
        cdir = os.path.join(self.root, cid)
        with contextlib.ExitStack() as undo:
            os.makedirs(os.path.join(cdir, "upper"), mode=0o755)
            undo.callback(shutil.rmtree, cdir, True)
            os.makedirs(os.path.join(cdir, "work"), mode=0o700)
            if idmap is not None:  # what the container writes is owned by its remapped root
                for sub in ("upper", "work"):
                    os.chown(os.path.join(cdir, sub), idmap.uid, idmap.gid)
            vols = []
            wanted = {**(icfg.get("Volumes") or {}), **(body.get("Volumes") or {})}  # `-v /path`: anonymous
            for vname, dst, ro in cmounts.volume_requests(hc, wanted):
                vol, made = self.volumes.create(vname, driver=hc.get("VolumeDriver") or "local", anonymous=not vname)
                if made:
                    undo.callback(self.volumes.remove, vol.name, True)
                    if idmap is not None:
                        os.chown(vol.mountpoint, idmap.uid, idmap.gid)
                    self.bus.publish(make_event("volume", "create", vol.name, {"driver": "local"}))
                vols.append((vol.name, dst, ro))
            taken = {d for _n, d, _r in vols} | {m["destination"] for m in cmounts.mounts(hc, create=False)}
            vols += [v for v in inherited if v[1] not in taken]
            try:
                with self.db.transaction() as c:
                    c.execute("INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (cid, name, image_name, image_id, ctr.created, json.dumps(cfg), json.dumps(hc),
                               json.dumps(ctr.state), runtime))
                    c.executemany("INSERT INTO container_volumes VALUES (?, ?, ?, ?)",
                                  [(cid, n, d, int(r)) for n, d, r in vols])
                    self.networks.register(c, cid, plan)
            except Exception as exc:
                if "UNIQUE" in str(exc) and "name" in str(exc):
                    other = self._get(name)
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{other.id}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.") from None
                raise
            undo.pop_all()
        self._event("create", ctr)
        return {"Id": cid, "Warnings": []}

    def _check_remapped(self, hc: dict[str, Any], modes: dict[str, hostconfig.Mode], idmap: IDMap) -> None:
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
                other = self._get(target)
            except NotFound as exc:
                raise InvalidParameter(exc.message) from None
            if self._idmap_of(other) != idmap:
                raise InvalidParameter(f"cannot join the namespaces of container {target}: it does not run "
                                       "with this daemon's user namespace (userns-remap)")

    def _volumes_from(self, hc: dict[str, Any]) -> tuple[list[tuple[str, str, bool]], list[str]]:
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
                other = self._get(ref)
            except NotFound as exc:  # a 404 from create makes the docker CLI try to pull the image
                raise InvalidParameter(exc.message) from None
            for name, dst, ro in self._volumes_of(other.id):
                vols.append((name, dst, ro if not mode else mode == "ro"))
            for b in other.host_config.get("Binds") or []:
                parts = b.split(":")
                if parts[0].startswith("/") and len(parts) >= 2:
                    opts = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o not in ("ro", "rw")]
                    ro = mode == "ro" or (not mode and len(parts) == 3 and "ro" in parts[2].split(","))
                    binds.append(":".join(parts[:2] + [",".join(opts + (["ro"] if ro else []))]).rstrip(":"))
        return vols, binds

    # ---- start ---------------------------------------------------------------------------------
    def _ref(self, name: str) -> tuple[str, str]:
        ctr = self._get(name)
        return ctr.id, ctr.name

    def _member(self, ctr: Ctr) -> Member:
        return Member(ctr.id, ctr.name, ctr.config.get("Hostname") or ctr.id[:12], ctr.config.get("Domainname") or "",
                      ctr.host_config, ctr.config.get("ExposedPorts") or {}, ctr.config.get("MacAddress") or "")

    def _write_etc(self, ctr: Ctr, net: Setup) -> dict[str, str]:
        cdir = os.path.join(self.root, ctr.id)
        hostname = ctr.config["Hostname"]
        files = {
            "/etc/hostname": (os.path.join(cdir, "hostname"), hostname + "\n"),
            "/etc/hosts": (os.path.join(cdir, "hosts"), net.hosts),
            "/etc/resolv.conf": (os.path.join(cdir, "resolv.conf"), net.resolv),
        }
        for _, (path, text) in files.items():
            with open(path, "w") as f:
                f.write(text)
        return {dest: path for dest, (path, _) in files.items()}

    def _volumes_of(self, cid: str) -> list[tuple[str, str, bool]]:
        with self.db.read() as c:
            return [(r[0], r[1], bool(r[2])) for r in c.execute(
                "SELECT name, destination, read_only FROM container_volumes WHERE container_id = ? "
                "ORDER BY destination", (cid,))]

    def _volume_mounts(self, ctr: Ctr, rootfs: str) -> list[dict[str, Any]]:
        """Bind mounts of the container's volumes; a new volume first gets the image's content at its
        destination, resolved inside the container's root (a symlink in the image cannot point the
        copy at the host's files)."""
        out = []
        for name, dst, ro in self._volumes_of(ctr.id):
            vol = self.volumes.get(name)
            if vol.needs_copy:
                def skipped(rel: str, vname: str = name) -> None:
                    log.info("volume %s: %s not copied (not a file, link, directory or FIFO)", vname, rel)

                with safepath.Root.at(rootfs) as root:
                    carchive.copy_up(root, dst, vol.mountpoint, skipped)
                self.volumes.copied(name)
            out.append({"destination": dst, "type": "bind", "source": vol.mountpoint,
                        "options": ["rbind", "rprivate"] + (["ro"] if ro else [])})
        return out

    def _idmap_of(self, ctr: Ctr) -> IDMap | None:
        """The id mapping the container was created with (userns-remap), or None."""
        raw = ctr.state.get("_IDMap")
        return IDMap(*raw) if raw else None

    def _mount_rootfs(self, ctr: Ctr, rootfs: str) -> IDMap | None:
        """Mount the container's overlay at ``rootfs``; a remapped container's layers through
        idmapped mounts. Returns the container's id mapping."""
        idmap = self._idmap_of(ctr)
        if idmap is not None and (self.userns is None or self.userns.idmap != idmap):
            raise Conflict(f"container {ctr.id[:12]} was made with userns-remap ids {idmap.uid}:{idmap.gid}; berthd "
                           "now runs with " + (f"{self.userns.idmap.uid}:{self.userns.idmap.gid}" if self.userns
                                               else "no userns-remap") + ": it cannot start")
        cdir = os.path.join(self.root, ctr.id)
        rec = self.images.get(ctr.image_id)
        lowers = [self.images.layers.diff_path(ch) for ch in reversed(rec.layers)]
        mount_overlay(lowers, f"{cdir}/upper", f"{cdir}/work", rootfs, self.userns if idmap is not None else None)
        return idmap

    def _joins(self, modes: dict[str, hostconfig.Mode]) -> dict[str, str]:
        """Namespace files of the containers that ``container:<name>`` modes name (they must run)."""
        joins: dict[str, str] = {}
        for field, ns in (("PidMode", "pid"), ("IpcMode", "ipc")):
            mode = modes[field]
            if mode.kind != "container":
                continue
            other = self._get(mode.target)
            pid = int(other.state.get("Pid") or 0)
            if not other.running or not pid:
                raise Conflict(f"cannot join {ns} namespace of a non running container: {mode.target}")
            if ns == "ipc":
                donor = hostconfig.modes(other.host_config)["IpcMode"].kind
                if donor not in ("shareable", "host"):
                    raise Conflict(f"cannot join IPC of container {other.id[:12]}: non-shareable IPC (hint: use "
                                   "IpcMode:shareable for the donor container)")
                # the donor's /dev/shm is a tmpfs berth mounted on the host for it (never a path through
                # the donor's root, where it could have put a symlink to the host's /)
                joins["shm"] = "/dev/shm" if donor == "host" else self._shm_path(other.id)
            if not _in_cgroup(pid, other.id):  # the pid is the container's still (not one reused)
                raise Conflict(f"cannot join {ns} namespace of a non running container: {mode.target}")
            joins[ns] = f"/proc/{pid}/ns/{ns}"
        return joins

    def _link_env(self, ctr: Ctr) -> list[str]:
        """A legacy link's environment on the default bridge, as dockerd sets it at start (daemon/links):
        ALIAS_NAME, ALIAS_PORT and ALIAS_PORT_<port>_<PROTO>{,_ADDR,_PORT,_PROTO} for each exposed port,
        ALIAS_ENV_<name> for the linked container's environment (not HOME or PATH)."""
        if networks_mode_of(ctr.host_config) not in ("default", "bridge"):
            return []
        env: list[str] = []
        for link in ctr.host_config.get("Links") or []:
            target, _, alias = str(link).partition(":")
            target = target.strip("/")
            alias = alias.rsplit("/", 1)[-1] if alias else target
            try:
                child = self._get(target)
            except NotFound:
                continue
            ip = self.networks.bridge_address(child.id)
            prefix = alias.upper().replace("-", "_")
            exposed = []
            for key in child.config.get("ExposedPorts") or {}:
                number, _, kind = str(key).partition("/")
                if number.isdigit():
                    exposed.append((int(number), kind.lower() or "tcp"))
            exposed.sort(key=lambda p: (p[0], p[1] != "tcp"))
            if exposed:
                env.append(f"{prefix}_PORT={exposed[0][1]}://{ip}:{exposed[0][0]}")
            for port, proto in exposed:
                base = f"{prefix}_PORT_{port}_{proto.upper()}"
                env += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}",
                        f"{base}_PROTO={proto}"]
            env.append(f"{prefix}_NAME=/{ctr.name.strip('/')}/{alias}")
            for e in child.config.get("Env") or []:
                name, eq, val = str(e).partition("=")
                if eq and name not in ("HOME", "PATH"):
                    env.append(f"{prefix}_ENV_{name}={val}")
        return env

    def _start_sync(self, ctr: Ctr) -> None:
        p = self._paths(ctr)
        runtime = self.runtimes[ctr.runtime]
        rootfs = os.path.join(p.bundle, "rootfs")
        hc = ctr.host_config
        modes = hostconfig.modes(hc)
        joins = self._joins(modes)
        with contextlib.ExitStack() as undo:
            os.makedirs(rootfs, mode=0o700, exist_ok=True)
            if is_mounted(rootfs):
                umount(rootfs)
            idmap = self._mount_rootfs(ctr, rootfs)
            undo.callback(umount, rootfs, True)
            net = self.networks.setup(self._member(ctr))
            undo.callback(self.networks.teardown, ctr.id)
            etc = self._write_etc(ctr, net)
            cfg = ctr.config
            cwd = cfg.get("WorkingDir") or "/"
            with safepath.Root.at(rootfs) as root:
                user = spec.resolve_user(root, cfg.get("User") or "", tuple(hc.get("GroupAdd") or ()))
                if cwd != "/":  # made inside the container's root, as dockerd does (owned by its root)
                    try:
                        owner = (idmap.uid, idmap.gid) if idmap is not None else (-1, -1)
                        os.close(root.mkdir_all(cwd, 0o755, *owner))
                    except OSError as exc:
                        raise InvalidParameter(f"cannot create the working directory {cwd!r}: "
                                               f"{exc.strerror}") from None
            args = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
            parent = "/" + (hc.get("CgroupParent") or "berth").strip("/")
            env = {e.split("=", 1)[0]: e for e in [*self._link_env(ctr), *(cfg.get("Env") or [])]}
            config = spec.build(rootfs=rootfs, args=args, env=list(env.values()), cwd=cwd, user=user,
                                hostname=cfg["Hostname"], tty=bool(cfg.get("Tty")),
                                readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
                                network_mode=hc.get("NetworkMode", "none"), cgroups_path=f"{parent}/{ctr.id}",
                                etc_files=etc, cgroup_v2=self.cgroup_v2, netns_path=net.netns)
            hostconfig.apply_namespaces(config, modes, joins, self.cgroup_v2)
            if modes["IpcMode"].kind == "shareable":  # a tmpfs of berth's own, which joiners bind too
                shm = self._mount_shm(ctr, idmap)
                undo.callback(umount, shm, True)
                hostconfig.replace_shm(config["mounts"], {"destination": "/dev/shm", "type": "bind", "source": shm,
                                                          "options": ["rbind", "rprivate"]})
            binds = cmounts.mounts(hc)
            config["mounts"].extend(binds)
            # as dockerd: a shared (slave) bind needs the container's root shared (slave) too, or the
            # runtime's private root cuts the propagation off
            props = {o for m in binds for o in m["options"] if o in cmounts.PROPAGATIONS}
            if props & {"shared", "rshared"}:
                config["linux"]["rootfsPropagation"] = "rshared"
            elif props & {"slave", "rslave"}:
                config["linux"]["rootfsPropagation"] = "rslave"
            config["mounts"].extend(self._volume_mounts(ctr, rootfs))
            config["linux"]["resources"].update(cmounts.resources(hc, memsw=self.memsw))
            csecurity.apply(config, hc, hc.get("NetworkMode", "none"))
            if idmap is not None:
                config["linux"]["namespaces"].append({"type": "user"})
                config["linux"].update(idmap.oci())
            if hc.get("OomScoreAdj"):
                config["process"]["oomScoreAdj"] = int(hc["OomScoreAdj"])
            if hc.get("Annotations"):
                config["annotations"] = {k: v for k, v in hc["Annotations"].items() if not k.startswith("run.oci.")}
            if runtime.name == "crun" and "seccomp" in config["linux"]:
                bpf = seccomp.bpf_base64(json.dumps(config["linux"]["seccomp"], sort_keys=True))
                if bpf is not None:  # compiled once per profile here instead of by crun per container
                    config.setdefault("annotations", {})[seccomp.BPF_ANNOTATION] = bpf
                    del config["linux"]["seccomp"]  # crun ignores it then: 30 KB less JSON to write and parse
            size = hc.get("ConsoleSize") or []
            if cfg.get("Tty") and len(size) == 2 and all(size):
                config["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
            fd = os.open(os.path.join(p.bundle, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(config, f)
            try:
                os.unlink(os.path.join(self.exit_dir, ctr.id))
            except FileNotFoundError:
                pass
            size_max, files = self._log_limits(ctr)
            pid = runtime.create(ctr.id, ctr.name, p, tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                                 log_size_max=size_max * max(files, 1))
            undo.callback(runtime.delete, ctr.id, True)
            self._hand_out_stdin(ctr.id, p)  # before start: no input can be missed
            runtime.start(ctr.id, p)
            undo.pop_all()
        ctr.state.update(Status="running", Running=True, Paused=False, Restarting=False, Pid=pid, ExitCode=0, Error="",
                         StartedAt=_now(), FinishedAt="0001-01-01T00:00:00Z", OOMKilled=False, Dead=False)
        self._save_state(ctr)

    def _hand_out_stdin(self, cid: str, p: Paths) -> None:
        """Connect every attach call that is waiting for this container's stdin (in the start thread)."""
        waiters = self._stdin_waiters.pop(cid, [])
        loop = self._loop
        for fut in waiters:
            sock = connect_attach(p.bundle)
            if loop is not None:
                loop.call_soon_threadsafe(_deliver, fut, sock)

    async def stdin_socket(self, name: str) -> socket.socket:
        """The container's stdin: now if it runs, else once it is started."""
        ctr = self._get(name)
        if not ctr.config.get("OpenStdin"):
            raise InvalidParameter("the container was not created with stdin open (-i)")
        if ctr.running:
            return await asyncio.to_thread(connect_attach, self._paths(ctr).bundle)
        fut: asyncio.Future[socket.socket] = asyncio.get_running_loop().create_future()
        self._stdin_waiters.setdefault(ctr.id, []).append(fut)
        return await fut

    async def start(self, name: str, keep_count: bool = False) -> None:
        """Start the container. Shielded: a client that goes away mid-start does not leave a
        container running that berth's state calls "created"."""
        await asyncio.shield(self._start(name, keep_count))

    async def _start(self, name: str, keep_count: bool) -> None:
        ctr = self._get(name)
        async with self._lock(ctr.id):
            ctr = self._get(ctr.id)
            if ctr.running:
                raise NotModified("container already started")
            ctr.state["_ManuallyStopped"] = False
            if not keep_count:
                ctr.state["_RestartCount"] = 0
            pending = self._pending_restarts.pop(ctr.id, None)
            if pending is not None:
                pending.cancel()
            shipper = None
            try:
                try:
                    shipper = await self._open_shipper(ctr, None)  # before the start: output is not missed
                    await asyncio.to_thread(self._start_sync, ctr)
                except BerthError:
                    raise
                except OSError as exc:  # every failure reaches the client (``run --rm`` waits for it)
                    raise System(f"failed to start container {ctr.id[:12]}: {exc.strerror or exc}: "
                                 f"{exc.filename or ''}".rstrip(": ")) from exc
                except Exception as exc:
                    log.exception("bug: starting container %s", ctr.id[:12])
                    raise System(f"failed to start container {ctr.id[:12]}: internal error "
                                 f"({type(exc).__name__})") from exc
            except BerthError as exc:
                # as dockerd: exit code 127 (command not found) or 126, the error recorded
                code = 127 if "not found" in exc.message else 126 if isinstance(exc, InvalidParameter) else 128
                ctr.state.update(ExitCode=code, Error=exc.message)
                if ctr.state.get("Restarting"):
                    ctr.state.update(Restarting=False, Status="exited")
                self._save_state(ctr)
                failed: BerthError | None = exc
                if shipper is not None:
                    shipper.close()
            else:
                failed = None
        if failed is not None:
            if ctr.host_config.get("AutoRemove"):  # the docker CLI waits for this removal after a failed start
                await self.remove(ctr.id, force=True, volumes=False)
            raise failed
        self._event("start", ctr)
        await self.networks.start_dns(self._member(ctr))
        self._start_health(ctr)
        if shipper is not None:
            self._run_shipper(ctr, shipper)

    async def _open_shipper(self, ctr: Ctr, offset: int | None) -> logship.Shipper | None:
        """For syslog and journald: a shipper connected to its target (System when it cannot be
        reached, as dockerd fails the start), reading the log file from ``offset`` (None: its end);
        None when the driver keeps its log here or a shipper runs already (a restart keeps it)."""
        lc = self._log_config(ctr)
        if not lc.shipped or (ctr.id in self._shippers and not self._shippers[ctr.id].done()):
            return None
        path = self._paths(ctr).log_path
        if offset is None:
            offset = os.path.getsize(path) if os.path.exists(path) else 0
        info = logdrivers.Info(ctr.id, ctr.name, ctr.image_id, ctr.image, MappingProxyType(
            dict(ctr.config.get("Labels") or {})), tuple(ctr.config.get("Env") or ()))
        shipper = logship.Shipper(lc, info, path, offset)
        await asyncio.to_thread(shipper.open)
        return shipper

    def _run_shipper(self, ctr: Ctr, shipper: logship.Shipper) -> None:
        def alive() -> bool:
            return self._exists(ctr.id) and self._get(ctr.id).state.get("Status") in ("running", "paused",
                                                                                      "restarting")

        task = asyncio.get_running_loop().create_task(
            shipper.run(alive, lambda: self._changed.setdefault(ctr.id, asyncio.Event())))
        self._shippers[ctr.id] = task

        def done(t: asyncio.Task[tuple[str, int] | None]) -> None:
            if shipper.mark is not None:
                self._journal_marks[ctr.id] = shipper.mark
            if self._shippers.get(ctr.id) is t:
                del self._shippers[ctr.id]
        task.add_done_callback(done)

    # ---- exits ---------------------------------------------------------------------------------
    def _log_config(self, ctr: Ctr) -> logdrivers.LogConfig:
        return logdrivers.parse(ctr.host_config.get("LogConfig"))

    def _log_limits(self, ctr: Ctr) -> tuple[int, int]:
        """(max size in bytes, max files) for the container's log file; (0, 0) means unlimited."""
        return self._log_config(ctr).file_limits()

    async def _rotate_logs(self) -> None:
        """Once a second: rotate the logs of running containers that passed their max-size, and have
        conmon reopen its log file (its ctl FIFO message 2)."""
        while True:
            await asyncio.sleep(1)
            for ctr in self.all():
                if not ctr.running:
                    continue
                size, files = self._log_limits(ctr)
                path = self._paths(ctr).log_path
                try:
                    if not size or os.path.getsize(path) < size:
                        continue
                    await asyncio.to_thread(clogs.rotate, path, files, self._log_config(ctr).compress)
                    fd = os.open(os.path.join(self._paths(ctr).bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        os.write(fd, b"2\n")
                    finally:
                        os.close(fd)
                except OSError as exc:
                    log.warning("rotating the log of %s: %s", ctr.id[:12], exc)

    def watch_exits(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rotator = self._loop.create_task(self._rotate_logs())
        self._watch = DirWatch(self.exit_dir)
        asyncio.get_running_loop().add_reader(self._watch.fileno(), self._on_exit_files)

    def _on_exit_files(self) -> None:
        assert self._watch is not None
        for cid in self._watch.read():
            code = read_exit_code(self.exit_dir, cid)
            if code is not None:
                asyncio.get_running_loop().create_task(self._exited(cid, code))

    async def _exited(self, cid: str, code: int, lost: bool = False) -> None:
        try:
            ctr = self._get(cid)
        except NotFound:
            return
        async with self._lock(cid):
            ctr = self._get(cid)
            if not ctr.running and not lost:
                return
            p = self._paths(ctr)
            # conmon exits once it has drained the container's output: wait for it, so that the
            # log is complete when anyone learns that the container stopped.
            conmon_pid = _read_int(os.path.join(p.run_dir, "conmon.pid"))
            if conmon_pid:
                await asyncio.to_thread(wait_pid_gone, conmon_pid, 5.0)
            task = self._health_tasks.pop(cid, None)
            if task is not None:
                task.cancel()
            oom = await asyncio.to_thread(self._oom_killed, ctr)  # before the runtime deletes the cgroup
            restart = not ctr.host_config.get("AutoRemove") and self._should_restart(ctr, code)
            ctr.state.update(Status="exited", Running=False, Paused=False, Pid=0, ExitCode=code, OOMKilled=oom,
                             FinishedAt=_now(), Error="berthd lost track of this container" if lost else "")
            if restart:  # restarting from the moment the exit is known, as dockerd (rm without -f refuses)
                ctr.state.update(Status="restarting", Restarting=True)
            self._save_state(ctr)
            self._wake(cid, code, ("next-exit", "not-running"))  # clients learn of the exit now...
            self._changed.setdefault(cid, asyncio.Event()).set()
            if not ctr.host_config.get("AutoRemove"):  # (--rm: remove() releases, after its "removed")
                await asyncio.to_thread(self._release, ctr, p)  # ...and the runtime's leftovers go meanwhile
        self._event("die", ctr, exitCode=str(code))
        if ctr.host_config.get("AutoRemove"):
            self._removed_exits[cid] = (ctr.name, code, time.monotonic())
            while len(self._removed_exits) > _REMOVED_EXITS_KEPT:
                del self._removed_exits[next(iter(self._removed_exits))]
            await self.remove(cid, force=True, volumes=False)
        elif restart and self._exists(cid) and self._get(cid).state.get("Restarting"):
            self._schedule_restart(self._get(cid))

    # ---- healthchecks ---------------------------------------------------------------------------
    def _start_health(self, ctr: Ctr) -> None:
        health = ctr.config.get("Healthcheck") or {}
        test = health.get("Test") or []
        if not test or test[0] == "NONE":
            return
        ctr = self._get(ctr.id)
        ctr.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self._save_state(ctr)
        old = self._health_tasks.pop(ctr.id, None)
        if old is not None:
            old.cancel()
        self._health_tasks[ctr.id] = asyncio.get_running_loop().create_task(self._health_loop(ctr.id))

    async def _health_loop(self, cid: str) -> None:
        ctr = self._get(cid)
        h = ctr.config["Healthcheck"]
        ns = 1e-9
        interval = (h.get("Interval") or 30_000_000_000) * ns
        timeout = (h.get("Timeout") or 30_000_000_000) * ns
        retries = h.get("Retries") or 3
        start_period = (h.get("StartPeriod") or 0) * ns
        test = h["Test"]
        args = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
        started = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            begin = _now()
            code, output = await self._probe(cid, args, timeout)
            try:
                ctr = self._get(cid)
            except NotFound:
                return
            if not ctr.running:
                return
            health = ctr.state.get("Health") or {"Status": "starting", "FailingStreak": 0, "Log": []}
            before = health["Status"]
            health["Log"] = (health.get("Log") or [])[-4:] + [
                {"Start": begin, "End": _now(), "ExitCode": code, "Output": output}]
            if code == 0:
                health.update(Status="healthy", FailingStreak=0)
            elif time.monotonic() - started >= start_period or before != "starting":
                health["FailingStreak"] = int(health.get("FailingStreak", 0)) + 1
                if health["FailingStreak"] >= retries:
                    health["Status"] = "unhealthy"
            ctr.state["Health"] = health
            self._save_state(ctr)
            if health["Status"] != before:
                self._event(f"health_status: {health['Status']}", ctr)

    async def _probe(self, cid: str, args: list[str], timeout: float) -> tuple[int, str]:
        """Run one healthcheck command in the container: (exit code, first 4 KiB of its output)."""
        ctr = self._get(cid)
        p = self._paths(ctr)
        with open(os.path.join(p.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        process.update(args=args, terminal=False)
        path = os.path.join(p.run_dir, f"health-{secrets.token_hex(4)}.json")
        with open(path, "w") as f:
            json.dump(process, f)
        proc = await asyncio.create_subprocess_exec(*self.runtimes[ctr.runtime].exec_argv(ctr.id, path),
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)

        async def collect() -> bytes:
            """The first 4 KiB of the output (as dockerd keeps); the rest is read and dropped, so a
            probe that prints without end costs no memory."""
            assert proc.stdout is not None
            kept = bytearray()
            while chunk := await proc.stdout.read(65536):
                if len(kept) < HEALTH_OUTPUT_MAX:
                    kept += chunk[:HEALTH_OUTPUT_MAX - len(kept)]
            await proc.wait()
            return bytes(kept)

        try:
            out = await asyncio.wait_for(collect(), timeout)
            code = proc.returncode if proc.returncode is not None else -1
            text = out.decode(errors="replace")
        except TimeoutError:
            proc.kill()
            await proc.wait()
            code, text = -1, f"Health check exceeded timeout ({timeout:g}s)"
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return code, text

    def _should_restart(self, ctr: Ctr, code: int) -> bool:
        policy = ctr.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if ctr.state.get("_ManuallyStopped") or name == "no":
            return False
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return code != 0 and (limit == 0 or int(ctr.state.get("_RestartCount", 0)) < limit)
        return True

    def _schedule_restart(self, ctr: Ctr) -> None:
        """Restart after 100 ms, doubling with each restart (up to a minute), as dockerd backs off."""
        count = int(ctr.state.get("_RestartCount", 0))
        delay = min(0.1 * (2 ** count), 60.0)
        ctr.state.update(Status="restarting", Restarting=True, _RestartCount=count + 1)
        self._save_state(ctr)

        def fire() -> None:
            self._pending_restarts.pop(ctr.id, None)
            asyncio.ensure_future(self._restart_now(ctr.id))

        self._pending_restarts[ctr.id] = asyncio.get_running_loop().call_later(delay, fire)

    async def _restart_now(self, cid: str) -> None:
        try:
            ctr = self._get(cid)
            if not ctr.state.get("Restarting"):
                return
            await self.start(cid, keep_count=True)  # "restarting" until it runs again
        except BerthError as exc:
            log.warning("restarting container %s failed: %s", cid[:12], exc.message)

    def _oom_killed(self, ctr: Ctr) -> bool:
        """Whether the kernel's OOM killer struck in the container's memory cgroup."""
        path = (f"/sys/fs/cgroup/berth/{ctr.id}/memory.events" if self.cgroup_v2
                else f"/sys/fs/cgroup/memory/berth/{ctr.id}/memory.oom_control")
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        except (OSError, ValueError):
            pass
        return False

    def _holds_resources(self, ctr: Ctr, p: Paths) -> bool:
        """Whether a runtime container or the rootfs mount is still there (cheap checks, no subprocess)."""
        runtime = self.runtimes.get(ctr.runtime)
        return (runtime is not None and os.path.isdir(os.path.join(runtime.root, ctr.id))) or \
            is_mounted(os.path.join(p.bundle, "rootfs")) or self.networks.holds(ctr.id)

    def _shm_path(self, cid: str) -> str:
        return os.path.join(self.root, cid, "shm")

    def _mount_shm(self, ctr: Ctr, idmap: IDMap | None) -> str:
        """The host-side tmpfs of an ``--ipc shareable`` container (under berth's own directory)."""
        shm = self._shm_path(ctr.id)
        os.makedirs(shm, mode=0o700, exist_ok=True)
        if not is_mounted(shm):
            owner = f",uid={idmap.uid},gid={idmap.gid}" if idmap is not None else ""
            size = int(ctr.host_config.get("ShmSize") or 64 << 20)
            mount_fs("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={size}{owner}")
        return shm

    def _release(self, ctr: Ctr, p: Paths) -> None:
        try:
            self.runtimes[ctr.runtime].delete(ctr.id, True)
        except System as exc:
            log.warning("%s", exc.message)
        umount(os.path.join(p.bundle, "rootfs"), detach=True)
        umount(self._shm_path(ctr.id), detach=True)
        try:
            self.networks.teardown(ctr.id)
        except BerthError as exc:
            log.warning("releasing the network of %s: %s", ctr.id[:12], exc.message)

    def _wake(self, cid: str, code: int, conditions: tuple[str, ...]) -> None:
        keep = []
        for cond, fut in self._waiters.get(cid, []):
            if cond in conditions and not fut.done():
                fut.set_result(code)
            elif not fut.done():
                keep.append((cond, fut))
        self._waiters[cid] = keep

    async def reconcile(self) -> None:
        """After a (re)start of berthd: containers that ended while it was down are marked exited."""
        for ctr in self.all():
            if not ctr.running:
                continue
            code = read_exit_code(self.exit_dir, ctr.id)
            conmon_pid = _read_int(os.path.join(self._paths(ctr).run_dir, "conmon.pid"))
            if code is not None:
                await self._exited(ctr.id, code)
            elif not (conmon_pid and pid_alive(conmon_pid)):
                await self._exited(ctr.id, 255, lost=True)
            else:
                log.info("container %s (%s) is still running under conmon %d", ctr.id[:12], ctr.name, conmon_pid)
        for ctr in self.all():  # a start that berthd did not finish: what the runtime made goes
            p = self._paths(ctr)
            if not ctr.running and await asyncio.to_thread(self._holds_resources, ctr, p):
                log.warning("container %s (%s): removing what an interrupted start left (runtime state, mount, "
                            "network)", ctr.id[:12], ctr.name)
                await asyncio.to_thread(self._release, ctr, p)
        await asyncio.to_thread(self.networks.reconcile, lambda cid: self._exists(cid) and self._get(cid).running,
                                [self._member(c) for c in self.all() if c.running])
        for ctr in self.all():
            if ctr.running:
                self._start_health(ctr)
                await self.networks.start_dns(self._member(ctr))
                try:
                    shipper = await self._open_shipper(ctr, None)
                except BerthError as exc:
                    log.error("container %s: its log goes nowhere: %s", ctr.id[:12], exc.message)
                else:
                    if shipper is not None:
                        self._run_shipper(ctr, shipper)
        for ctr in self.all():
            policy = (ctr.host_config.get("RestartPolicy") or {}).get("Name") or "no"
            if not ctr.running and (policy == "always" or policy == "unless-stopped"
                                    and not ctr.state.get("_ManuallyStopped")):
                log.info("restarting container %s (%s): restart policy %s", ctr.id[:12], ctr.name, policy)
                try:
                    await self.start(ctr.id, keep_count=True)
                except BerthError as exc:
                    log.warning("restarting container %s failed: %s", ctr.id[:12], exc.message)

    # ---- wait, stop, kill, remove ----------------------------------------------------------------
    def register_wait(self, name: str, condition: str) -> tuple[Ctr, asyncio.Future[int]]:
        """Register a waiter now (before the container may exit); await the future for the exit code."""
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        ctr = self._get(name)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        cond = condition or "not-running"
        if cond == "not-running" and not ctr.running:
            fut.set_result(int(ctr.state.get("ExitCode", 0)))
        else:
            self._waiters.setdefault(ctr.id, []).append((cond, fut))
        return ctr, fut

    async def kill(self, name: str, sig: str) -> None:
        ctr = self._get(name)
        if not ctr.running:
            raise Conflict(f"Cannot kill container: {name}: Container {ctr.id} is not running")
        signum = parse_signal(sig or "KILL")
        self._mark_manual_stop(ctr)
        # A SIGKILL is answered once the exit is recorded, as dockerd does: a client that inspects
        # right after the answer sees the container stopped (bounded: a process stuck in D state).
        _, exited = self.register_wait(ctr.id, "next-exit") if signum == signal.SIGKILL else (ctr, None)
        try:
            await asyncio.to_thread(self.runtimes[ctr.runtime].kill, ctr.id, signum)
            self._event("kill", ctr, signal=str(signum))
            if exited is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), _KILL_WAIT)
        finally:
            if exited is not None and not exited.done():
                exited.cancel()

    def _mark_manual_stop(self, ctr: Ctr) -> None:
        ctr.state["_ManuallyStopped"] = True
        pending = self._pending_restarts.pop(ctr.id, None)
        if pending is not None:
            pending.cancel()
            ctr.state.update(Restarting=False, Status="exited")
        self._save_state(ctr)

    async def stop(self, name: str, timeout: int | None, sig: str = "") -> None:
        ctr = self._get(name)
        if ctr.state.get("Restarting"):
            self._mark_manual_stop(ctr)
            return
        if not ctr.running:
            raise NotModified("container already stopped")
        self._mark_manual_stop(ctr)
        if timeout is None:
            timeout = int(ctr.config.get("StopTimeout", 10))
        _, fut = self.register_wait(ctr.id, "next-exit")
        signum = parse_signal(sig or ctr.config.get("StopSignal") or "SIGTERM")
        runtime = self.runtimes[ctr.runtime]
        with contextlib.suppress(Conflict):
            await asyncio.to_thread(runtime.kill, ctr.id, signum)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout if timeout >= 0 else None)
        except TimeoutError:
            with contextlib.suppress(Conflict):
                await asyncio.to_thread(runtime.kill, ctr.id, 9)
            await asyncio.wait_for(fut, 30)
        self._event("stop", ctr)

    async def remove(self, name: str, force: bool, volumes: bool) -> None:
        ctr = self._get(name)
        if ctr.state.get("Restarting") and not force:
            raise Conflict(f"You cannot remove a restarting container {ctr.id}. Stop the container before "
                           "attempting removal or force remove")
        pending = self._pending_restarts.pop(ctr.id, None)
        if pending is not None:
            pending.cancel()
        if ctr.running:
            if not force:
                raise Conflict(f"You cannot remove a running container {ctr.id}. Stop the container before "
                               "attempting removal or force remove")
            _, fut = self.register_wait(ctr.id, "next-exit")
            with contextlib.suppress(Conflict):
                await asyncio.to_thread(self.runtimes[ctr.runtime].kill, ctr.id, 9)
            await asyncio.wait_for(fut, 30)
            if ctr.host_config.get("AutoRemove"):
                return  # the exit removed it
        async with self._lock(ctr.id):
            try:
                ctr = self._get(ctr.id)
            except NotFound:
                return
            vols = self._volumes_of(ctr.id)
            with self.db.transaction() as c:
                c.execute("DELETE FROM containers WHERE id = ?", (ctr.id,))
                self.networks.forget(c, ctr.id)
            for vname, _, _ in vols:
                with contextlib.suppress(NotFound, Conflict):
                    if volumes or (ctr.host_config.get("AutoRemove") and self.volumes.get(vname).anonymous):
                        if self.volumes.get(vname).anonymous:
                            self.volumes.remove(vname)
                            self.bus.publish(make_event("volume", "destroy", vname, {"driver": "local"}))
            p = self._paths(ctr)
            holds = self._holds_resources(ctr, p)  # released at exit already, except for --rm containers
        self._event("destroy", ctr)
        self._wake(ctr.id, int(ctr.state.get("ExitCode", 0)), ("removed", "next-exit", "not-running"))
        self._locks.pop(ctr.id, None)
        self._changed.pop(ctr.id, asyncio.Event()).set()
        self._journal_marks.pop(ctr.id, None)
        # The row is gone: the runtime's state, the mount and the files can go after the answer (for
        # `docker run --rm` this keeps `crun delete` off the path the CLI waits on). A crash before they
        # are gone leaves them without a row, which sweep() removes at start.
        if holds:
            await asyncio.to_thread(self._release, ctr, p)
        await asyncio.to_thread(self._remove_files, ctr.id, p)

    def _remove_files(self, cid: str, p: Paths) -> None:
        shutil.rmtree(p.bundle, ignore_errors=True)
        shutil.rmtree(os.path.join(self.root, cid), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.exit_dir, cid))

    def sweep(self) -> list[str]:
        """Remove what an interrupted create or remove left: directories and exit files without a row."""
        with self.db.read() as c:
            known = {r[0] for r in c.execute("SELECT id FROM containers")}
        removed = []
        for runtime in self.runtimes.values():  # runtime state of containers whose row is gone
            if not os.path.isdir(runtime.root):
                continue
            for name in os.listdir(runtime.root):
                if len(name) == 64 and name not in known:
                    with contextlib.suppress(BerthError):
                        runtime.delete(name, True)
                    removed.append(f"{runtime.name} state of {name[:12]}")
        for base in (self.root, self.run_root):
            for name in os.listdir(base):
                if name in known:
                    continue
                for mounted in ("rootfs", "shm"):
                    umount(os.path.join(base, name, mounted), detach=True)
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
                removed.append(f"containers/{name}")
        for name in os.listdir(self.exit_dir):
            if name not in known:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.exit_dir, name))
        return removed

    # ---- logs ------------------------------------------------------------------------------------
    async def follow_logs(self, name: str, stdout: bool, stderr: bool, since: float, until: float | None,
                          tail: int | None, follow: bool, from_start: bool = True) -> AsyncIterator[clogs.Line]:
        """Yield log Lines; with ``follow``, until the container stops and its log is drained."""
        ctr = self._get(name)
        reader = clogs.LogReader(self._paths(ctr).log_path)
        if not from_start:
            with contextlib.suppress(FileNotFoundError):
                reader.offset = os.path.getsize(reader.path)
        try:
            older: list[clogs.Line] = []
            if from_start:
                for path in clogs.rotated_files(reader.path):
                    older += clogs.read_rotated(path)
            for line in clogs.select(older + reader.read_new(), stdout, stderr, since, until, tail):
                yield line
            if not follow:
                return
            while True:
                state = self._get(ctr.id).state if self._exists(ctr.id) else None
                lines = reader.read_new()
                for line in clogs.select(lines, stdout, stderr, since, until, None):
                    yield line
                if until is not None and time.time() > until:
                    return
                # Done once the container has run and stopped (or is gone) and the log is drained;
                # a container not started yet (attach before start) is waited for.
                if not lines and (state is None or state.get("Status") not in ("created", "running", "paused")):
                    lines = reader.read_new()
                    for line in clogs.select(lines, stdout, stderr, since, until, None):
                        yield line
                    return
                changed = self._changed.setdefault(ctr.id, asyncio.Event())
                changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), 0.02)  # new output is polled; an exit wakes us
        finally:
            reader.close()

    def labels_of(self, name: str) -> tuple[str, dict[str, str]] | None:
        """(ID, labels) of the container ``name`` names, None when there is none (for authorization)."""
        try:
            ctr = self._get(name)
        except NotFound:
            return None
        return ctr.id, dict(ctr.config.get("Labels") or {})

    def create_body_of(self, name: str) -> dict[str, Any] | None:
        """The container's configuration as a create body (Config with HostConfig), None when there is
        no such container: what a start asks for, decided again at the start (for authorization)."""
        try:
            ctr = self._get(name)
        except NotFound:
            return None
        return {**ctr.config, "Image": ctr.image, "HostConfig": dict(ctr.host_config)}

    def host_binds(self, name: str) -> list[str]:
        """The host paths the container ``name`` binds (what --volumes-from it would share)."""
        ctr = self._get(name)
        hc = {k: v for k, v in ctr.host_config.items() if k in ("Binds", "Mounts")}
        return [m["source"] for m in cmounts.mounts(hc, create=False) if m["type"] == "bind"]

    def _exists(self, cid: str) -> bool:
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM containers WHERE id = ?", (cid,)).fetchone() is not None

    # ---- views -----------------------------------------------------------------------------------
    def _status_text(self, ctr: Ctr) -> str:
        st = ctr.state
        if st.get("Restarting"):
            return f"Restarting ({st.get('ExitCode', 0)}) {_since(_unix(st['FinishedAt']))} ago"
        if st.get("Running"):
            health = (st.get("Health") or {}).get("Status")
            suffix = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
            return "Up " + _since(_unix(st["StartedAt"])) + suffix.get(health or "", "")
        if st.get("Status") == "exited":
            return f"Exited ({st.get('ExitCode', 0)}) {_since(_unix(st['FinishedAt']))} ago"
        return "Created"

    def summary(self, ctr: Ctr) -> dict[str, Any]:
        cmd = (ctr.config.get("Entrypoint") or []) + (ctr.config.get("Cmd") or [])
        ports, networks = self.networks.summary(ctr.id, ctr.host_config, ctr.running)
        return {"Id": ctr.id, "Names": ["/" + ctr.name], "Image": ctr.image, "ImageID": ctr.image_id,
                "Command": " ".join(cmd), "Created": int(_unix(ctr.created)), "Ports": ports,
                "Labels": ctr.config.get("Labels") or {}, "State": ctr.state.get("Status", "created"),
                "Status": self._status_text(ctr), "HostConfig": {"NetworkMode": ctr.host_config.get("NetworkMode")},
                "NetworkSettings": {"Networks": networks}, "Mounts": []}

    def inspect(self, name: str) -> dict[str, Any]:
        ctr = self._get(name)
        p = self._paths(ctr)
        cmd = (ctr.config.get("Entrypoint") or []) + (ctr.config.get("Cmd") or [])
        return {
            "Id": ctr.id, "Created": ctr.created, "Path": cmd[0] if cmd else "", "Args": cmd[1:],
            "State": {k: v for k, v in ctr.state.items() if not k.startswith("_")}, "Image": ctr.image_id, "ResolvConfPath": os.path.join(self.root, ctr.id, "resolv.conf"),
            "HostnamePath": os.path.join(self.root, ctr.id, "hostname"),
            "HostsPath": os.path.join(self.root, ctr.id, "hosts"), "LogPath": p.log_path, "Name": "/" + ctr.name,
            "RestartCount": int(ctr.state.get("_RestartCount", 0)), "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
            "AppArmorProfile": "", "ExecIDs": None, "HostConfig": {**ctr.host_config, "Runtime": ctr.runtime},
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(self.images.layers.diff_path(ch) for ch in reversed(self.images.get(ctr.image_id).layers)),
                "UpperDir": os.path.join(self.root, ctr.id, "upper"), "WorkDir": os.path.join(self.root, ctr.id, "work"),
                "MergedDir": os.path.join(p.bundle, "rootfs")}},
            "Mounts": [*_bind_views(ctr.host_config),
                       *({"Type": "volume", "Name": n, "Source": self.volumes.get(n).mountpoint, "Destination": d,
                          "Driver": "local", "Mode": "z", "RW": not ro, "Propagation": ""}
                         for n, d, ro in self._volumes_of(ctr.id))], "Config": ctr.config,
            "NetworkSettings": self.networks.settings(ctr.id, ctr.host_config, ctr.config.get("ExposedPorts"),
                                                      ctr.running),
        }




def _bind_views(hc: dict[str, Any]) -> list[dict[str, Any]]:
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


def _since(t: float) -> str:
    """docker's units.HumanDuration."""
    s = max(0, int(time.time() - t))
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    if s < 3600:
        return f"{s // 60} minutes" if s >= 120 else "About a minute"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    return f"{h} hours" if h < 48 else f"{h // 24} days"


def _deliver(fut: asyncio.Future[socket.socket], sock: socket.socket) -> None:
    if fut.done():
        sock.close()  # the attach call went away meanwhile
    else:
        fut.set_result(sock)


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


class ContainerAPI(ContainerService):
    """ContainerService in the api's ContainerBackend shape."""

    def container_create(self, body: dict[str, Any], name: str, api_version: str) -> dict[str, Any]:
        return self.create(body, name, api_version)

    async def container_start(self, name: str) -> None:
        await self.start(name)

    def container_remove_link(self, parent: str, alias: str) -> None:
        """``docker rm --link PARENT/ALIAS``: the legacy link goes, both containers stay."""
        ctr = self._get(parent)
        links = list(ctr.host_config.get("Links") or [])
        keep = [lk for lk in links if (str(lk).partition(":")[2].rsplit("/", 1)[-1]
                                       or str(lk).partition(":")[0].strip("/")) != alias]
        if keep == links:
            raise NotFound(f"No such container: {parent}/{alias}")
        hc = {**ctr.host_config, "Links": keep or None}
        with self.db.transaction() as c:
            c.execute("UPDATE containers SET host_config = ? WHERE id = ?", (json.dumps(hc), ctr.id))

    async def container_wait(self, name: str, condition: str) -> asyncio.Future[int]:
        try:
            return self.register_wait(name, condition)[1]
        except NotFound:
            # A --rm container that has just removed itself: its exit code still answers a wait for a
            # few seconds (docker-py waits only after its log stream ended; dockerd's slower removal
            # leaves that wait time to arrive).
            now = time.monotonic()
            for cid, (cname, code, when) in self._removed_exits.items():
                if now - when < _REMOVED_EXITS_FOR and condition in ("", "not-running", "removed") and (
                        name in (cid, cname, "/" + cname) or len(name) >= 12 and cid.startswith(name)):
                    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    fut.set_result(code)
                    return fut
            raise

    async def container_stop(self, name: str, timeout: int | None, signal: str) -> None:
        await self.stop(name, timeout, signal)

    async def container_kill(self, name: str, signal: str) -> None:
        await self.kill(name, signal)

    async def container_restart(self, name: str, timeout: int | None, signal: str) -> None:
        with contextlib.suppress(NotModified):
            await self.stop(name, timeout, signal)
        await self.start(name)
        self._event("restart", self._get(name))

    async def container_remove(self, name: str, force: bool, volumes: bool) -> None:
        await self.remove(name, force, volumes)

    def container_list(self, all_: bool, limit: int | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        ctrs = self.all()
        if not all_ and not filters.get("status") and (limit is None or limit <= 0):
            ctrs = [c for c in ctrs if c.running]
        if "status" in filters:
            ctrs = [c for c in ctrs if c.state.get("Status") in filters["status"]]
        if "name" in filters:
            import re

            ctrs = [c for c in ctrs if any(re.search(p, c.name) for p in filters["name"])]
        if "id" in filters:
            ctrs = [c for c in ctrs if any(c.id.startswith(p) for p in filters["id"])]
        if "label" in filters:
            def has(c: Ctr, want: str) -> bool:
                k, eq, v = want.partition("=")
                labels = c.config.get("Labels") or {}
                return k in labels and (not eq or labels[k] == v)
            ctrs = [c for c in ctrs if all(has(c, w) for w in filters["label"])]
        if "exited" in filters:
            ctrs = [c for c in ctrs if c.state.get("Status") == "exited"
                    and str(c.state.get("ExitCode")) in filters["exited"]]
        if "ancestor" in filters:
            wanted = set()
            for a in filters["ancestor"]:
                with contextlib.suppress(NotFound, InvalidParameter):
                    wanted.add(self.images.resolve(a))
            ctrs = [c for c in ctrs if c.image_id in wanted]
        if "network" in filters:
            ctrs = [c for c in ctrs if any(
                n in filters["network"] or any(f and self.networks.get(n).id.startswith(f) for f in filters["network"])
                for n in self.networks.network_names(c.id) + [c.host_config.get("NetworkMode") or ""] if n)]
        if "volume" in filters:
            ctrs = [c for c in ctrs if any(n in filters["volume"] or d in filters["volume"]
                                           for n, d, _ in self._volumes_of(c.id))
                    or any((m.get("Source") in filters["volume"] or m.get("Target") in filters["volume"])
                           for m in c.host_config.get("Mounts") or [])
                    or any(b.split(":")[0] in filters["volume"] or (b.split(":") + [""])[1] in filters["volume"]
                           for b in c.host_config.get("Binds") or [])]
        for key in ("before", "since"):
            for value in filters.get(key, []):
                pivot = self._get(value)
                ctrs = [c for c in ctrs if (c.created < pivot.created if key == "before" else c.created > pivot.created)]
        if limit is not None and limit > 0:
            ctrs = ctrs[:limit]
        return [self.summary(c) for c in ctrs]

    def container_inspect(self, name: str) -> dict[str, Any]:
        return self.inspect(name)

    async def container_pause(self, name: str) -> None:
        ctr = self._get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        if ctr.state.get("Paused"):
            raise Conflict(f"Container {ctr.id} is already paused")
        await asyncio.to_thread(self.runtimes[ctr.runtime].pause, ctr.id)
        ctr.state.update(Paused=True, Status="paused")
        self._save_state(ctr)
        self._event("pause", ctr)

    async def container_unpause(self, name: str) -> None:
        ctr = self._get(name)
        if not ctr.state.get("Paused"):
            raise Conflict(f"Container {ctr.id} is not paused")
        await asyncio.to_thread(self.runtimes[ctr.runtime].resume, ctr.id)
        ctr.state.update(Paused=False, Status="running")
        self._save_state(ctr)
        self._event("unpause", ctr)

    def container_rename(self, name: str, new_name: str) -> None:
        ctr = self._get(name)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        new = names.check(new_name)
        try:
            with self.db.transaction() as c:
                c.execute("UPDATE containers SET name = ? WHERE id = ?", (new, ctr.id))
        except Exception as exc:
            if "UNIQUE" in str(exc):
                other = self._get(new)
                raise Conflict(f'Conflict. The container name "/{new}" is already in use by container "{other.id}". '
                               "You have to remove (or rename) that container to be able to reuse that name.") from None
            raise
        self._event("rename", self._get(ctr.id), oldName="/" + ctr.name)

    def container_top(self, name: str, ps_args: str) -> dict[str, Any]:
        """`ps` on the host, keeping the container's processes (those in its cgroup), as dockerd does."""

        ctr = self._get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        pids: set[str] = set()
        for path in (f"/sys/fs/cgroup/pids/berth/{ctr.id}/cgroup.procs", f"/sys/fs/cgroup/berth/{ctr.id}/cgroup.procs",
                     f"/sys/fs/cgroup/memory/berth/{ctr.id}/cgroup.procs"):
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

    async def _settled(self, name: str) -> Ctr:
        """The container, once an exit in progress has released its resources (``_exited`` holds the
        lock while it unmounts the rootfs): a stopped container's files are then read from a mount of
        berth's own, which nothing else unmounts."""
        ctr = self._get(name)
        if not ctr.running:
            async with self._lock(ctr.id):
                pass
            ctr = self._get(ctr.id)
        return ctr

    def _mount_table(self, ctr: Ctr) -> list[tuple[str, str, bool]]:
        """(destination, host source, read-only) of the container's volumes and binds."""
        out = [(dst, self.volumes.get(name).mountpoint, ro) for name, dst, ro in self._volumes_of(ctr.id)]
        out += [(m["destination"], m["source"], "ro" in m["options"])
                for m in cmounts.mounts({k: v for k, v in ctr.host_config.items() if k in ("Binds", "Mounts")},
                                        create=False)
                if m["type"] == "bind"]
        return out

    def _writable(self, ctr: Ctr) -> Any:
        """A check for ``archive.extract``: may the logical path (resolved inside the container) be
        written? A read-only volume or bind, or a read-only rootfs outside any mount, may not."""
        table = sorted(self._mount_table(ctr), key=lambda m: -len(m[0]))
        readonly_rootfs = bool(ctr.host_config.get("ReadonlyRootfs"))

        def check(logical: str) -> None:
            for dst, _src, ro in table:
                if safepath.is_within(logical, dst):
                    if ro:
                        raise Conflict("mounted volume is marked read-only")
                    return
            if readonly_rootfs:
                raise Conflict("container rootfs is marked read-only")

        return check

    @contextlib.contextmanager
    def _root_for(self, ctr: Ctr, with_mounts: bool = True) -> Iterator[safepath.Root]:
        """The container's filesystem as the container sees it, as a ``safepath.Root``. Running: its
        own root (``/proc/PID/root``), where lookups cross its real mounts. Stopped: the rootfs (mounted
        for the occasion, shared by concurrent readers, gone with the last one), with its volumes and
        binds crossed into at their destinations."""
        pid = int(ctr.state.get("Pid") or 0)
        if ctr.running and pid and with_mounts:
            try:
                root = safepath.Root.of_process(pid, ctr.id, label=ctr.id)
            except OSError:  # it exited meanwhile (and that pid may be another process's now)
                raise Conflict(f"Container {ctr.id} is not running") from None
            try:
                yield root
            finally:
                root.close()
            return
        rootfs = os.path.join(self._paths(ctr).bundle, "rootfs")
        with self._rootfs_lock:
            users = self._rootfs_users.get(ctr.id, 0)
            if users == 0:
                os.makedirs(rootfs, mode=0o700, exist_ok=True)
                if not is_mounted(rootfs):
                    self._mount_rootfs(ctr, rootfs)
            self._rootfs_users[ctr.id] = users + 1
        try:
            table = self._mount_table(ctr) if with_mounts else []
            with safepath.Root.at(rootfs, {dst: src for dst, src, _ in table}, ctr.id) as root:
                yield root
        finally:
            with self._rootfs_lock:
                left = self._rootfs_users.pop(ctr.id) - 1
                if left:
                    self._rootfs_users[ctr.id] = left
                elif not self._get_running(ctr.id):
                    umount(rootfs, detach=True)

    def _get_running(self, cid: str) -> bool:
        try:
            return self._get(cid).running
        except NotFound:
            return False

    async def archive_stat(self, name: str, path: str) -> str:
        ctr = await self._settled(name)

        def work() -> str:
            with self._root_for(ctr) as root:
                return carchive.stat_header(root, path, name)

        return await asyncio.to_thread(work)

    async def archive_get(self, name: str, path: str) -> tuple[str, AsyncIterator[bytes]]:
        ctr = await self._settled(name)
        stack = contextlib.ExitStack()
        root = await asyncio.to_thread(stack.enter_context, self._root_for(ctr))
        try:
            header = await asyncio.to_thread(carchive.stat_header, root, path, name)
        except BaseException:
            stack.close()
            raise
        arcname = os.path.basename(path.rstrip("/")) or "."

        async def chunks() -> AsyncIterator[bytes]:
            with stack:
                async for chunk in iterate_in_thread(lambda: carchive.tar_stream(root, path, arcname, name,
                                                                                 idmap=self._idmap_of(ctr))):
                    yield chunk

        return header, chunks()

    async def archive_put(self, name: str, path: str, body: AsyncIterator[bytes], no_overwrite: bool,
                          copy_uid_gid: bool = False) -> None:
        ctr = await self._settled(name)
        writable = self._writable(ctr)

        def work(pipe: BodyPipe) -> None:
            with self._root_for(ctr) as root:
                owner = None
                if copy_uid_gid:  # as dockerd: the container's user owns what is copied in
                    u = spec.resolve_user(root, ctr.config.get("User") or "")
                    owner = (u.uid, u.gid)
                carchive.extract(decompressed(pipe), root, path, name, no_overwrite,  # type: ignore[arg-type]
                                 owner=owner, writable=writable, idmap=self._idmap_of(ctr))

        pipe = BodyPipe()
        task = asyncio.create_task(run_in_own_thread(work, pipe))
        try:
            await pipe.feed(body)
            await task
        except BaseException:
            pipe.abort()
            await asyncio.gather(task, return_exceptions=True)
            raise

    async def container_export(self, name: str) -> AsyncIterator[bytes]:
        """The container's filesystem as a tar (volumes not included), as docker export."""
        ctr = await self._settled(name)
        rootfs = os.path.join(self._paths(ctr).bundle, "rootfs")
        stack = contextlib.ExitStack()
        if ctr.running and is_mounted(rootfs):
            root = await asyncio.to_thread(safepath.Root.at, rootfs)  # its overlay, without its mounts
            stack.callback(root.close)
        else:
            root = await asyncio.to_thread(stack.enter_context, self._root_for(ctr, with_mounts=False))
        with stack:
            async for chunk in iterate_in_thread(lambda: carchive.tree_stream(root.fd, idmap=self._idmap_of(ctr))):
                yield chunk
        self._event("export", ctr)

    def container_changes(self, name: str) -> list[dict[str, Any]]:
        """Kind 0: modified, 1: added, 2: deleted — from the container's upper layer, walked by
        descriptor; a path is looked up in the image's layers without following any symlink."""
        ctr = self._get(name)
        upper = os.path.join(self.root, ctr.id, "upper")
        lowers = [self.images.layers.diff_path(ch) for ch in reversed(self.images.get(ctr.image_id).layers)]
        hidden = self._runtime_paths(ctr)  # mount points the runtime made: not changes (as dockerd)
        holders: set[str] = set()  # directories above a hidden path
        dirs: set[str] = set()
        out = []
        lower_fds = [os.open(low, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for low in lowers]
        ufd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for rel_path, _parent, _name, st in safepath.walk(ufd):
                rel = "/" + rel_path
                if rel in hidden or any(rel.startswith(h + "/") for h in hidden if h in ("/dev", "/proc", "/sys")):
                    holders.update(rel[:i] for i in range(1, len(rel)) if rel[i] == "/")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    dirs.add(rel)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    kind = 2
                elif any(safepath.exists_beneath(low, rel_path) for low in lower_fds):
                    kind = 0
                else:
                    kind = 1
                out.append({"Path": rel, "Kind": kind})
        finally:
            for fd in (ufd, *lower_fds):
                os.close(fd)
        # a directory copied up only to hold the runtime's mount points (/etc for /etc/hosts) is no change
        shown = {str(c["Path"]) for c in out}
        out = [c for c in out if not (c["Kind"] == 0 and c["Path"] in holders and c["Path"] in dirs and not any(
            p.startswith(c["Path"] + "/") for p in shown))]
        return sorted(out, key=lambda c: c["Path"])

    def _runtime_paths(self, ctr: Ctr) -> set[str]:
        """Mount points the runtime made in the container's upper layer: not the container's changes."""
        hidden = {"/dev", "/proc", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/sbin/docker-init"}
        hidden.update(d for _, d, _ in self._volumes_of(ctr.id))
        hidden.update(m["destination"] for m in cmounts.mounts({k: v for k, v in ctr.host_config.items()
                                                                 if k in ("Mounts", "Tmpfs")}, create=False))
        return hidden

    async def container_commit(self, name: str, repo: str, tag: str, comment: str, author: str, pause: bool,
                               changes: list[str], config: dict[str, Any] | None) -> dict[str, Any]:
        """``docker commit``: the container's upper layer as a new layer on its image's, the config
        its own (merged with ``config`` and the Dockerfile ``changes``); paused meanwhile if asked."""
        ctr = self._get(name)
        tags = [f"{repo}:{tag or 'latest'}"] if repo else []
        for t in tags:
            image_reference.parse(t)  # a bad name fails before any work
        cfg = {k: v for k, v in ctr.config.items()}
        for key, value in (config or {}).items():
            if value not in (None, "", [], {}):
                cfg[key] = value
        importer.apply_changes(cfg, changes)
        paused = False
        if pause and ctr.running and not ctr.state.get("Paused"):
            try:
                await asyncio.to_thread(self.runtimes[ctr.runtime].pause, ctr.id)
                paused = True
            except BerthError:
                if self._get(ctr.id).running:
                    raise  # else it exited meanwhile: nothing to pause
        try:
            image_id = await asyncio.to_thread(self._commit_sync, ctr, tags, comment, author, cfg)
        finally:
            if paused:
                with contextlib.suppress(BerthError):
                    await asyncio.to_thread(self.runtimes[ctr.runtime].resume, ctr.id)
        self._event("commit", ctr, comment=comment, imageID=image_id, imageRef=tags[0] if tags else "")
        return {"Id": image_id}

    def _commit_sync(self, ctr: Ctr, tags: list[str], comment: str, author: str, cfg: dict[str, Any]) -> str:
        import tempfile

        hidden = self._runtime_paths(ctr)

        def is_hidden(path: str) -> bool:
            return path in hidden or any(path.startswith(h + "/") for h in hidden if h in ("/dev", "/proc", "/sys"))

        idmap = IDMap(*ctr.state["_IDMap"]) if ctr.state.get("_IDMap") else None
        ufd = os.open(os.path.join(self.root, ctr.id, "upper"), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with tempfile.TemporaryFile(dir=self.root) as tmp:
                for chunk in carchive.layer_stream(ufd, is_hidden, idmap, lambda p: log.warning(
                        "commit of %s: device node %s left out", ctr.id[:12], p)):
                    tmp.write(chunk)
                tmp.seek(0)
                ex = self.images.layers.extract(tmp)
        finally:
            os.close(ufd)
        try:
            parent = self.images.get(ctr.image_id)
            base = json.loads(self.images.config_bytes(ctr.image_id))
            now = _now()
            cmd = [*(ctr.config.get("Entrypoint") or []), *(ctr.config.get("Cmd") or [])]
            history = [*(base.get("history") or []), {"created": now, "created_by": " ".join(cmd),
                                                      **({"author": author} if author else {}),
                                                      **({"comment": comment} if comment else {})}]
            new = {**{k: v for k, v in base.items() if k not in ("history", "rootfs", "config", "container_config")},
                   "architecture": base.get("architecture") or "amd64", "os": base.get("os") or "linux",
                   "author": author, "comment": comment, "created": now, "container": ctr.id,
                   "container_config": ctr.config, "config": cfg, "docker_version": "berth",
                   "history": history,
                   "rootfs": {"type": "layers", "diff_ids": [*base["rootfs"]["diff_ids"], ex.diff_id]}}
            data = json.dumps(new, separators=(",", ":")).encode()
            layers = [NewLayer(d, None) for d in base["rootfs"]["diff_ids"]] + [NewLayer(ex.diff_id, ex)]
            image_id, _ = self.images.add(data, layers, tags, parent=parent.id)
        except BaseException:
            self.images.layers.discard(ex.staging)
            raise
        return image_id

    async def container_update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ctr = self._get(name)
        allowed = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus",
                   "PidsLimit", "RestartPolicy")
        changes = {k: v for k, v in body.items() if k in allowed and v not in (None, 0, "") or k == "RestartPolicy"
                   and v}
        unknown = [k for k, v in body.items() if k not in allowed and v not in (None, 0, "", [], {})]
        if unknown:
            raise NotSupported(f"updating {', '.join(sorted(unknown))} is not supported by berth yet")
        hc = {**ctr.host_config, **changes}
        self._check_host_config(hc)
        res = cmounts.resources(hc, memsw=self.memsw)
        if ctr.running and res:
            path = os.path.join(self._paths(ctr).run_dir, "update.json")
            with open(path, "w") as f:
                json.dump(res, f)
            await asyncio.to_thread(self.runtimes[ctr.runtime].update, ctr.id, path)
        with self.db.transaction() as c:
            c.execute("UPDATE containers SET host_config = ? WHERE id = ?", (json.dumps(hc), ctr.id))
        self._event("update", ctr)
        return {"Warnings": []}

    def _stats_pid(self, ctr: Ctr) -> int:
        """The container's process whose network namespace the stats read (none for --net=host)."""
        if (ctr.host_config.get("NetworkMode") or "") == "host":
            return 0
        return int(ctr.state.get("Pid") or 0)

    async def container_stats(self, name: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        """One sample (with the previous one a second earlier, unless ``one_shot``), or one a second."""
        ctr = self._get(name)
        if not ctr.running:
            yield cstats.empty(ctr.id, ctr.name)
            return
        pre = cstats.sample(ctr.id, ctr.name, self.cgroup_v2, self._stats_pid(ctr))
        if not stream and not one_shot:
            await asyncio.sleep(1)  # as dockerd: precpu_stats from a second before, for CPU percentages
        elif one_shot:
            cur = pre
            cur["precpu_stats"], cur["preread"] = {"cpu_usage": {"total_usage": 0}}, "0001-01-01T00:00:00Z"
            yield cur
            return
        while True:
            cur = cstats.sample(ctr.id, ctr.name, self.cgroup_v2, self._stats_pid(ctr))
            cur["precpu_stats"], cur["preread"] = pre["cpu_stats"], pre["read"]
            yield cur
            if not stream or not self._exists(ctr.id) or not self._get(ctr.id).running:
                return
            pre = cur
            await asyncio.sleep(1)

    def counts(self) -> dict[str, int]:
        states = [c.state.get("Status") for c in self.all()]
        return {"Containers": len(states), "ContainersRunning": states.count("running"),
                "ContainersPaused": states.count("paused"),
                "ContainersStopped": len(states) - states.count("running") - states.count("paused")}

    def df(self) -> dict[str, Any]:
        """The containers' and volumes' parts of /system/df."""
        ctrs = []
        for c in self.all():
            s = self.summary(c)
            s["SizeRw"] = safepath.tree_size(os.path.join(self.root, c.id, "upper"))
            ctrs.append(s)
        vols = []
        for v in self.volumes.all():
            view = v.view()
            view["UsageData"] = {"Size": self.volumes.size(v.name), "RefCount": len(self.volumes.users(v.name))}
            vols.append(view)
        return {"Containers": ctrs, "Volumes": vols}

    def container_resize(self, name: str, height: int, width: int) -> None:
        """Resize the container's terminal: conmon's ctl FIFO takes "1 HEIGHT WIDTH"."""
        ctr = self._get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        if not ctr.config.get("Tty"):
            return
        fd = os.open(os.path.join(self._paths(ctr).bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        finally:
            os.close(fd)

    async def container_stdin(self, name: str, source: Any) -> None:
        """Copy the hijacked stream's bytes to the container's stdin until the client half-closes,
        then close the container's stdin (conmon does on our half-close)."""
        sock = await self.stdin_socket(name)
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        try:
            while data := await source.read(8192):  # one SEQPACKET message at most: conmon reads 8 KiB
                for i in range(0, len(data), 8192):
                    await loop.sock_sendall(sock, data[i:i + 8192])
            sock.shutdown(socket.SHUT_WR)
            await asyncio.sleep(0)
        except OSError:
            pass
        finally:
            sock.close()

    async def containers_prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        deleted = []
        reclaimed = 0
        until = float(filters["until"][-1]) if filters.get("until") else None

        def has(labels: dict[str, str], want: str) -> bool:
            key, eq, value = want.partition("=")
            return key in labels and (not eq or labels[key] == value)

        for c in self.all():
            labels = c.config.get("Labels") or {}
            if until is not None and _unix(c.created) >= until:
                continue
            if not all(has(labels, lb) for lb in filters.get("label", [])):
                continue
            if any(has(labels, lb) for lb in filters.get("label!", [])):
                continue
            if not c.running and not c.state.get("Restarting"):
                size = await asyncio.to_thread(safepath.tree_size, os.path.join(self.root, c.id, "upper"))
                await self.remove(c.id, force=False, volumes=False)
                deleted.append(c.id)
                reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def container_output(self, name: str, *, stdout: bool, stderr: bool, since: float,
                               until: float | None, tail: int | None, follow: bool, timestamps: bool,
                               from_start: bool) -> AsyncIterator[bytes]:
        ctr = self._get(name)
        tty = bool(ctr.config.get("Tty"))
        lc = self._log_config(ctr)
        if from_start and not lc.readable:
            raise InvalidParameter("configured logging driver does not support reading")
        yield b""  # checked: the caller may answer now (a follower gets its headers before any line)
        if from_start and lc.driver == "journald":
            async def ended() -> tuple[str, int] | None:
                """Once the container has stopped and its shipper has sent the rest of its file: the
                mark of the last journald entry sent (None when no shipper sent any)."""
                while self._exists(ctr.id) and self._get(ctr.id).state.get("Status") in ("created", "running",
                                                                                        "paused", "restarting"):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.setdefault(ctr.id, asyncio.Event()).wait(), 0.25)
                task = self._shippers.get(ctr.id)
                if task is not None:
                    with contextlib.suppress(Exception):
                        return await asyncio.shield(task)
                return self._journal_marks.get(ctr.id)
            async for line in logship.journal_lines(ctr.id, since, until, tail, follow, ended):
                if stdout and line.stream == clogs.STDOUT or stderr and line.stream == clogs.STDERR:
                    yield clogs.encode(line, tty, timestamps)
            return
        async for line in self.follow_logs(name, stdout, stderr, since, until, tail, follow, from_start):
            yield clogs.encode(line, tty, timestamps)


@dataclass
class Exec:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    workdir: str
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    tty: bool = False
    detach_keys: bytes = b""  # empty: the default (ctrl-p ctrl-q)
    privileged: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0

    def view(self) -> dict[str, Any]:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "ProcessConfig": {
            "tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "", "arguments": self.cmd[1:],
            "privileged": self.privileged, "user": self.user}, "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr, "OpenStdout": self.attach_stdout, "CanRemove": False,
            "ContainerID": self.container_id, "DetachKeys": base64.b64encode(self.detach_keys).decode(),
            "Pid": self.pid}


class ExecService:
    """docker exec: ``<runtime> exec --process FILE`` run by berthd, its stdio joined to the client.

    Exec processes are berthd's children: unlike the container itself they end with berthd
    (dockerd's attached exec sessions break with it too)."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self.execs: dict[str, Exec] = {}
        self._ptys: dict[str, int] = {}  # exec ID → pty master, while a TTY exec runs

    def container_of(self, exec_id: str) -> tuple[str, dict[str, str]] | None:
        """(ID, labels) of the container an exec runs in (for authorization)."""
        ex = self.execs.get(exec_id)
        return None if ex is None else self.containers.labels_of(ex.container_id)

    def exec_create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ctr = self.containers._get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        cmd = body.get("Cmd")
        if not cmd or not isinstance(cmd, list):
            raise InvalidParameter("No exec command specified")
        ex = Exec(secrets.token_hex(32), ctr.id, [str(c) for c in cmd], list(body.get("Env") or []),
                  body.get("User") or ctr.config.get("User") or "", body.get("WorkingDir") or "",
                  bool(body.get("AttachStdin")), bool(body.get("AttachStdout")), bool(body.get("AttachStderr")),
                  tty=bool(body.get("Tty")), privileged=bool(body.get("Privileged")))
        # Go's JSON decoding matches field names whatever their case: docker-py sends "detachKeys"
        keys = next((v for k, v in body.items() if k.lower() == "detachkeys" and v), "")
        if keys:
            try:
                ex.detach_keys = parse_detach_keys(str(keys))
            except ValueError:
                raise InvalidParameter(f"Invalid escape keys ({keys}) provided") from None
        self.execs[ex.id] = ex
        self.containers._event("exec_create", ctr, execID=ex.id)
        return {"Id": ex.id}

    async def _open_tty(self, ex: Exec, ctr: Ctr, process_file: str) -> tuple[asyncio.subprocess.Process, int]:
        """Start a TTY exec: (the runtime's process, the pty master). With crun the pty comes from the
        container's own devpts through a console socket (``tty`` inside names it); otherwise berthd
        opens one on the host's devpts and gives the slave side to the runtime as stdio."""
        import pty
        import tempfile

        runtime = self.containers.runtimes[ctr.runtime]
        if not runtime.console_exec:  # the process file says terminal=false: the pty is ours
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(*runtime.exec_argv(ctr.id, process_file), stdin=slave,
                                                            stdout=slave, stderr=slave, start_new_session=True)
            finally:
                os.close(slave)
            return proc, master
        console_dir = tempfile.mkdtemp(prefix="berth-tty-")  # a unix socket path must stay under 108 bytes
        console = os.path.join(console_dir, "console.sock")
        argv = runtime.exec_tty_argv(ctr.id, process_file, console)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(console)
            listener.listen(1)
            listener.settimeout(30)
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            receiving = asyncio.ensure_future(asyncio.to_thread(receive_console, listener))
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait([receiving, exited], return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                # The runtime may have exited (the command could not run) after sending the terminal,
                # whose reception has not been scheduled yet: its error is on that terminal.
                await asyncio.wait([receiving], timeout=2)
            if not receiving.done():  # the runtime failed before it made the terminal
                listener.close()
                with contextlib.suppress(BaseException):
                    await receiving
                assert proc.stdout is not None
                text = (await proc.stdout.read()).decode(errors="replace").strip()
                raise _ExecFailed(await exited, text)
            exited.cancel()
            return proc, receiving.result()
        finally:
            listener.close()
            shutil.rmtree(console_dir, ignore_errors=True)

    async def _run_tty(self, ex: Exec, ctr: Ctr, process_file: str, stdin: Any, write: Any) -> int:
        """A TTY exec: output is raw, from the pty master."""
        import fcntl

        try:
            proc, master = await self._open_tty(ex, ctr, process_file)
        except BaseException as exc:
            if not isinstance(exc, _ExecFailed):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(process_file)
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(process_file)
            # dockerd answers 126 for an exec whose command cannot run, not found included (unlike run)
            code = 126 if "not found" in exc.text or "ermission denied" in exc.text else exc.code
            if ex.attach_stdout:
                await write(1, (f"OCI runtime exec failed: {exc.text}\r\n").encode())
            ex.exit_code = code
            self.containers._event("exec_die", ctr, execID=ex.id, exitCode=str(code))
            return code
        fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._ptys[ex.id] = master
        ex.running, ex.pid = True, proc.pid or 0
        self.containers._event("exec_start", ctr, execID=ex.id)
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(master, readable.set)

        async def pump_in() -> None:
            try:
                while data := await stdin.read(65536):
                    await loop.run_in_executor(None, os.write, master, data)
            except (OSError, ConnectionResetError):
                pass

        feeder = asyncio.ensure_future(pump_in()) if stdin is not None and ex.attach_stdin else None
        exited = asyncio.ensure_future(proc.wait())
        tail = bytearray()
        try:
            while True:
                waiter = asyncio.ensure_future(readable.wait())
                await asyncio.wait([waiter, exited], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                readable.clear()
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    if exited.done():
                        break  # the process is gone and nothing is left to read
                    continue
                except OSError:  # EIO: the last process holding the slave side exited
                    break
                if not data:
                    break
                tail.extend(data)
                del tail[:-512]
                if ex.attach_stdout:
                    await write(1, data)
            code = await exited
            if code == 255 and (b"not found in $PATH" in tail or b"ermission denied" in tail):
                code = 126  # the runtime could not run the command: dockerd's exec code, as without a TTY
        finally:
            loop.remove_reader(master)
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            self._ptys.pop(ex.id, None)
            os.close(master)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(process_file)
        ex.running, ex.exit_code = False, code
        self.containers._event("exec_die", ctr, execID=ex.id, exitCode=str(code))
        return code

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        import fcntl
        import struct
        import termios

        if exec_id not in self.execs:
            raise NotFound(f"No such exec instance: {exec_id}")
        master = self._ptys.get(exec_id)
        if master is not None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex.view()

    def _process_file(self, ex: Exec, ctr: Ctr) -> str:
        p = self.containers._paths(ctr)
        with open(os.path.join(p.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        env = {e.split("=", 1)[0]: e for e in process.get("env", [])}
        for e in ex.env:
            env[e.split("=", 1)[0]] = e
        with safepath.Root.at(os.path.join(p.bundle, "rootfs")) as root:
            u = spec.resolve_user(root, ex.user, tuple(ctr.host_config.get("GroupAdd") or ()))
        if not any(e.startswith("HOME=") for e in [*(ctr.config.get("Env") or []), *ex.env]):
            env["HOME"] = f"HOME={u.home}"  # the exec's user's (the runtime would read passwd for it)
        terminal = ex.tty and self.containers.runtimes[ctr.runtime].console_exec
        process.update(args=ex.cmd, env=list(env.values()), terminal=terminal,
                       user={"uid": u.uid, "gid": u.gid, "additionalGids": list(u.additional_gids)})
        if ex.privileged:  # as dockerd: every capability; the container's seccomp profile still applies
            caps = csecurity.bounding_caps()
            process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        if ex.workdir:
            process["cwd"] = ex.workdir
        path = os.path.join(p.run_dir, f"exec-{ex.id}.json")
        with open(path, "w") as f:
            json.dump(process, f)
        return path

    async def exec_run(self, exec_id: str, stdin: Any, write: Any) -> int:
        """Run the exec; ``stdin`` has ``async read(n)`` (or is None), ``write(stream, data)`` sends output.
        Returns the exit code."""
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        if ex.running or ex.exit_code is not None:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        ctr = self.containers._get(ex.container_id)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        runtime = self.containers.runtimes[ctr.runtime]
        try:
            process_file = await asyncio.to_thread(self._process_file, ex, ctr)
        except BerthError as exc:
            # as dockerd: the error goes to the client's stdout and the exec ends with 126
            ex.exit_code = 126
            self.containers._event("exec_die", ctr, execID=ex.id, exitCode="126")
            if ex.attach_stdout:
                with contextlib.suppress(ConnectionResetError):
                    await write(1, f"OCI runtime exec failed: {exc.message}\r\n".encode())
            return 126
        if ex.tty:
            return await self._run_tty(ex, ctr, process_file, stdin, write)
        proc = await asyncio.create_subprocess_exec(
            *runtime.exec_argv(ctr.id, process_file),
            stdin=asyncio.subprocess.PIPE if ex.attach_stdin and stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        ex.running, ex.pid = True, proc.pid or 0
        self.containers._event("exec_start", ctr, execID=ex.id)

        err_tail = bytearray()

        async def pump_out(reader: asyncio.StreamReader, stream: int, wanted: bool) -> None:
            while data := await reader.read(65536):
                if stream == 2:
                    err_tail.extend(data)
                    del err_tail[:-512]
                if wanted:
                    await write(stream, data)

        async def pump_in() -> None:
            assert proc.stdin is not None
            try:
                while data := await stdin.read(65536):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except (ConnectionResetError, BrokenPipeError):
                pass
            finally:
                proc.stdin.close()

        feeder = asyncio.ensure_future(pump_in()) if proc.stdin is not None else None
        try:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(pump_out(proc.stdout, 1, ex.attach_stdout), pump_out(proc.stderr, 2, ex.attach_stderr))
            code = await proc.wait()
            if code == 255 and (b"not found in $PATH" in err_tail or b"ermission denied" in err_tail):
                code = 126  # dockerd's exec code when the command cannot run (not found included)
        finally:
            if feeder is not None:
                feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(process_file)
        ex.running, ex.exit_code = False, code
        self.containers._event("exec_die", ctr, execID=ex.id, exitCode=str(code))
        return code
