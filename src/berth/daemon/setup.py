"""What berthd makes of its configuration at start, before it serves: the pidfile, the engine ID, the
OCI runtimes found, the network settings, the listeners (all or none) with their TLS context, the
user namespace of userns-remap, the HTTP limits and connection caps; and ``--cleanup-network``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import shutil
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import replace

from berth.api.application import Limits
from berth.container.runtime import OCIRuntime
from berth.daemon.config import Config
from berth.daemon.listeners import Site, fd_sites, server_tls_context, tcp_site, unix_site
from berth.daemon.userns import resolve as resolve_userns
from berth.errors import BerthError, Conflict, InvalidParameter, System
from berth.linux import cgroups, systemd
from berth.linux.files import write_atomic
from berth.linux.idmap import UserNamespace
from berth.network.controller import NetworkController
from berth.network.model import NO_MEMBERS, NetSettings
from berth.security import tlsmaterial
from berth.store.db import Database
from berth.store.networks import NetworkRows

log = logging.getLogger("berth.daemon")


def take_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            old = f.read().strip()
    except FileNotFoundError:
        old = ""
    if old.isdigit() and int(old) != os.getpid():
        try:
            os.kill(int(old), 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise Conflict(f"pid file found, ensure berthd is not running or delete {path}") from None
        else:
            raise Conflict(f"pid file found, ensure berthd is not running or delete {path}")
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}")
    os.replace(tmp, path)


def engine_id(data_root: str) -> str:
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    write_atomic(path, value.encode(), 0o644)
    return value


def runtimes(exec_root: str) -> dict[str, OCIRuntime]:
    """The OCI runtimes found on this host. For crun on a hybrid cgroup host, move cgroup2's
    controllers to v1 hierarchies (crun refuses hybrid mode otherwise), and say so."""
    found = {}
    for name in ("crun", "runc"):
        path = shutil.which(name)
        if path:
            found[name] = OCIRuntime(name, path, os.path.join(exec_root, "runtime-" + name))
    if "crun" in found and os.geteuid() == 0:
        try:
            done = cgroups.fix_hybrid_for_crun()
        except BerthError as exc:
            log.warning("%s; crun is not used", exc.message)
            found.pop("crun")
        else:
            if done:
                log.warning("%s", done)
    if not found:
        log.warning("neither crun nor runc is installed: containers cannot run (apt-get install crun conmon)")
    return found


def net_settings(cfg: Config) -> NetSettings:
    """The network options, field by field from the configuration (the names are the same)."""
    return NetSettings(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(NetSettings)})


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    """The TLS listeners' context, from the files the configuration names (None: no TLS listener)."""
    if cfg.tls and any(h.proto in ("tcp", "fd") for h in cfg.hosts):
        return server_tls_context(cfg.tlscert, cfg.tlskey, cfg.tlscacert, cfg.tlsverify, cfg.tlscrl)
    if cfg.tlscrl:
        raise InvalidParameter("--tlscrl needs a TLS listener (--tlsverify and a tcp:// or fd:// host)")
    return None


def tls_warnings(cfg: Config) -> list[str]:
    """Certificates of the TLS listeners that expire within 30 days (or have), and CRLs due for renewal."""
    if not (cfg.tls and any(h.proto in ("tcp", "fd") for h in cfg.hosts)):
        return []
    files = {"server certificate": cfg.tlscert, **({"CA certificate": cfg.tlscacert} if cfg.tlsverify else {})}
    return tlsmaterial.expiry_warnings(files) + (tlsmaterial.crl_warnings(cfg.tlscrl) if cfg.tlscrl else [])


def open_sites(cfg: Config) -> list[Site]:
    """Open every listener or none: on a failure the ones already open are closed."""
    tls = tls_context(cfg)
    fds = systemd.listen_fds() if any(h.proto == "fd" for h in cfg.hosts) else []
    sites: list[Site] = []
    try:
        for h in cfg.hosts:
            if h.proto == "unix":
                lp = cfg.listener_policies.get(str(h))
                group = lp.group if lp is not None and lp.group else cfg.group
                sites.append(unix_site(h.address, group, cfg.group_explicit or group != cfg.group,
                                       lp.mode if lp is not None and lp.mode is not None else 0o660))
            elif h.proto == "tcp":
                if tls is None:
                    log.warning("API is accessible on http://%s without encryption: anyone who can reach it "
                                "has root on this host. Only loopback is allowed without TLS.", h.address)
                sites.append(tcp_site(h, tls, cfg.tlsverify))
            else:
                sites.extend(fd_sites(h, fds, tls, cfg.tlsverify))
    except BaseException:
        for s in sites:
            s.close()
        raise
    return sites


def userns(cfg: Config, layers_dir: str) -> UserNamespace | None:
    """userns-remap: the user namespace containers' layers are mapped with, once the kernel has shown
    it can make an idmapped mount of the layer store (berthd refuses to start otherwise)."""
    idmap = resolve_userns(cfg.userns_remap)
    if idmap is None:
        return None
    userns = UserNamespace(idmap)
    try:
        os.close(userns.idmapped(layers_dir))
    except OSError as exc:
        userns.close()
        raise System(f"userns-remap: this kernel cannot make idmapped mounts of {layers_dir} ({exc.strerror}); "
                     "it needs Linux 5.19 or later and a filesystem that supports them") from None
    log.info("userns-remap: containers' root is uid %d, gid %d on this host (%d ids)", idmap.uid, idmap.gid,
             idmap.size)
    return userns


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidParameter(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise InvalidParameter(f"{name}={text!r} must be positive")
    return value


def http_limits(env: Mapping[str, str]) -> Limits:
    """The HTTP limits; the timeouts can be tuned with BERTH_HTTP_HEADER_TIMEOUT, _BODY_TIMEOUT and
    _IDLE_TIMEOUT (seconds), for hosts behind slow links and for tests."""
    d = Limits()
    return replace(d, header_timeout=env_number(env, "BERTH_HTTP_HEADER_TIMEOUT", d.header_timeout),
                   body_timeout=env_number(env, "BERTH_HTTP_BODY_TIMEOUT", d.body_timeout),
                   idle_timeout=env_number(env, "BERTH_HTTP_IDLE_TIMEOUT", d.idle_timeout))


def connection_cap(sites: int, env: Mapping[str, str]) -> int:
    """Connections each listener takes at most (BERTH_MAX_CONNECTIONS, else the daemon's open-files
    limit, raised to its hard limit at start, less a reserve for containers, databases and logs,
    shared by the listeners)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    default = max(64, min(16384, (soft - 2048) // max(1, sites)))
    return int(env_number(env, "BERTH_MAX_CONNECTIONS", default))


def cleanup_network(cfg: Config) -> int:
    """``--cleanup-network``: berth's nft tables and the default bridge it made go; then exit."""
    from berth.network.firewall import Firewall

    try:
        Firewall().remove()
        log.info("removed the nftables tables ip berth and ip6 berth")
        db_path = os.path.join(cfg.data_root, "berth.db")
        if os.path.exists(db_path):
            db = Database(db_path)
            try:
                NetworkController(NetworkRows(db), lambda *event: None, net_settings(cfg), cfg.exec_root,
                                  NO_MEMBERS).cleanup()
            finally:
                db.close()
    except BerthError as exc:
        log.error("%s", exc.message)
        return 1
    return 0
