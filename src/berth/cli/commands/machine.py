"""berth machine: the hosts of the machine store (docker-machine's layout, so hosts docker-machine made
are listed and managed too). create, regenerate-certs, start, stop, restart, upgrade, rm --purge,
rotate-ca and revoke change hosts (``berth.cli.machineops``); the rest reads the store and asks hosts."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import subprocess
import sys
from typing import Any

from berth.cli import machineops, machines
from berth.cli.main import CLI
from berth.cli.output import table
from berth.cli.templates import render
from berth.errors import BerthError, InvalidParameter, NotFound

LS_FILTERS = ("driver", "state", "name", "label")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-path", "-s", help="the machine store (default ~/.docker/machine, or "
                   "MACHINE_STORAGE_PATH)")
    sub = p.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="List machines")
    ls.add_argument("--filter", "-f", action="append", default=[], help="driver=, state=, name= (repeatable)")
    ls.add_argument("--format", help="a Go template ({{.Name}} {{.Active}} {{.DriverName}} {{.State}} {{.URL}} "
                    "{{.DockerVersion}} {{.Error}})")
    ls.add_argument("--quiet", "-q", action="store_true", help="names only")
    ls.add_argument("--timeout", "-t", type=float, default=10, help="seconds to wait for each host (default 10)")
    env = sub.add_parser("env", help="Print the commands that point docker at a machine")
    env.add_argument("--shell", choices=machines.SHELLS, default="bash")
    env.add_argument("--unset", "-u", action="store_true", help="print the commands that undo them")
    env.add_argument("--no-proxy", action="store_true", help="add the machine's address to NO_PROXY")
    env.add_argument("name", nargs="?")
    for verb, what in (("config", "Print the docker CLI's flags for a machine"), ("ip", "Print a machine's IP"),
                       ("url", "Print a machine's engine URL"), ("status", "Print a machine's state")):
        sub.add_parser(verb, help=what).add_argument("name")
    ins = sub.add_parser("inspect", help="Print a machine's record as JSON")
    ins.add_argument("--format", "-f", help="a Go template")
    ins.add_argument("name")
    sub.add_parser("active", help="Print the machine DOCKER_HOST points at").add_argument(
        "--timeout", "-t", type=float, default=10)
    ssh = sub.add_parser("ssh", help="Log into a machine, or run a command there (its exit code is ours)")
    ssh.add_argument("name")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    scp = sub.add_parser("scp", help="Copy files between machines and this host ([NAME:]SRC [NAME:]DST)")
    scp.add_argument("--recursive", "-r", action="store_true")
    scp.add_argument("paths", nargs=2, metavar="PATH")
    rm = sub.add_parser("rm", help="Remove machines from the store (with --purge, berth from the hosts too)")
    rm.add_argument("--force", "-f", action="store_true", help="remove a record even when it cannot be read or "
                    "the host cannot be purged")
    rm.add_argument("-y", action="store_true", dest="yes", help="do not ask for confirmation")
    rm.add_argument("--purge", action="store_true", help="also remove berth, its containers and its data from the host")
    rm.add_argument("names", nargs="+", metavar="NAME")
    _create_arguments(sub)
    rg = sub.add_parser("regenerate-certs", help="New TLS server certificates, reloaded by the hosts without a restart")
    rg.add_argument("--client-certs", action="store_true", help="also a new client certificate for the store; the "
                    "old one is revoked on every host")
    rg.add_argument("--force", "-f", action="store_true", help="do not ask for confirmation")
    rg.add_argument("names", nargs="+", metavar="NAME")
    for verb, what in (("start", "Start the engine of machines"), ("stop", "Stop the engine of machines"),
                       ("restart", "Restart the engine of machines"),
                       ("upgrade", "Upgrade berth on machines to this CLI's version")):
        sub.add_parser(verb, help=what).add_argument("names", nargs="+", metavar="NAME")
    sub.add_parser("rotate-ca", help="Replace the store's CA on every machine, with no moment where a host refuses "
                   "the store's client")
    rv = sub.add_parser("revoke", help="Revoke client certificates on every machine of the store (a CRL)")
    rv.add_argument("what", nargs="+", metavar="CERT|SERIAL", help="a certificate file or a serial number in hex")


def _create_arguments(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("create", help="Provision a host over SSH: install berth, its certificates, and start it")
    c.add_argument("--driver", "-d", default="generic", help="generic (an existing host reached over SSH)")
    c.add_argument("--generic-ip-address", required=True, help="the host's IP address or name")
    c.add_argument("--generic-ssh-user", default="root", help="SSH user (root, or one that may sudo -n)")
    c.add_argument("--generic-ssh-key", default="", help="SSH private key (copied into the store)")
    c.add_argument("--generic-ssh-port", type=int, default=22)
    c.add_argument("--generic-engine-port", type=int, default=machines.DEFAULT_ENGINE_PORT,
                   help="the engine's TLS port (default 2376)")
    c.add_argument("--engine-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="a berthd flag for the host (dns=10.0.0.2 gives --dns=10.0.0.2; repeatable)")
    c.add_argument("--engine-label", action="append", default=[], metavar="KEY=VALUE", help="an engine label")
    c.add_argument("--ssh-only", action="store_true", help="no TCP port at all: the engine is reached through "
                   "ssh:// (berth system dial-stdio)")
    c.add_argument("name")


def run(cli: CLI, opts: argparse.Namespace) -> int:
    store = machines.Store(opts.storage_path or machines.store_path(cli.environ))
    sub = opts.sub
    if sub == "ls":
        return _ls(cli, store, opts)
    if sub == "active":
        return _active(cli, store)
    if sub == "env":
        if opts.unset:
            lines = machines.unset_lines(opts.shell, opts.no_proxy)
        else:
            if not opts.name:
                raise InvalidParameter("Error: No machine name(s) specified and no \"default\" machine exists")
            m = store.get(opts.name)
            proxy = cli.environ.get("NO_PROXY", cli.environ.get("no_proxy", "")) if opts.no_proxy else None
            lines = machines.env_lines(m, opts.shell, proxy)
        print("\n".join(lines), file=cli.out)
        return 0
    if sub == "rm":
        return _rm(cli, store, opts)
    if sub == "create":
        return machineops.create(cli, store, opts)
    if sub in ("start", "stop", "restart"):
        return machineops.service(cli, store, opts.names, sub)
    if sub == "upgrade":
        return machineops.upgrade(cli, store, opts.names)
    if sub == "regenerate-certs":
        if not opts.force and not _confirm(cli, "Regenerate TLS machine certs?  Warning: this is irreversible."):
            return 1
        return machineops.regenerate_certs(cli, store, opts.names, opts.client_certs)
    if sub == "rotate-ca":
        return machineops.rotate_ca(cli, store)
    if sub == "revoke":
        return machineops.revoke(cli, store, opts.what)
    if sub == "scp":
        return _run(machines.scp_argv(store, opts.paths, opts.recursive))
    m = store.get(opts.name)
    if sub == "ssh":
        return _run(machines.ssh_argv(m, opts.command, tty=not opts.command and sys.stdin.isatty()))
    if sub == "config":
        print("\n".join(machines.config_flags(m)), file=cli.out)
    elif sub == "ip":
        print(m.ip, file=cli.out)
    elif sub == "url":
        print(m.url, file=cli.out)
    elif sub == "status":
        print(machines.status(m, 10).state, file=cli.out)
    elif sub == "inspect":
        if opts.format:
            print(render(opts.format, m.raw), file=cli.out)
        else:
            print(json.dumps(m.raw, indent=4), file=cli.out)
    return 0


def _run(argv: list[str]) -> int:
    """Run OpenSSH's client in our place: the terminal is its, and so is the exit code."""
    if shutil.which(argv[0]) is None:
        raise NotFound(f"{argv[0]} is not installed (apt-get install openssh-client)")
    return subprocess.run(argv).returncode


def _row(cli: CLI, entry: machines.Machine | tuple[str, str], timeout: float) -> dict[str, Any]:
    if isinstance(entry, tuple):
        return {"Name": entry[0], "Active": "-", "DriverName": "", "State": "Error", "URL": "", "DockerVersion": "",
                "Error": entry[1]}
    st = machines.status(entry, timeout)
    active = "*" if cli.environ.get("DOCKER_HOST") == entry.url and st.state == "Running" else "-"
    return {"Name": entry.name, "Active": active, "DriverName": entry.driver, "State": st.state, "URL": entry.url,
            "DockerVersion": st.version, "Error": st.error}


def _rows(cli: CLI, store: machines.Store, timeout: float) -> list[dict[str, Any]]:
    """Every host asked at once (each within ``timeout``), in name order."""
    entries = store.all()
    if not entries:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(entries))) as pool:
        return list(pool.map(lambda e: _row(cli, e, timeout), entries))


def _matches(row: dict[str, Any], filters: list[str]) -> bool:
    wanted: dict[str, list[str]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq or key not in LS_FILTERS:
            raise InvalidParameter(f"Unsupported filter key '{key}'")
        wanted.setdefault(key, []).append(value)
    fields = {"driver": row["DriverName"], "state": row["State"], "name": row["Name"]}
    return all(any(v.lower() == str(fields.get(k, "")).lower() for v in vs) for k, vs in wanted.items()
               if k != "label")


def _ls(cli: CLI, store: machines.Store, opts: argparse.Namespace) -> int:
    rows = [r for r in _rows(cli, store, opts.timeout) if _matches(r, opts.filter)]
    if opts.quiet:
        for r in rows:
            print(r["Name"], file=cli.out)
    elif opts.format:
        for r in rows:
            print(render(opts.format, r), file=cli.out)
    else:
        table(cli.out, ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "DOCKER", "ERRORS"],
              [[r["Name"], r["Active"], r["DriverName"], r["State"], r["URL"], r["DockerVersion"], r["Error"]]
               for r in rows])
    return 0


def _rm(cli: CLI, store: machines.Store, opts: argparse.Namespace) -> int:
    for name in opts.names:
        if not opts.force:
            store.get(name)  # an unreadable record is kept unless forced
    what = ("berth, its containers and its data are removed from each host too" if opts.purge
            else "the hosts themselves are left as they are")
    if not opts.yes and not _confirm(cli, f"About to remove {', '.join(opts.names)}\nWARNING: This action deletes "
                                          f"the local record of each host; {what}."):
        return 1
    failed = 0
    for name in opts.names:
        if opts.purge:
            try:
                machineops.purge(cli, store, name)
            except BerthError as exc:
                if not opts.force:
                    print(f"Error removing host {name!r}: {exc.message}", file=cli.err)
                    failed = 1
                    continue
        machineops.forget(cli, store, name)
        print(f"Successfully removed {name}", file=cli.out)
    return failed


def _confirm(cli: CLI, question: str) -> bool:
    print(f"{question}\nAre you sure? (y/n): ", end="", file=cli.out, flush=True)
    if sys.stdin.readline().strip().lower() in ("y", "yes"):
        return True
    print("Aborting", file=cli.err)
    return False


def _active(cli: CLI, store: machines.Store) -> int:
    host = cli.environ.get("DOCKER_HOST", "")
    for entry in store.all():
        if isinstance(entry, machines.Machine) and host and entry.url == host:
            print(entry.name, file=cli.out)
            return 0
    raise NotFound("No active host found")
