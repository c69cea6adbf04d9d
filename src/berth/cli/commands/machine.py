"""berth machine ls | env | config | inspect | ip | url | status | active | ssh | scp: the hosts of the
machine store (docker-machine's layout, so hosts docker-machine made are listed and managed too)."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import subprocess
import sys
from typing import Any

from berth.cli import machines
from berth.cli.main import CLI
from berth.cli.output import table
from berth.cli.templates import render
from berth.errors import InvalidParameter, NotFound

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
    rm = sub.add_parser("rm", help="Remove machines from the store (the hosts themselves are left as they are)")
    rm.add_argument("--force", "-f", action="store_true", help="remove a record even when it cannot be read")
    rm.add_argument("-y", action="store_true", dest="yes", help="do not ask for confirmation")
    rm.add_argument("names", nargs="+", metavar="NAME")


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
    if not opts.yes:
        print(f"About to remove {', '.join(opts.names)}\nWARNING: This action deletes the local record of each "
              "host; the hosts themselves are left as they are.\nAre you sure? (y/n): ", end="", file=cli.out,
              flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Aborting", file=cli.err)
            return 1
    for name in opts.names:
        store.remove(name)
        print(f"Successfully removed {name}", file=cli.out)
    return 0


def _active(cli: CLI, store: machines.Store) -> int:
    host = cli.environ.get("DOCKER_HOST", "")
    for entry in store.all():
        if isinstance(entry, machines.Machine) and host and entry.url == host:
            print(entry.name, file=cli.out)
            return 0
    raise NotFound("No active host found")
