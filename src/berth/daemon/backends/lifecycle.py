"""A container's life across the domains: create, start, stop, kill, remove, and the reconciliation
after berthd was down. A create needs an image and volumes; a start mounts the image's layers,
sets up the network, copies an image's content into new volumes and hands a spec to the runtime.
Every multi-step operation collects its undo steps in an ExitStack that is disarmed only on
success, so a failure leaves no mount, runtime container, volume or half-written row behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
from types import MappingProxyType
from typing import Any

from berth.container import archive as carchive
from berth.container import config as cconfig
from berth.container import hostconfig, names, prepare, spec, users
from berth.container import mounts as cmounts
from berth.container import security as csecurity
from berth.container import state as transitions
from berth.container.health import HealthChecks
from berth.container.logstream import ContainerLogs, log_config
from berth.container.model import Container, State, now
from berth.container.monitor import Monitor
from berth.container.networking import Networking
from berth.container.registry import Registry
from berth.container.rootfs import Rootfs
from berth.container.runtime import OCIRuntime, connect_attach, parse_signal
from berth.errors import BerthError, Conflict, InvalidParameter, NotFound, NotModified, System
from berth.image.store import ImageStore
from berth.linux import cgroups, safepath
from berth.linux.idmap import UserNamespace, share_with_remapped_root
from berth.volume.local import LocalVolumes

log = logging.getLogger("berth.containers")
KILL_WAIT = 10.0  # seconds a SIGKILL's answer waits for the exit to be recorded


class Lifecycle:
    def __init__(self, registry: Registry, images: ImageStore, volumes: LocalVolumes,
                 networks: Networking, runtimes: dict[str, OCIRuntime], default_runtime: str,
                 userns: UserNamespace | None = None, default_log: tuple[str, dict[str, str]] = ("json-file", {})) -> None:
        self.registry = registry
        self.layout = registry.layout
        for d in (self.layout.root, self.layout.run_root, self.layout.exit_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        if userns is not None:  # the runtime reaches bundles and /etc files as the remapped root
            for d in (self.layout.root, self.layout.run_root):
                share_with_remapped_root(d, userns.idmap)
        self.images = images
        self.volumes = volumes
        self.networks = networks
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.userns = userns
        self.default_log = (default_log[0], MappingProxyType(dict(default_log[1])))
        self.rootfs = Rootfs(registry, self.lowers_of, lambda name: volumes.get(name).mountpoint, userns)
        self.health = HealthChecks(registry, runtimes)
        self.logs = ContainerLogs(registry)
        self.cgroup_v2 = cgroups.layout() == "v2"
        self.monitor = Monitor(registry, runtimes, self.rootfs, networks, self.health,
                               start=lambda cid: self.start(cid, keep_count=True),
                               remove=lambda cid: self.remove(cid, force=True, volumes=False), cgroup_v2=self.cgroup_v2)
        self.memsw = self.cgroup_v2 or os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
        # attach calls waiting for a container's stdin socket (the docker CLI attaches before start)
        self._stdin_waiters: dict[str, list[asyncio.Future[socket.socket]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def lowers_of(self, image_id: str) -> list[str]:
        """The image's layer directories, top first (an overlay's lowerdir order)."""
        return [self.images.layers.diff_path(ch) for ch in reversed(self.images.get(image_id).layers)]

    def watch(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.monitor.watch()

    # ---- create ----------------------------------------------------------------------------------
    def create(self, body: Any, name: str) -> dict[str, Any]:
        body, hc = cconfig.parse_request(body, self.default_log)
        image_name = body["Image"]
        modes = hostconfig.modes(hc)
        idmap = self.userns.idmap if self.userns is not None and modes["UsernsMode"].kind != "host" else None
        if idmap is not None:
            cconfig.check_remapped(self.registry, hc, modes, idmap)
        cconfig.check_bind_sources(hc)
        try:
            image_id = self.images.resolve(image_name)
        except NotFound:
            raise NotFound(f"No such image: {image_name}") from None
        icfg = self.images.config(image_id).get("config") or {}
        cid = secrets.token_hex(32)
        cfg = cconfig.merge(body, icfg, image_name, cid)
        mode, plan = self.networks.plan(hc, body.get("NetworkingConfig"))
        if mode != "none" and body.get("NetworkDisabled"):
            mode, plan = "none", []
        hc = {**hc, "NetworkMode": mode,
              "LogConfig": {"Type": (hc.get("LogConfig") or {}).get("Type") or self.default_log[0],
                            "Config": (hc.get("LogConfig") or {}).get("Config") or {}}}
        inherited, inherited_binds = cconfig.volumes_from(self.registry, hc)
        if inherited_binds:
            own = {cmounts.bind_target(b) for b in hc.get("Binds") or []}
            hc["Binds"] = list(hc.get("Binds") or []) + [b for b in inherited_binds if cmounts.bind_target(b) not in own]
        # docker-py's create_container(runtime=) puts Runtime beside Config (dockerd ignores it there)
        runtime = hc.get("Runtime") or body.get("Runtime") or self.default_runtime
        if runtime not in self.runtimes:
            raise InvalidParameter(f"unknown or invalid runtime name: {runtime}")
        hc["Runtime"] = runtime  # inspect shows the runtime chosen, as dockerd does
        name = names.check(name) if name else names.random_name(self.registry.rows.names())
        ctr = Container(cid, name, image_name, image_id, now(), cfg, hc, State(), runtime, idmap=idmap)
        with contextlib.ExitStack() as undo:
            os.makedirs(self.layout.dir(cid, "upper"), mode=0o755)
            undo.callback(shutil.rmtree, self.layout.dir(cid), True)
            os.makedirs(self.layout.dir(cid, "work"), mode=0o700)
            if idmap is not None:  # what the container writes is owned by its remapped root
                for sub in ("upper", "work"):
                    os.chown(self.layout.dir(cid, sub), idmap.uid, idmap.gid)
            vols = []
            wanted = {**(icfg.get("Volumes") or {}), **(body.get("Volumes") or {})}  # `-v /path`: anonymous
            for vname, dst, ro in cmounts.volume_requests(hc, wanted):
                vol, made = self.volumes.create(vname, driver=hc.get("VolumeDriver") or "local", anonymous=not vname)
                if made:
                    undo.callback(self.volumes.remove, vol.name, True)
                    if idmap is not None:
                        os.chown(vol.mountpoint, idmap.uid, idmap.gid)
                    self.registry.emit("volume", "create", vol.name, {"driver": "local"})
                vols.append((vol.name, dst, ro))
            taken = {d for _n, d, _r in vols} | {m["destination"] for m in cmounts.mounts(hc, create=False)}
            vols += [v for v in inherited if v[1] not in taken]
            with self.registry.rows.transaction():  # the row, its volumes and its network attachments, or none
                self.registry.rows.insert(ctr.row(vols))
                self.networks.register(cid, plan)
            undo.pop_all()
        self.registry.event("create", ctr)
        return {"Id": cid, "Warnings": []}

    # ---- start -----------------------------------------------------------------------------------
    def _volume_mounts(self, ctr: Container, rootfs: str) -> list[dict[str, Any]]:
        """Bind mounts of the container's volumes; a new volume first gets the image's content at its
        destination, resolved inside the container's root (a symlink in the image cannot point the
        copy at the host's files)."""
        out = []
        for name, dst, ro in self.registry.volumes_of(ctr.id):
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

    def _start_sync(self, ctr: Container) -> None:
        p = self.layout.paths(ctr.id)
        runtime = self.runtimes[ctr.runtime]
        rootfs = self.layout.rootfs(ctr.id)
        hc, cfg = ctr.host_config, ctr.config
        modes = hostconfig.modes(hc)
        joins = prepare.namespace_joins(self.registry, modes)
        with contextlib.ExitStack() as undo:
            idmap = self.rootfs.mount_for_start(ctr)
            undo.callback(self.rootfs.unmount, rootfs)
            net = self.networks.setup(ctr)
            undo.callback(self.networks.teardown, ctr.id)
            etc = prepare.write_etc(self.layout, ctr, net.hosts, net.resolv)
            cwd = cfg.get("WorkingDir") or "/"
            with safepath.Root.at(rootfs) as root:
                user = users.resolve_user(root, cfg.get("User") or "", tuple(hc.get("GroupAdd") or ()))
                if cwd != "/":  # made inside the container's root, as dockerd does (owned by its root)
                    try:
                        owner = (idmap.uid, idmap.gid) if idmap is not None else (-1, -1)
                        os.close(root.mkdir_all(cwd, 0o755, *owner))
                    except OSError as exc:
                        raise InvalidParameter(f"cannot create the working directory {cwd!r}: "
                                               f"{exc.strerror}") from None
            shm = None
            if modes["IpcMode"].kind == "shareable":  # a tmpfs of berth's own, which joiners bind too
                shm = self.rootfs.mount_shm(ctr, idmap)
                undo.callback(self.rootfs.unmount, shm)
            binds = cmounts.mounts(hc)  # checked, and missing -v directories made, before volumes are filled
            confinement = csecurity.settings(hc, hc.get("NetworkMode", "none"))
            link_env = prepare.link_env(self.registry, ctr, self.networks.bridge_address)
            env = {e.split("=", 1)[0]: e for e in [*link_env, *(cfg.get("Env") or [])]}
            parent = "/" + (hc.get("CgroupParent") or "berth").strip("/")
            config = spec.build(spec.Inputs(
                rootfs=rootfs, args=ctr.command, env=list(env.values()), cwd=cwd, user=user,
                hostname=cfg["Hostname"], tty=bool(cfg.get("Tty")), host_config=hc, modes=modes,
                cgroups_path=f"{parent}/{ctr.id}", cgroup_v2=self.cgroup_v2, memsw=self.memsw, etc_files=etc,
                netns_path=net.netns, joins=joins, shm_source=shm, user_mounts=binds,
                volume_mounts=self._volume_mounts(ctr, rootfs), security=confinement,
                idmap=idmap, compile_seccomp=runtime.name == "crun"))
            fd = os.open(os.path.join(p.bundle, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(config, f)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.layout.exit_file(ctr.id))
            size_max, files = log_config(ctr).file_limits()
            pid = runtime.create(ctr.id, ctr.name, p, tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                                 log_size_max=size_max * max(files, 1))
            undo.callback(runtime.delete, ctr.id, True)
            self._hand_out_stdin(ctr.id)  # before start: no input can be missed
            runtime.start(ctr.id, p)
            undo.pop_all()
        transitions.started(ctr.state, pid, now())
        self.registry.save_state(ctr)

    def _hand_out_stdin(self, cid: str) -> None:
        """Connect every attach call that is waiting for this container's stdin (in the start thread)."""
        waiters = self._stdin_waiters.pop(cid, [])
        loop = self._loop
        for fut in waiters:
            sock = connect_attach(self.layout.paths(cid).bundle)
            if loop is not None:
                loop.call_soon_threadsafe(_deliver, fut, sock)

    async def stdin_socket(self, name: str) -> socket.socket:
        """The container's stdin: now if it runs, else once it is started."""
        ctr = self.registry.get(name)
        if not ctr.config.get("OpenStdin"):
            raise InvalidParameter("the container was not created with stdin open (-i)")
        if ctr.running:
            return await asyncio.to_thread(connect_attach, self.layout.paths(ctr.id).bundle)
        fut: asyncio.Future[socket.socket] = asyncio.get_running_loop().create_future()
        self._stdin_waiters.setdefault(ctr.id, []).append(fut)
        return await fut

    async def start(self, name: str, keep_count: bool = False) -> None:
        """Start the container. Shielded: a client that goes away mid-start does not leave a
        container running that berth's state calls "created"."""
        await asyncio.shield(self._start(name, keep_count))

    async def _start(self, name: str, keep_count: bool) -> None:
        ctr = self.registry.get(name)
        async with self.registry.lock(ctr.id):
            ctr = self.registry.get(ctr.id)
            if ctr.running:
                raise NotModified("container already started")
            ctr.manually_stopped = False
            if not keep_count:
                ctr.restart_count = 0
            self.monitor.cancel_restart(ctr.id)
            shipper = None
            try:
                try:
                    shipper = await self.logs.open_shipper(ctr, None)  # before the start: output is not missed
                    await asyncio.to_thread(self._start_sync, ctr)
                except BerthError:
                    raise
                except OSError as exc:  # every failure reaches the client (``run --rm`` waits for it)
                    raise System(f"failed to start container {ctr.short_id}: {exc.strerror or exc}: "
                                 f"{exc.filename or ''}".rstrip(": ")) from exc
                except Exception as exc:
                    log.exception("bug: starting container %s", ctr.short_id)
                    raise System(f"failed to start container {ctr.short_id}: internal error "
                                 f"({type(exc).__name__})") from exc
            except BerthError as exc:
                # as dockerd: exit code 127 (command not found) or 126, the error recorded
                code = 127 if "not found" in exc.message else 126 if isinstance(exc, InvalidParameter) else 128
                transitions.start_failed(ctr.state, code, exc.message)
                self.registry.save_state(ctr)
                failed: BerthError | None = exc
                if shipper is not None:
                    shipper.close()
            else:
                failed = None
        if failed is not None:
            if ctr.auto_remove:  # the docker CLI waits for this removal after a failed start
                await self.remove(ctr.id, force=True, volumes=False)
            raise failed
        self.registry.event("start", ctr)
        await self.networks.start_dns(ctr)
        self.health.start(ctr)
        if shipper is not None:
            self.logs.run_shipper(ctr, shipper)

    # ---- stop, kill, remove ----------------------------------------------------------------------
    async def kill(self, name: str, sig: str) -> None:
        ctr = self.registry.get(name)
        if not ctr.running:
            raise Conflict(f"Cannot kill container: {name}: Container {ctr.id} is not running")
        signum = parse_signal(sig or "KILL")
        self.monitor.mark_manual_stop(ctr.id)
        # A SIGKILL is answered once the exit is recorded, as dockerd does: a client that inspects
        # right after the answer sees the container stopped (bounded: a process stuck in D state).
        exited = self.registry.register_wait(ctr.id, "next-exit")[1] if signum == signal.SIGKILL else None
        try:
            await asyncio.to_thread(self.runtimes[ctr.runtime].kill, ctr.id, signum)
            self.registry.event("kill", ctr, signal=str(signum))
            if exited is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
        finally:
            if exited is not None and not exited.done():
                exited.cancel()

    async def stop(self, name: str, timeout: int | None, sig: str = "") -> None:
        ctr = self.registry.get(name)
        if ctr.state.restarting:
            self.monitor.mark_manual_stop(ctr.id)
            return
        if not ctr.running:
            raise NotModified("container already stopped")
        self.monitor.mark_manual_stop(ctr.id)
        if timeout is None:
            timeout = int(ctr.config.get("StopTimeout", 10))
        _, fut = self.registry.register_wait(ctr.id, "next-exit")
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
        self.registry.event("stop", ctr)

    async def remove(self, name: str, force: bool, volumes: bool) -> None:
        ctr = self.registry.get(name)
        if ctr.state.restarting and not force:
            raise Conflict(f"You cannot remove a restarting container {ctr.id}. Stop the container before "
                           "attempting removal or force remove")
        self.monitor.cancel_restart(ctr.id)
        if ctr.running:
            if not force:
                raise Conflict(f"You cannot remove a running container {ctr.id}. Stop the container before "
                               "attempting removal or force remove")
            _, fut = self.registry.register_wait(ctr.id, "next-exit")
            with contextlib.suppress(Conflict):
                await asyncio.to_thread(self.runtimes[ctr.runtime].kill, ctr.id, 9)
            await asyncio.wait_for(fut, 30)
            if ctr.auto_remove:
                return  # the exit removed it
        async with self.registry.lock(ctr.id):
            found = self.registry.find(ctr.id)
            if found is None:
                return
            ctr = found
            vols = self.registry.volumes_of(ctr.id)
            with self.registry.rows.transaction():
                self.registry.rows.delete(ctr.id)
                self.networks.forget(ctr.id)
            for vname, _, _ in vols:
                with contextlib.suppress(NotFound, Conflict):
                    if volumes or (ctr.auto_remove and self.volumes.get(vname).anonymous):
                        if self.volumes.get(vname).anonymous:
                            self.volumes.remove(vname)
                            self.registry.emit("volume", "destroy", vname, {"driver": "local"})
            holds = self.monitor.holds_resources(ctr)  # released at exit already, except for --rm containers
        self.registry.event("destroy", ctr)
        self.registry.wake(ctr.id, ctr.state.exit_code, ("removed", "next-exit", "not-running"))
        self.registry.forget(ctr.id)
        self.logs.forget(ctr.id)
        # The row is gone: the runtime's state, the mount and the files can go after the answer (for
        # `docker run --rm` this keeps `crun delete` off the path the CLI waits on). A crash before they
        # are gone leaves them without a row, which sweep() removes at start.
        if holds:
            await asyncio.to_thread(self.monitor.release, ctr)
        await asyncio.to_thread(self.monitor.remove_files, ctr.id)

    # ---- berthd's start --------------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Remove what an interrupted create or remove left: directories and exit files without a row."""
        return self.monitor.sweep()

    async def reconcile(self) -> None:
        """After a (re)start of berthd: exits recorded, what interrupted starts left released, the
        network's state made true, running containers' DNS, healthchecks and log shippers resumed,
        and the restart policies applied."""
        await self.monitor.reconcile_exits()
        live = [c for c in self.registry.all() if c.running]
        await asyncio.to_thread(self.networks.reconcile, self.registry.is_running, live)
        for ctr in self.registry.all():
            if ctr.running:
                self.health.start(ctr)
                await self.networks.start_dns(ctr)
                try:
                    shipper = await self.logs.open_shipper(ctr, None)
                except BerthError as exc:
                    log.error("container %s: its log goes nowhere: %s", ctr.short_id, exc.message)
                else:
                    if shipper is not None:
                        self.logs.run_shipper(ctr, shipper)
        await self.monitor.restart_after_reconcile()


def _deliver(fut: asyncio.Future[socket.socket], sock: socket.socket) -> None:
    if fut.done():
        sock.close()  # the attach call went away meanwhile
    else:
        fut.set_result(sock)

