"""`berth network create|ls|inspect|rm|prune|connect|disconnect` and `berth port`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from berth.cli.commands.container import _each
from berth.cli.main import CLI
from berth.cli.output import table
from berth.cli.templates import render

VERBS = ("network", "port")
ALIASES = {"port": "port"}


def add_verb_arguments(verb: str, p: argparse.ArgumentParser) -> None:
    if verb == "port":
        p.add_argument("container")
        p.add_argument("private_port", nargs="?")
        return
    sub = p.add_subparsers(dest="nverb", required=True, metavar="COMMAND")
    c = sub.add_parser("create")
    c.add_argument("name")
    c.add_argument("-d", "--driver", default="bridge")
    c.add_argument("-o", "--opt", action="append", default=[])
    c.add_argument("--subnet", action="append", default=[])
    c.add_argument("--ip-range", action="append", default=[])
    c.add_argument("--gateway", action="append", default=[])
    c.add_argument("--aux-address", action="append", default=[])
    c.add_argument("--ipv6", action="store_true")
    c.add_argument("--internal", action="store_true")
    c.add_argument("--attachable", action="store_true")
    c.add_argument("--label", action="append", default=[])
    c.add_argument("--ipam-driver", default="default")
    ls = sub.add_parser("ls", aliases=["list"])
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[])
    ls.add_argument("--no-trunc", action="store_true")
    ins = sub.add_parser("inspect")
    ins.add_argument("names", nargs="+")
    ins.add_argument("-f", "--format")
    rm = sub.add_parser("rm", aliases=["remove"])
    rm.add_argument("names", nargs="+")
    rm.add_argument("-f", "--force", action="store_true")
    pr = sub.add_parser("prune")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("--filter", action="append", default=[])
    con = sub.add_parser("connect")
    con.add_argument("network")
    con.add_argument("container")
    con.add_argument("--ip")
    con.add_argument("--ip6")
    con.add_argument("--alias", action="append", default=[])
    con.add_argument("--link", action="append", default=[])
    dis = sub.add_parser("disconnect")
    dis.add_argument("network")
    dis.add_argument("container")
    dis.add_argument("-f", "--force", action="store_true")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_verb_arguments("network", p)
    p.set_defaults(verb="network")


def ipam_config(o: argparse.Namespace) -> list[dict[str, Any]]:
    """--subnet/--ip-range/--gateway/--aux-address grouped per subnet, as docker's CLI groups them."""
    import ipaddress

    from berth.errors import InvalidParameter

    pools: list[dict[str, Any]] = [{"Subnet": s} for s in o.subnet]

    def owner(addr: str, what: str) -> dict[str, Any]:
        try:
            ip = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise InvalidParameter(f"invalid {what}: {addr}") from None
        for p in pools:
            net = ipaddress.ip_network(p["Subnet"], strict=False)
            if net.version == ip.version and ip.subnet_of(net):  # type: ignore[arg-type]
                return p
        raise InvalidParameter(f"no matching subnet for {what} {addr}")

    for r in o.ip_range:
        owner(r, "range")["IPRange"] = r
    for g in o.gateway:
        owner(g, "gateway")["Gateway"] = g
    for a in o.aux_address:
        name, _, addr = a.partition("=")
        owner(addr, "aux-address").setdefault("AuxiliaryAddresses", {})[name] = addr
    return pools


def network(cli: CLI, o: argparse.Namespace) -> int:
    from berth.cli.commands.events import parse_filters

    c = cli.client()
    v = o.nverb
    if v == "create":
        opts = dict(x.split("=", 1) if "=" in x else (x, "") for x in o.opt)
        labels = dict(x.split("=", 1) if "=" in x else (x, "") for x in o.label)
        body = {"Name": o.name, "Driver": o.driver, "Options": opts, "Labels": labels, "EnableIPv6": o.ipv6,
                "Internal": o.internal, "Attachable": o.attachable, "CheckDuplicate": True,
                "IPAM": {"Driver": o.ipam_driver, "Config": ipam_config(o), "Options": {}}}
        res = c._result(c._post_json(c._url("/networks/create"), data=body), True)
        print(res["Id"], file=cli.out)
    elif v in ("ls", "list"):
        nets = c.networks(filters=parse_filters(o.filter) or None)
        if o.quiet:
            for n in nets:
                print(n["Id"] if o.no_trunc else n["Id"][:12], file=cli.out)
        else:
            table(cli.out, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                  [[n["Id"] if o.no_trunc else n["Id"][:12], n["Name"], n["Driver"], n["Scope"]]
                   for n in sorted(nets, key=lambda n: n["Name"])])
    elif v == "inspect":
        items = [c.inspect_network(n) for n in o.names]
        for item in items if o.format else []:
            print(render(o.format, item), file=cli.out)
        if not o.format:
            print(json.dumps(items, indent=4), file=cli.out)
    elif v in ("rm", "remove"):
        return _each(cli, o.names, c.remove_network)
    elif v == "prune":
        res = c.prune_networks(filters=parse_filters(o.filter) or None)
        deleted = res.get("NetworksDeleted") or []
        if deleted:
            print("Deleted Networks:", file=cli.out)
            for name in deleted:
                print(name, file=cli.out)
    elif v == "connect":
        c.connect_container_to_network(o.container, o.network, ipv4_address=o.ip, ipv6_address=o.ip6,
                                       aliases=o.alias or None, links=o.link or None)
    elif v == "disconnect":
        c.disconnect_container_from_network(o.container, o.network, force=o.force)
    return 0


def port(cli: CLI, o: argparse.Namespace) -> int:
    from berth.errors import NotFound

    ports = cli.client().inspect_container(o.container)["NetworkSettings"].get("Ports") or {}
    lines = []
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        if o.private_port and key not in (o.private_port, f"{o.private_port}/tcp"):
            continue
        for b in ports[key] or []:
            host = f"[{b['HostIp']}]" if ":" in b["HostIp"] else b["HostIp"]
            lines.append(f"{b['HostIp'] and host}:{b['HostPort']}" if o.private_port else
                         f"{key} -> {host}:{b['HostPort']}")
    if o.private_port and not lines:
        raise NotFound(f"No public port '{o.private_port}' published for {o.container}")
    for line in lines:
        print(line, file=cli.out)
    return 0


def run(cli: CLI, o: argparse.Namespace) -> int:
    return network(cli, o) if o.verb == "network" else port(cli, o)
