"""berth machine create | regenerate-certs | start | stop | restart | upgrade | rm --purge | rotate-ca |
revoke: what changes a host, step by step, each step shown as it happens; a failure names the step,
the host, and what to do.

A record is written only once its host answers: a ``create`` that fails leaves nothing in the store
(the host may hold a partial install, which the next ``create`` picks up).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console

from berth import __version__
from berth.cli import machinecerts as certs
from berth.cli import provision, wheelhouse
from berth.cli.contexts import Context, ContextStore
from berth.cli.machines import ADDRESS, NAME, USER, Machine, Store, engine_version
from berth.cli.main import CLI
from berth.cli.remote import Remote, RemoteError
from berth.errors import BerthError, Conflict, InvalidParameter, NotFound, NotSupported

WAIT_SECONDS = 90.0


class StepFailed(BerthError):
    pass


class Progress:
    """Each step as a line on stderr (a spinner on a terminal), its time when done."""

    def __init__(self, cli: CLI, name: str, host: str) -> None:
        self.console = Console(file=cli.err, highlight=False, soft_wrap=True)
        self.name, self.host = name, host

    @contextlib.contextmanager
    def step(self, what: str, hint: str) -> Iterator[None]:
        started = time.monotonic()
        status = self.console.status(f"({self.name}) {what}") if self.console.is_terminal else None
        if status is None:
            self.console.print(f"({self.name}) {what} ...")
        try:
            if status is not None:
                with status:
                    yield
            else:
                yield
        except BerthError as exc:
            self.console.print(f"({self.name}) {what}: failed")
            raise StepFailed(f"{what} failed on {self.name} ({self.host}): {exc.message}\nWhat to do: {hint}") from None
        self.console.print(f"({self.name}) {what}: done in {time.monotonic() - started:.1f} s")


def remote(m: Machine, timeout: float = 30) -> Remote:
    return Remote(m.ip, m.ssh_port, m.ssh_user, m.ssh_key, m.cert("known_hosts"), timeout)


def berth_machine(m: Machine) -> None:
    if not m.berth:
        raise NotSupported(f"{m.name} was not provisioned by berth machine (its engine is not berthd): berth machine "
                           "lists it, reaches it (env, config, ssh, scp) and removes its record; start, stop and "
                           "restart act on its docker service")


def engine_of(m: Machine, crl: bool | None = None) -> provision.Engine:
    opts = ((m.raw.get("HostOptions") or {}).get("EngineOptions") or {})
    flags = provision.engine_flags([str(o) for o in opts.get("ArbitraryFlags") or []])
    labels = tuple(str(x) for x in opts.get("Labels") or [])
    return provision.Engine(0 if m.ssh_only else m.engine_port, tuple(flags), labels,
                            bool(m.berth.get("CRL")) if crl is None else crl)


def service_of(m: Machine) -> str:
    return str(m.berth.get("Service") or "supervised") if m.berth else "docker"


def save_record(store: Store, name: str, raw: dict[str, Any]) -> None:
    path = os.path.join(store.machines_dir, name, "config.json")
    certs.write(path, json.dumps(raw, indent=4).encode(), 0o600)


def _record(store: Store, name: str, opts: Any, key: str, flags_opts: list[str], labels: list[str],
            berth: dict[str, Any]) -> dict[str, Any]:
    """config.json in docker-machine 0.16's generic-driver format, plus berth's own section."""
    cdir, mdir = certs.certs_dir(store), os.path.join(store.machines_dir, name)
    return {
        "ConfigVersion": 3,
        "Driver": {"IPAddress": opts.generic_ip_address, "MachineName": name, "SSHUser": opts.generic_ssh_user,
                   "SSHPort": opts.generic_ssh_port, "SSHKeyPath": key, "StorePath": store.path,
                   "SwarmMaster": False, "SwarmHost": "", "SwarmDiscovery": "", "EnginePort": opts.generic_engine_port,
                   "SSHKey": opts.generic_ssh_key or ""},
        "DriverName": "generic",
        "HostOptions": {
            "Driver": "", "Memory": 0, "Disk": 0,
            "EngineOptions": {"ArbitraryFlags": flags_opts, "Dns": None, "GraphDir": "", "Env": [], "Ipv6": False,
                              "InsecureRegistry": [], "Labels": labels, "LogLevel": "", "StorageDriver": "overlay2",
                              "SelinuxEnabled": False, "TlsVerify": not opts.ssh_only, "RegistryMirror": [],
                              "InstallURL": ""},
            "AuthOptions": {"CertDir": cdir, "CaCertPath": f"{cdir}/ca.pem", "CaPrivateKeyPath": f"{cdir}/ca-key.pem",
                            "CaCertRemotePath": f"{provision.CERT_DIR}/ca.pem", "ServerCertPath": f"{mdir}/server.pem",
                            "ServerKeyPath": f"{mdir}/server-key.pem", "ClientKeyPath": f"{cdir}/key.pem",
                            "ServerCertRemotePath": f"{provision.CERT_DIR}/server.pem",
                            "ServerKeyRemotePath": f"{provision.CERT_DIR}/server-key.pem",
                            "ClientCertPath": f"{cdir}/cert.pem", "ServerCertSANs": berth.get("ServerSANs", []),
                            "StorePath": mdir}},
        "Name": name,
        "Berth": berth,
    }


def _wait(m: Machine, r: Remote) -> str:
    """Until the engine answers (over TLS, or on the host for an ssh-only machine); its version."""
    deadline = time.monotonic() + WAIT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        try:
            if m.ssh_only:
                res = r.run(f"berth -H {provision.SOCKET} version --format '{{{{.Server.Version}}}}'", root=True,
                            check=False, timeout=30)
                if res.rc == 0:
                    return res.out.strip()
                last = (res.err or res.out).strip()[-300:]
            else:
                return engine_version(m, 5)
        except (OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.5)
    tail = r.run(f"tail -n 20 {provision.LOG} 2>/dev/null || journalctl -u berthd -n 20 --no-pager 2>/dev/null",
                 root=True, check=False).out
    raise RemoteError(f"the engine did not answer in {WAIT_SECONDS:.0f} s ({last}); berthd's last lines:\n{tail}")


def context_for(cli: CLI, m: Machine) -> None:
    """A docker context named after the machine (replacing one berth machine made before)."""
    store = ContextStore(cli.environ)
    if store.exists(m.name):
        if store.get(m.name).metadata.get("BerthMachine") != m.name:
            cli.err.write(f"a context named {m.name} exists and was not made by berth machine: left as it is\n")
            return
        store.remove(m.name)
    files = {} if m.ssh_only else {f: m.cert(f) for f in ("ca.pem", "cert.pem", "key.pem")}
    store.create(Context(m.name, m.url, f"berth machine {m.name}", tls_files=files,
                         metadata={"BerthMachine": m.name}))


def drop_context(cli: CLI, name: str) -> None:
    store = ContextStore(cli.environ)
    if store.exists(name) and store.get(name).metadata.get("BerthMachine") == name:
        store.remove(name)


# ---- create ------------------------------------------------------------------------------------------
def create(cli: CLI, store: Store, opts: Any) -> int:
    name = opts.name
    if not NAME.match(name):
        raise InvalidParameter(f"invalid machine name {name!r}: letters, digits, '.' and '-' only")
    if opts.driver != "generic":
        raise NotSupported(f"driver {opts.driver!r}: berth machine provisions existing hosts over SSH "
                           "(--driver generic)")
    if not ADDRESS.match(opts.generic_ip_address or ""):
        raise InvalidParameter(f"--generic-ip-address {opts.generic_ip_address!r}: an IP address or a host name")
    if not USER.match(opts.generic_ssh_user or ""):
        raise InvalidParameter(f"--generic-ssh-user {opts.generic_ssh_user!r} is not a user name")
    if not 0 < opts.generic_ssh_port < 65536 or not 0 < opts.generic_engine_port < 65536:
        raise InvalidParameter("--generic-ssh-port and --generic-engine-port are port numbers (1 to 65535)")
    if name in store.names() or os.path.exists(os.path.join(store.machines_dir, name)):
        raise Conflict(f'Host already exists: "{name}"')
    flags = provision.engine_flags(opts.engine_opt)
    labels = provision.check_labels(opts.engine_label)
    mdir = os.path.join(store.machines_dir, name)
    p = Progress(cli, name, opts.generic_ip_address)
    with p.step("Checking the wheelhouse", "run 'make setup' where berth was installed from its sources"):
        wh = wheelhouse.prepare(cli.environ)
    os.makedirs(mdir, mode=0o700)
    try:
        key = ""
        if opts.generic_ssh_key:
            key = os.path.join(mdir, "id_rsa")
            shutil.copyfile(opts.generic_ssh_key, key)
            os.chmod(key, 0o600)
        _provision(cli, store, opts, p, wh, mdir, key, flags, labels)
    except BaseException:
        shutil.rmtree(mdir, ignore_errors=True)
        drop_context(cli, name)
        raise
    print("Docker is up and running!\nTo see how to connect your Docker Client to the Docker Engine running on this "
          f"host, run: berth machine env {name}", file=cli.out)
    if opts.ssh_only:
        m = store.get(name)
        print(f"The engine is reached through ssh ({m.url}): docker and berth run OpenSSH, which needs the key. Add "
              f"to ~/.ssh/config:\n  Host {m.ip}\n    IdentityFile {m.ssh_key or '<your key>'}\n"
              f"    UserKnownHostsFile {m.cert('known_hosts')}", file=cli.out)
    return 0


def _provision(cli: CLI, store: Store, opts: Any, p: Progress, wh: wheelhouse.Wheelhouse, mdir: str, key: str,
               flags: list[str], labels: list[str]) -> None:
    name, addr = opts.name, opts.generic_ip_address
    with p.step(f"Connecting to {opts.generic_ssh_user}@{addr}:{opts.generic_ssh_port}",
                "check the address, the SSH user and key (--generic-ssh-user, --generic-ssh-key)"):
        r = Remote(addr, opts.generic_ssh_port, opts.generic_ssh_user, key, os.path.join(mdir, "known_hosts"))
        r.connect()
    with r:
        with p.step("Checking the host", "fix what the report lists on the host, then run create again"):
            f = provision.facts(r)
            found = provision.problems(f, wh.python, platform.machine())
            if found:
                raise InvalidParameter("the host cannot run berth:\n  - " + "\n  - ".join(found))
        if f.missing:
            with p.step(f"Installing {' '.join(f.missing)} with the host's apt",
                        "give the host a route to a Debian mirror (or install the packages by hand)"):
                provision.install_packages(r, f.missing)
        size = sum(os.path.getsize(os.path.join(wh.dir, w)) for w in wh.wheels)
        with p.step(f"Copying berth {__version__} ({len(wh.wheels)} wheels, {size / 1e6:.1f} MB)",
                    "check the free space in the host's /tmp"):
            for w in wh.wheels:
                r.upload(os.path.join(wh.dir, w), w)
        with p.step(f"Installing berth {__version__} in {provision.VENV}", "read pip's words above"):
            provision.install_berth(r, __version__)
        with p.step("Making certificates", f"check that {certs.certs_dir(store)} is writable"):
            ca = certs.ensure_ca(store)
            certs.copy_client(store, mdir)
            sans = certs.server_sans(addr, f.hostnames)
            server, server_key = certs.new_server(ca, mdir, f.hostnames[0] if f.hostnames else addr, sans)
        berth = {"SSHOnly": bool(opts.ssh_only), "Service": f.service, "Version": __version__, "ServerSANs": sans,
                 "CRL": certs.crl(store) is not None}
        raw = _record(store, name, opts, key, list(opts.engine_opt), labels, berth)
        m = Machine(name, "generic", addr, opts.generic_engine_port, opts.generic_ssh_user, opts.generic_ssh_port,
                    key, mdir, raw)
        engine = engine_of(m)
        with p.step(f"Configuring berthd ({f.service})", "see the message: it is berthd's own"):
            provision.put_certs(r, certs.ca_pem(store), server, server_key, certs.crl(store))
            provision.write_config(r, engine, f.service)
        with p.step("Starting berthd", "look at /var/log/berth/berthd.log or journalctl -u berthd on the host"):
            provision.stop(r, f.service)
            provision.start(r, f.service)
        with p.step(f"Waiting for the engine at {m.url}", "look at berthd's lines above; is the port reachable?"):
            _wait(m, r)
    save_record(store, name, raw)
    with p.step(f"Creating the docker context {name}", "remove the context of that name"):
        context_for(cli, store.get(name))


# ---- the service ---------------------------------------------------------------------------------------
def service(cli: CLI, store: Store, names: list[str], verb: str) -> int:
    """start | stop | restart, docker-machine's words around each."""
    done = {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
    doing = {"start": "Starting", "stop": "Stopping", "restart": "Restarting"}[verb]
    for name in names:
        m = store.get(name)
        print(f'{doing} "{name}"...', file=cli.out)
        p = Progress(cli, name, m.ip)
        with p.step(f"{verb.capitalize()} the engine", "ssh into the host and look at the service"):
            with remote(m) as r:
                if verb in ("stop", "restart"):
                    provision.stop(r, service_of(m))
                if verb in ("start", "restart"):
                    provision.start(r, service_of(m))
                    if m.berth:
                        _wait(m, r)
        print(f'Machine "{name}" was {done}.', file=cli.out)
    return 0


def upgrade(cli: CLI, store: Store, names: list[str]) -> int:
    """berth on each host to the local CLI's version, then berthd restarted on it."""
    wh = wheelhouse.prepare(cli.environ)
    for name in names:
        m = store.get(name)
        berth_machine(m)
        p = Progress(cli, name, m.ip)
        with remote(m) as r:
            with p.step(f"Upgrading berth to {__version__}", "read pip's words above"):
                for w in wh.wheels:
                    r.upload(os.path.join(wh.dir, w), w)
                provision.install_berth(r, __version__)
            with p.step("Restarting berthd", "look at berthd's log on the host"):
                provision.stop(r, service_of(m))
                provision.start(r, service_of(m))
                _wait(m, r)
        m.raw["Berth"]["Version"] = __version__
        save_record(store, name, m.raw)
    return 0


# ---- certificates ------------------------------------------------------------------------------------
def _push(m: Machine, r: Remote, store: Store, *, ca_pem: bytes | None = None, server: tuple[bytes, bytes] | None = None,
          crl: bytes | None = None) -> None:
    """New material on the host, then berthd reloads it (SIGHUP: no restart, connections kept)."""
    cert, key = server if server is not None else (None, None)
    provision.put_certs(r, ca_pem if ca_pem is not None else certs.ca_pem(store), cert, key, crl)
    if crl is not None and not m.berth.get("CRL"):
        provision.write_config(r, engine_of(m, crl=True), service_of(m))
        m.raw["Berth"]["CRL"] = True
        save_record(store, m.name, m.raw)
    provision.reload(r, service_of(m))


def _new_server(store: Store, ca: Any, m: Machine, r: Remote) -> tuple[bytes, bytes]:
    f = provision.facts(r)
    sans = certs.server_sans(m.ip, f.hostnames)
    m.raw["Berth"]["ServerSANs"] = sans
    return certs.new_server(ca, m.dir, f.hostnames[0] if f.hostnames else m.ip, sans)


def _berth_machines(store: Store) -> list[Machine]:
    return [e for e in store.all() if isinstance(e, Machine) and e.berth and not e.ssh_only]


def regenerate_certs(cli: CLI, store: Store, names: list[str], client_certs: bool) -> int:
    """A new server certificate for each host, reloaded there. ``client_certs``: a new client certificate
    for the store too, copied to every machine, and the old one revoked on every host."""
    ca = certs.ensure_ca(store)
    for name in names:
        m = store.get(name)
        berth_machine(m)
        print(f"Regenerating TLS certificates for {name}", file=cli.out)
        with Progress(cli, name, m.ip).step("New server certificate", "ssh into the host and look at berthd's log"):
            with remote(m) as r:
                _push(m, r, store, server=_new_server(store, ca, m, r))
            save_record(store, name, m.raw)
    if client_certs:
        old = certs.client_serial(store)
        certs.new_client(store, ca)
        for m in [e for e in store.all() if isinstance(e, Machine)]:
            certs.copy_client(store, m.dir)
            context_for(cli, m)
        crl = certs.revoke(store, ca, [old])
        _push_crl(cli, store, crl)
        print(f"New client certificate {certs.client_serial(store):x}; {old:x} is revoked on every host", file=cli.out)
    return 0


def _push_crl(cli: CLI, store: Store, crl: bytes) -> None:
    for m in _berth_machines(store):
        with Progress(cli, m.name, m.ip).step("Pushing the CRL", f"run 'berth machine revoke' again once {m.name} "
                                              "is reachable: until then it accepts the revoked certificates"):
            with remote(m) as r:
                _push(m, r, store, crl=crl)


def revoke(cli: CLI, store: Store, what: list[str]) -> int:
    from berth.security import pki

    serials = [pki.serial_of(w) for w in what]
    if certs.client_serial(store) in serials:
        raise InvalidParameter("that is this store's own client certificate: 'berth machine regenerate-certs "
                               "--client-certs NAME' replaces it and revokes the old one")
    crl = certs.revoke(store, certs.ensure_ca(store), serials)
    _push_crl(cli, store, crl)
    print(f"revoked {', '.join(f'{s:x}' for s in serials)} on {len(_berth_machines(store))} host(s)", file=cli.out)
    return 0


def rotate_ca(cli: CLI, store: Store) -> int:
    """A new CA for the store, with no moment where a host accepts no client of the store:
    1. every host trusts the old and the new CA (client certificates of either are accepted);
    2. the store's client certificate is issued by the new CA (the machines' directories trust both);
    3. every host gets a server certificate of the new CA;
    4. every host, and the store, trust the new CA only."""
    from berth.security import pki

    d = certs.certs_dir(store)
    certs.ensure_ca(store)
    hosts = _berth_machines(store)
    stage = os.path.join(d, "rotate")
    shutil.rmtree(stage, ignore_errors=True)
    new_ca = pki.init_ca(stage, certs.ca_cn(), days=3650)
    old_pem, new_pem = certs.ca_pem(store), certs.read(os.path.join(stage, "ca.pem"))
    old_crl = certs.crl(store)
    crl = None
    if old_crl is not None:  # a CRL per CA: OpenSSL wants one for the issuer of each client
        crl = old_crl + certs.read(pki.revoke(new_ca, stage, [], days=1095))
    both = old_pem + new_pem
    for m in hosts:
        with Progress(cli, m.name, m.ip).step("Trusting the old and the new CA", "run rotate-ca again"), remote(m) as r:
            _push(m, r, store, ca_pem=both, crl=crl)
    for entry in store.all():
        if isinstance(entry, Machine) and entry.berth:
            certs.write(entry.cert("ca.pem"), both, 0o444)
    certs.new_client(store, new_ca)
    for m in hosts:
        certs.copy_client(store, m.dir, both)
        with Progress(cli, m.name, m.ip).step("Server certificate of the new CA", "run rotate-ca again"), \
                remote(m) as r:
            _push(m, r, store, ca_pem=both, server=_new_server(store, new_ca, m, r), crl=crl)
        save_record(store, m.name, m.raw)
    for name in ("ca.pem", "ca-key.pem", *(["crl.pem"] if crl else [])):
        os.replace(os.path.join(stage, name), os.path.join(d, name))
    shutil.rmtree(stage, ignore_errors=True)
    for m in hosts:
        certs.copy_client(store, m.dir)
        with Progress(cli, m.name, m.ip).step("Trusting the new CA only", "run rotate-ca again"), remote(m) as r:
            _push(m, r, store, crl=certs.crl(store))
        context_for(cli, m)
    print(f"The store's CA is new; {len(hosts)} host(s) trust it alone", file=cli.out)
    return 0


# ---- rm --purge --------------------------------------------------------------------------------------
def purge(cli: CLI, store: Store, name: str) -> None:
    m = store.get(name)
    berth_machine(m)
    with Progress(cli, name, m.ip).step("Removing berth and its data from the host",
                                        "use rm -f to remove the record anyway"):
        with remote(m) as r:
            provision.purge(r, engine_of(m), service_of(m))


def forget(cli: CLI, store: Store, name: str) -> None:
    drop_context(cli, name)
    store.remove(name)


def check_exists(store: Store, name: str) -> None:
    if name not in store.names():
        raise NotFound(f'Host does not exist: "{name}"')
