"""berthd's lifecycle: take the pidfile, open every listener (all or none), serve, stop cleanly.

SIGTERM/SIGINT stop the daemon: listeners close (unix socket files are removed), connections close,
the pidfile goes. SIGHUP reloads debug, log-level and labels from daemon.json and emits a daemon
"reload" event, as dockerd does.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from contextlib import ExitStack

from berth import API_VERSION, __version__
from berth.api.application import Application
from berth.api.connection import HttpConnection
from berth.api.hijack import parse_detach_keys
from berth.api.router import Route, Router
from berth.api.routes import build as build_routes
from berth.api.routes import containers as container_routes
from berth.api.routes import images as image_routes
from berth.api.routes import networks as network_routes
from berth.api.routes import swarm as swarm_routes
from berth.api.routes import system as system_routes
from berth.api.routes import volumes as volume_routes
from berth.container.exec import ExecService
from berth.container.registry import Layout, Registry
from berth.daemon import authz, logs, setup
from berth.daemon import config as config_mod
from berth.daemon.auditing import RequestAuditor
from berth.daemon.backends.build import Builder
from berth.daemon.backends.buildprune import BuildCacheService
from berth.daemon.backends.containerfiles import ContainerFilesAPI
from berth.daemon.backends.containers import ContainerAPI, ContainerFacts
from berth.daemon.backends.images import ImageService
from berth.daemon.backends.lifecycle import Lifecycle
from berth.daemon.backends.links import ContainerNetworks, NetworkMembers
from berth.daemon.backends.networks import NetworkAPI
from berth.daemon.backends.system import SystemService
from berth.daemon.backends.volumes import VolumeService
from berth.daemon.config import Config
from berth.daemon.events import EventBus, make_event
from berth.daemon.listeners import Site
from berth.errors import BerthError, InvalidParameter, System
from berth.image.store import ImageStore
from berth.linux import malloc, spinpoll, systemd
from berth.linux.idmap import share_with_remapped_root
from berth.network.controller import NetworkController
from berth.security import actions as actions_mod
from berth.security import authzplugin
from berth.security import policy as policy_mod
from berth.security.audit import FLUSH_EVERY, AuditWriter
from berth.store.containers import ContainerRows
from berth.store.db import Database
from berth.store.networks import NetworkRows
from berth.volume.local import LocalVolumes

log = logging.getLogger("berth.daemon")


def _gate(cfg: Config, actions: Mapping[str, str], resolver: authz.Resolver,
          match: Callable[[str, str], tuple[Route, dict[str, str]] | None]) -> authz.Gate:
    """The authorization gate (installed only when it has something to check: a policy or a listener
    role; otherwise nothing is checked and nothing is slower). A policy that cannot be used, or a listener role that is neither built in nor in the policy,
    stops the daemon from starting."""
    policy = policy_mod.Policy.load(cfg.authorization_policy, actions) if cfg.authorization_policy else None
    roles = {name: lp.role for name, lp in cfg.listener_policies.items()}
    named = policy.roles() if policy is not None else set()
    for name, role in roles.items():
        if role not in policy_mod.ROLES and role not in named:
            raise InvalidParameter(f"listener-policies: {name} has the role {role!r}, which is neither built in "
                                   f"({', '.join(policy_mod.ROLES)}) nor named in the authorization policy "
                                   f"(Role::\"{role}\")")
    if policy is None:
        log.warning("authorization: no policy (authorization-policy): every caller who reaches a socket is admin%s",
                    " except on listeners with a role" if roles else "")
    else:
        log.info("authorization: policy %s (%d rules)", cfg.authorization_policy, len(policy.rules))
    sockets = tuple(h.address for h in cfg.hosts if h.proto == "unix")
    return authz.Gate(policy, roles, resolver, sockets, match, _plugins(cfg.authorization_plugins))


def _plugins(names: list[str]) -> list[authzplugin.Plugin]:
    """Each plugin found and activated, as dockerd validates them at start (and at a reload)."""
    out = []
    for name in names:
        try:
            plugin = authzplugin.Plugin(name, authzplugin.find(name))
            plugin.activate()
        except BerthError as exc:
            raise InvalidParameter(f"failed to validate authorization plugin: {exc.message}") from None
        log.info("authorization plugin %s at %s", name, plugin.addr.location)
        out.append(plugin)
    return out


async def _flush_every(writer: AuditWriter) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        writer.flush()


def _file_digest(path: str) -> str:
    """The SHA-256 of a file, for the audit log ("" when there is none)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return ""


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.bus = EventBus()
        self._stop = asyncio.Event()
        self.sites: list[Site] = []
        self.gate: authz.Gate | None = None
        self.auditor: RequestAuditor | None = None
        self.actions: dict[str, str] = {}
        self.images: ImageService | None = None

    def reload(self) -> None:
        try:
            changes = config_mod.reloadable(self.cfg, self.cfg.config_file)
        except BerthError as exc:
            log.error("reload failed, keeping the current configuration: %s", exc.message)
            return
        if "debug" in changes:
            self.cfg.debug = bool(changes["debug"])
        if "log-level" in changes:
            self.cfg.log_level = str(changes["log-level"])
        if "labels" in changes:
            self.system.labels = list(changes["labels"])
        self._reload_tls(changes)
        self._reload_policy(changes)
        self._reload_plugins(changes)
        self._reload_registries(changes)
        logs.set_level("debug" if self.cfg.debug else self.cfg.log_level)
        self.app.debug = self.cfg.debug
        attrs = {"debug": str(self.cfg.debug).lower(), "labels": "[" + ", ".join(self.system.labels) + "]",
                 "name": os.uname().nodename}
        self.bus.publish(make_event("daemon", "reload", self.system.engine_id, attrs))
        log.info("reloaded the configuration from %s", self.cfg.config_file)
        if self.auditor is not None:
            self.auditor.daemon("reload", file=self.cfg.config_file, keys=sorted(changes))

    def _reload_tls(self, changes: dict[str, object]) -> None:
        """New TLS material for new connections (open ones keep theirs); a file that cannot be used
        keeps the material in use, and the log says why."""
        if not any(s.tls is not None for s in self.sites):
            return
        import copy

        cfg = copy.copy(self.cfg)
        for key in ("tlscert", "tlskey", "tlscacert", "tlscrl"):
            if key in changes:
                setattr(cfg, key, os.path.abspath(str(changes[key])) if changes[key] else "")
        try:
            ctx = setup.tls_context(cfg)
        except BerthError as exc:
            log.error("TLS reload failed, keeping the certificates in use: %s", exc.message)
            return
        for site in self.sites:
            if site.tls is not None:
                site.tls = ctx
        for key in ("tlscert", "tlskey", "tlscacert", "tlscrl"):
            setattr(self.cfg, key, getattr(cfg, key))
        self.system.tls_warnings = setup.tls_warnings(self.cfg)
        for w in self.system.tls_warnings:
            log.warning("%s", w)
        log.info("reloaded the TLS certificate %s, key, CA %s%s", cfg.tlscert, cfg.tlscacert,
                 f" and CRL {cfg.tlscrl}" if cfg.tlscrl else "")

    def _reload_registries(self, changes: dict[str, object]) -> None:
        """insecure-registries, registry-mirrors, max-concurrent-downloads and registry-certs-dirs for the
        next pulls and pushes (dockerd reloads the first three); a bad value keeps the settings in use."""
        if self.images is None or not any(k in changes for k in config_mod.REGISTRY_KEYS):
            return
        from berth.image.registry import Settings

        cur = self.images.registries
        try:
            new = Settings.parse(changes.get("insecure-registries", list(cur.insecure)),
                                 changes.get("max-concurrent-downloads", cur.max_downloads),
                                 changes.get("registry-certs-dirs", list(cur.certs_dirs)),
                                 changes.get("registry-mirrors", list(cur.mirrors)))
        except BerthError as exc:
            log.error("registry settings reload failed, keeping the ones in use: %s", exc.message)
            return
        self.images.registries = new
        log.info("reloaded the registry settings: %d insecure, %d mirrors", len(new.insecure), len(new.mirrors))

    def _reload_plugins(self, changes: dict[str, object]) -> None:
        """authorization-plugins from daemon.json again (dockerd reloads them too); a plugin that cannot
        be found or activated keeps the list in use."""
        if "authorization-plugins" not in changes or self.gate is None:
            return
        names = list(dict.fromkeys(str(n) for n in changes["authorization-plugins"] or []))  # type: ignore[attr-defined]
        try:
            plugins = _plugins(names)
        except BerthError as exc:
            log.error("authorization plugins reload failed, keeping the plugins in use: %s", exc.message)
            return
        self.gate.plugins = plugins
        if plugins:
            self.app.authorizer = self.gate
        if self.auditor is not None:
            self.auditor.daemon("plugins", names=names)

    def _reload_policy(self, changes: dict[str, object]) -> None:
        """The policy file read again (and its path, when daemon.json changed it); one that cannot be used
        keeps the policy in use, and the log says why."""
        path = os.path.abspath(str(changes["authorization-policy"])) if changes.get("authorization-policy") \
            else self.cfg.authorization_policy
        if not path:
            return
        try:
            new = policy_mod.Policy.load(path, self.actions)
            missing = [r for r in {lp.role for lp in self.cfg.listener_policies.values()}
                       if r not in policy_mod.ROLES and r not in new.roles()]
            if missing:
                raise InvalidParameter(f"the role(s) {', '.join(missing)} of listener-policies are not in it")
        except BerthError as exc:
            log.error("authorization policy reload failed, keeping the policy in use: %s", exc.message)
            if self.auditor is not None:
                self.auditor.daemon("policy", file=path, error=exc.message[:500], kept="the policy in use")
            return
        if self.gate is None:
            return
        self.gate.policy = new
        self.app.authorizer = self.gate
        self.cfg.authorization_policy = path
        log.info("reloaded the authorization policy %s (%d rules)", path, len(new.rules))
        if self.auditor is not None:
            self.auditor.daemon("policy", file=path, sha256=_file_digest(path), rules=len(new.rules))

    async def run(self) -> int:
        cfg = self.cfg
        with ExitStack() as stack:
            setup.take_pidfile(cfg.pidfile)
            stack.callback(_remove, cfg.pidfile)
            # 0710 root:root as dockerd (CVE-2021-41091): no local user may traverse into layers,
            # volumes or a container's files, where a container could have planted a setuid binary.
            for path, mode in ((cfg.data_root, 0o710), (cfg.exec_root, 0o700)):
                os.makedirs(path, mode=mode, exist_ok=True)
                os.chmod(path, mode)  # a root made by an older berth (0711) is tightened too
            db = Database(os.path.join(cfg.data_root, "berth.db"))
            stack.callback(db.close)
            image_store = ImageStore(os.path.join(cfg.data_root, "image"), db)
            for leftover in image_store.sweep():
                log.warning("removed %s, left over from an interrupted operation", leftover)
            runtimes = setup.runtimes(cfg.exec_root)
            volumes = LocalVolumes(os.path.join(cfg.data_root, "volumes"), db)
            for leftover in volumes.sweep():
                log.warning("removed %s, left over from an interrupted operation", leftover)
            registry = Registry(ContainerRows(db), Layout(cfg.data_root, cfg.exec_root),
                                lambda *event: self.bus.publish(make_event(*event)))
            networks = NetworkController(NetworkRows(db), registry.emit, setup.net_settings(cfg), cfg.exec_root,
                                         NetworkMembers(registry))
            userns = setup.userns(cfg, image_store.layers.layers)
            if userns is not None:
                stack.callback(userns.close)
                for path in (cfg.data_root, cfg.exec_root):
                    share_with_remapped_root(path, userns.idmap)
            life = Lifecycle(registry, image_store, volumes, ContainerNetworks(networks), runtimes,
                             "crun" if "crun" in runtimes else "runc", userns, (cfg.log_driver, cfg.log_opts))
            for leftover in life.sweep():
                log.warning("removed %s, left over from an interrupted operation", leftover)
            containers = ContainerFacts(life)
            images = ImageService(image_store, self.bus, in_use=containers.images_in_use, df_extra=containers.df,
                                  registries=cfg.registries)
            self.images = images
            self.system = SystemService(cfg, self.bus, setup.engine_id(cfg.data_root), image_count=images.counts,
                                        container_counts=containers.counts)
            execs = ExecService(registry, runtimes, parse_detach_keys)
            builder = Builder(ContainerAPI(life), ContainerFilesAPI(life), images, os.path.join(cfg.data_root, "build"))
            router = Router([*system_routes.routes(self.system), *image_routes.routes(images),
                             *container_routes.routes(ContainerAPI(life), ContainerFilesAPI(life)),
                             *container_routes.exec_routes(execs),
                             *volume_routes.routes(VolumeService(volumes, self.bus)),
                             *network_routes.routes(NetworkAPI(networks)), *swarm_routes.routes(),
                             *build_routes.routes(builder, BuildCacheService(image_store, containers.images_in_use,
                                                                             builder.files_cache))])
            self.app = Application(router, server=f"berth/{__version__} (linux)", debug=cfg.debug,
                                   limits=setup.http_limits(os.environ))
            self.actions = actions_mod.methods()
            self.gate = _gate(cfg, self.actions, authz.Resolver(
                container=containers.labels_of, exec_container=execs.container_of,
                image=lambda ref: (image_store.resolve(ref), {}),
                network=lambda ref: (lambda n: (n.id, n.labels))(networks.get(ref)),
                volume=lambda ref: (lambda v: (v.name, v.labels))(volumes.get(ref)),
                host_binds=containers.host_binds, create_body=containers.create_body_of), router.match)
            for r in system_routes.policy_routes(self.gate):
                router.add(r)
            self.gate.common_headers = dict(
                line.split(": ", 1) for line in self.app.common_headers.decode("latin-1").splitlines() if ": " in line)
            if self.gate.policy is not None or self.gate.roles or self.gate.plugins:
                self.app.authorizer = self.gate
            if cfg.audit_log:
                loop = asyncio.get_running_loop()
                try:
                    audit_writer = AuditWriter(cfg.audit_log, sync=lambda fn: loop.run_in_executor(None, fn))
                except OSError as err:
                    raise System(f"cannot open the audit log {cfg.audit_log}: {err.strerror}") from None
                self.auditor = RequestAuditor(audit_writer)
                self.app.auditor = self.auditor
                stack.callback(audit_writer.close)
                stack.callback(audit_writer.flush)
                stack.callback(self.auditor.daemon, "stop")
                flusher = loop.create_task(_flush_every(audit_writer), name="audit")
                stack.callback(flusher.cancel)
                log.info("audit log: %s", cfg.audit_log)
            else:
                log.warning("audit log: none (audit-log is \"none\"): requests are not recorded")
            sites = setup.open_sites(cfg)
            for s in sites:
                stack.callback(s.close)
            self.sites = sites
            self.system.tls_warnings = setup.tls_warnings(cfg)
            for w in self.system.tls_warnings:
                log.warning("%s", w)
            loop = asyncio.get_running_loop()
            self.bus.bind(loop)
            await asyncio.to_thread(networks.init)  # after the listeners: a daemon that refuses to start touches nothing
            networks.attach_loop(loop)
            life.watch()
            await life.reconcile()
            loop.add_signal_handler(signal.SIGTERM, self._stop.set)
            loop.add_signal_handler(signal.SIGINT, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            app = self.app

            def factory(identify):  # type: ignore[no-untyped-def]
                return HttpConnection(app, identify)

            cap = setup.connection_cap(len(sites), os.environ)
            tasks = [loop.create_task(s.serve(factory, cap), name=s.name) for s in sites]
            sweeper = loop.create_task(app.run_sweeper(), name="sweeper")
            for s in sites:
                log.info("API listen on %s", s.name)
            if self.auditor is not None:
                self.auditor.daemon("start", version=__version__, listeners=[s.name for s in sites],
                                    policy=_file_digest(cfg.authorization_policy),
                                    roles={n: lp.role for n, lp in cfg.listener_policies.items()})
            log.info("berthd %s ready (API %s, data root %s)", __version__, API_VERSION, cfg.data_root)
            systemd.notify("READY=1")
            stopper = loop.create_task(self._stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not stopper and t.exception() is not None]
            systemd.notify("STOPPING=1")
            log.info("shutting down")
            for t in (*tasks, stopper, sweeper):
                t.cancel()
            for conn in list(app.connections):
                conn.shutdown()
            await asyncio.sleep(0)
            if failed:
                exc = failed[0].exception()
                log.error("listener %s failed: %s", failed[0].get_name(), exc)
                return 1
        return 0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = config_mod.load(args)
    except BerthError as exc:
        print(f"berthd: {exc.message}", file=sys.stderr)
        return 1
    if cfg.validate_only:
        print("configuration OK")
        return 0
    logs.setup(cfg.log_level)
    malloc.tune()
    if cfg.cleanup_network:
        return setup.cleanup_network(cfg)
    try:
        with asyncio.Runner(loop_factory=spinpoll.new_event_loop) as runner:
            return runner.run(Daemon(cfg).run())
    except BerthError as exc:
        log.error("%s", exc.message)
        return 1
    except OSError as exc:
        if exc.errno == errno.EACCES:
            log.error("permission denied: %s (berthd must run as root)", exc)
        else:
            log.error("%s", exc)
        return 1
