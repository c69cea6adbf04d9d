"""berth run/create/start/ps/logs/stop/kill/restart/rm/wait and `berth container ...`.

`run` does what the docker CLI does: create, register the wait (next-exit, or removed with --rm)
and attach before start, so no output and no exit is missed; stream the output (demultiplexed);
copy stdin with -i and half-close when it ends; exit with the container's code. Errors of run itself
exit 125, a command that cannot be found 127, one that cannot be executed 126.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

import docker.errors

from berth.cli.attach import copy_frames, proxy_signals, pump_stdin
from berth.cli.commands.events import parse_filters
from berth.cli.main import CLI
from berth.cli.output import human_size, since, table
from berth.cli.templates import render
from berth.errors import BerthError, InvalidParameter

VERBS = ("run", "create", "start", "ls", "logs", "stop", "kill", "restart", "rm", "wait", "inspect", "prune", "attach")
ALIASES = {"run": "run", "create": "create", "start": "start", "ps": "ls", "logs": "logs", "stop": "stop",
           "kill": "kill", "restart": "restart", "rm": "rm", "wait": "wait", "attach": "attach"}


class RunError(BerthError):
    """A failure of `run` itself (exit 125), or of its command (126/127)."""

    def __init__(self, message: str, code: int = 125) -> None:
        super().__init__(message)
        self.code = code


def _size(text: str) -> int:
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--mount", action="append", default=[])
    p.add_argument("--tmpfs", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("-m", "--memory")
    p.add_argument("--cpus", type=float)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--network", "--net", default="")
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("--mac-address")
    p.add_argument("--network-alias", "--net-alias", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", "--dns-opt", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--domainname")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("-h", "--hostname")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=int)
    p.add_argument("--runtime")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--rm", action="store_true")


def add_verb_arguments(verb: str, p: argparse.ArgumentParser) -> None:
    if verb in ("run", "create"):
        _create_args(p)
        if verb == "run":
            p.add_argument("-d", "--detach", action="store_true")
    elif verb == "start":
        p.add_argument("containers", nargs="+")
        p.add_argument("-a", "--attach", action="store_true")
    elif verb == "ls":
        p.add_argument("-a", "--all", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("-n", "--last", type=int, default=-1)
        p.add_argument("-l", "--latest", action="store_true")
        p.add_argument("--no-trunc", action="store_true")
        p.add_argument("-f", "--filter", action="append", default=[])
        p.add_argument("--format")
    elif verb == "logs":
        p.add_argument("container")
        p.add_argument("-f", "--follow", action="store_true")
        p.add_argument("-t", "--timestamps", action="store_true")
        p.add_argument("-n", "--tail", default="all")
        p.add_argument("--since")
        p.add_argument("--until")
    elif verb in ("stop", "restart"):
        p.add_argument("containers", nargs="+")
        p.add_argument("-t", "--time", type=int)
        p.add_argument("-s", "--signal")
    elif verb == "kill":
        p.add_argument("containers", nargs="+")
        p.add_argument("-s", "--signal", default="KILL")
    elif verb == "rm":
        p.add_argument("containers", nargs="+")
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("-v", "--volumes", action="store_true")
    elif verb in ("wait", "inspect"):
        p.add_argument("containers", nargs="+")
        if verb == "inspect":
            p.add_argument("-f", "--format")
    elif verb == "prune":
        p.add_argument("-f", "--force", action="store_true")
    elif verb == "attach":
        p.add_argument("container")
        p.add_argument("--no-stdin", action="store_true")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        add_verb_arguments(verb, sub.add_parser(verb, aliases=["list", "ps"] if verb == "ls" else [],
                                                conflict_handler="resolve"))


def _body(o: argparse.Namespace, detach: bool) -> dict[str, Any]:
    env = list(o.env)
    for path in o.env_file:
        with open(path) as f:
            env += [line.strip() for line in f if line.strip() and not line.startswith("#")]
    hc: dict[str, Any] = {"AutoRemove": o.rm, "ReadonlyRootfs": o.read_only, "NetworkMode": o.network or "default"}
    if o.volume:
        hc["Binds"] = o.volume
    if o.mount:
        mounts = []
        for spec in o.mount:
            kv = dict(item.split("=", 1) if "=" in item else (item, "true") for item in spec.split(","))
            mounts.append({"Type": kv.get("type", "volume"), "Source": kv.get("source") or kv.get("src", ""),
                           "Target": kv.get("target") or kv.get("destination") or kv.get("dst", ""),
                           "ReadOnly": kv.get("readonly", kv.get("ro", "false")) in ("true", "1", "")})
        hc["Mounts"] = mounts
    if o.tmpfs:
        hc["Tmpfs"] = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in o.tmpfs}
    if o.memory:
        hc["Memory"] = _size(o.memory)
    if o.cpus:
        hc["NanoCpus"] = int(o.cpus * 1e9)
    if o.pids_limit:
        hc["PidsLimit"] = o.pids_limit
    if o.runtime:
        hc["Runtime"] = o.runtime
    exposed, bindings = parse_publish(o.publish, o.expose)
    if bindings:
        hc["PortBindings"] = bindings
    if o.publish_all:
        hc["PublishAllPorts"] = True
    for key, value in (("Dns", o.dns), ("DnsSearch", o.dns_search), ("DnsOptions", o.dns_option),
                       ("ExtraHosts", o.add_host), ("Links", o.link)):
        if value:
            hc[key] = value
    endpoint: dict[str, Any] = {}
    if o.ip or o.ip6:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", o.ip), ("IPv6Address", o.ip6)) if v}
    if o.network_alias:
        endpoint["Aliases"] = o.network_alias
    if o.mac_address:
        endpoint["MacAddress"] = o.mac_address
    body: dict[str, Any] = {"Image": o.image, "Env": env, "HostConfig": hc,
                            "Labels": dict(lbl.split("=", 1) if "=" in lbl else (lbl, "") for lbl in o.label),
                            "OpenStdin": o.interactive, "StdinOnce": o.interactive and not detach,
                            "AttachStdin": o.interactive and not detach, "AttachStdout": not detach,
                            "AttachStderr": not detach}
    if exposed:
        body["ExposedPorts"] = exposed
    if endpoint:
        body["NetworkingConfig"] = {"EndpointsConfig": {o.network or "bridge": endpoint}}
    if o.mac_address:
        body["MacAddress"] = o.mac_address
    if o.domainname:
        body["Domainname"] = o.domainname
    command = o.command[1:] if o.command[:1] == ["--"] else o.command
    if command:
        body["Cmd"] = command
    if o.entrypoint is not None:
        body["Entrypoint"] = [o.entrypoint] if o.entrypoint else []
    for key, value in (("WorkingDir", o.workdir), ("User", o.user), ("Hostname", o.hostname),
                       ("StopSignal", o.stop_signal), ("StopTimeout", o.stop_timeout)):
        if value is not None:
            body[key] = value
    return body


def format_ports(ports: list[dict[str, Any]]) -> str:
    """docker ps's PORTS column: 127.0.0.1:8080->80/tcp, [::]:8080->80/tcp, 99/tcp."""
    out = []
    for p in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""), p.get("IP", ""))):
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}")
        else:
            out.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(out)


def parse_publish(publish: list[str], expose: list[str]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """docker's -p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO] (IPv6 hosts in brackets, port ranges) and
    --expose PORT[/PROTO]: (ExposedPorts, PortBindings)."""
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}

    def ports(text: str) -> list[int]:
        lo, _, hi = text.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise InvalidParameter(f"invalid containerPort: {text}")
        return list(range(int(lo), int(hi or lo) + 1))

    for e in expose:
        port, _, proto = e.partition("/")
        for n in ports(port):
            exposed[f"{n}/{proto or 'tcp'}"] = {}
    for spec in publish:
        rest, _, proto = spec.partition("/")
        proto = proto or "tcp"
        host_ip = ""
        if rest.startswith("["):
            host_ip, _, rest = rest[1:].partition("]")
            rest = rest.lstrip(":")
        parts = rest.split(":")
        if len(parts) == 3:
            host_ip, host_port, cport = parts
        elif len(parts) == 2:
            host_port, cport = parts
        elif len(parts) == 1:
            host_port, cport = "", parts[0]
        else:
            raise InvalidParameter(f"invalid port format: {spec}")
        cports = ports(cport)
        hports = ports(host_port) if host_port else []
        if hports and len(hports) != len(cports) and len(cports) != 1:
            raise InvalidParameter(f"invalid ranges specified for container and host Ports: {cport} and {host_port}")
        for i, n in enumerate(cports):
            key = f"{n}/{proto}"
            exposed[key] = {}
            hp = (str(hports[i]) if len(hports) == len(cports) else host_port) if hports else ""
            bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": hp})
    return exposed, bindings


def _create(cli: CLI, o: argparse.Namespace, detach: bool) -> str:
    client = cli.client()
    try:
        res = client._result(client._post_json(client._url("/containers/create"), data=_body(o, detach),
                                               params={"name": o.name} if o.name else None), True)
    except docker.errors.APIError as exc:
        raise RunError(f"Error response from daemon: {exc.explanation}") from None
    return str(res["Id"])


def run_container(cli: CLI, o: argparse.Namespace) -> int:
    client = cli.client()
    cid = _create(cli, o, o.detach)
    if o.detach:
        try:
            client.start(cid)
        except docker.errors.APIError as exc:
            raise _start_error(exc) from None
        print(cid, file=cli.out)
        return 0
    result: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: result.update(client.wait(cid, condition="removed" if o.rm
                                                                       else "next-exit")), daemon=True)
    waiter.start()
    sock = client.attach_socket(cid, params={"stdin": int(o.interactive), "stdout": 1, "stderr": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)
    try:
        client.start(cid)
    except docker.errors.APIError as exc:
        raw.close()
        if o.rm:
            waiter.join(30)
        raise _start_error(exc) from None
    if o.interactive:
        threading.Thread(target=pump_stdin, args=(raw,), daemon=True).start()
    proxy_signals(client, cid)
    copy_frames(sock)
    waiter.join()
    return int(result.get("StatusCode", 125))


def _start_error(exc: docker.errors.APIError) -> RunError:
    text = str(exc.explanation)
    code = 127 if "executable file not found" in text or "no such file or directory" in text else \
        126 if "permission denied" in text else 125
    return RunError(f"Error response from daemon: {text}", code)


def create(cli: CLI, o: argparse.Namespace) -> int:
    print(_create(cli, o, detach=True), file=cli.out)
    return 0


def _each(cli: CLI, names: list[str], fn: Any) -> int:
    failed = False
    for name in names:
        try:
            fn(name)
            print(name, file=cli.out)
        except docker.errors.APIError as exc:
            print(f"Error response from daemon: {exc.explanation}", file=cli.err)
            failed = True
    return 1 if failed else 0


def start(cli: CLI, o: argparse.Namespace) -> int:
    return _each(cli, o.containers, cli.client().start)


def stop(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    params = {k: v for k, v in (("t", o.time), ("signal", o.signal)) if v is not None}
    return _each(cli, o.containers, lambda n: c._raise_for_status(c._post(c._url("/containers/{0}/stop", n),
                                                                          params=params, timeout=None)))


def restart(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    params = {k: v for k, v in (("t", o.time), ("signal", o.signal)) if v is not None}
    return _each(cli, o.containers, lambda n: c._raise_for_status(c._post(c._url("/containers/{0}/restart", n),
                                                                          params=params, timeout=None)))


def kill(cli: CLI, o: argparse.Namespace) -> int:
    return _each(cli, o.containers, lambda n: cli.client().kill(n, signal=o.signal))


def rm(cli: CLI, o: argparse.Namespace) -> int:
    return _each(cli, o.containers, lambda n: cli.client().remove_container(n, force=o.force, v=o.volumes))


def wait(cli: CLI, o: argparse.Namespace) -> int:
    failed = False
    for name in o.containers:
        try:
            print(cli.client().wait(name)["StatusCode"], file=cli.out)
        except docker.errors.APIError as exc:
            print(f"Error response from daemon: {exc.explanation}", file=cli.err)
            failed = True
    return 1 if failed else 0


def ls(cli: CLI, o: argparse.Namespace) -> int:
    limit = 1 if o.latest else o.last
    ctrs = cli.client().containers(all=o.all, limit=limit, filters=parse_filters(o.filter) or None)
    rows = []
    for c in ctrs:
        cmd = c["Command"] if o.no_trunc or len(c["Command"]) <= 20 else c["Command"][:19] + "…"
        rows.append({"ID": c["Id"] if o.no_trunc else c["Id"][:12], "Image": c["Image"], "Command": f'"{cmd}"',
                     "CreatedAt": str(c["Created"]), "RunningFor": since(c["Created"]), "Status": c["Status"],
                     "State": c["State"], "Ports": format_ports(c.get("Ports") or []), "Names": ",".join(n.lstrip("/") for n in c["Names"]),
                     "Labels": ",".join(f"{k}={v}" for k, v in (c.get("Labels") or {}).items())})
    if o.quiet:
        for r in rows:
            print(r["ID"], file=cli.out)
    elif o.format:
        for r in rows:
            print(json.dumps(r) if o.format == "json" else render(o.format, r), file=cli.out)
    else:
        table(cli.out, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
              [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]] for r in rows])
    return 0


def logs(cli: CLI, o: argparse.Namespace) -> int:
    from berth.cli.commands.events import to_timestamp

    c = cli.client()
    params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(o.follow), "timestamps": int(o.timestamps),
                              "tail": o.tail}
    for key in ("since", "until"):
        value = to_timestamp(getattr(o, key))
        if value:
            params[key] = value
    resp = c._get(c._url("/containers/{0}/logs", o.container), params=params, stream=True)
    c._raise_for_status(resp)
    body = resp.raw  # urllib3 takes the chunked framing off; what is left is stdcopy frames
    while header := body.read(8):
        if len(header) < 8:
            break
        size = int.from_bytes(header[4:8], "big")
        data = body.read(size)
        out = sys.stdout.buffer if header[0] == 1 else sys.stderr.buffer
        out.write(data)
        out.flush()
    return 0


def inspect(cli: CLI, o: argparse.Namespace) -> int:
    out, failed = [], False
    for name in o.containers:
        try:
            out.append(cli.client().inspect_container(name))
        except docker.errors.NotFound:
            print(f"Error: No such container: {name}", file=cli.err)
            failed = True
    if o.format:
        for item in out:
            print(render(o.format, item), file=cli.out)
    else:
        print(json.dumps(out, indent=4), file=cli.out)
    return 1 if failed else 0


def prune(cli: CLI, o: argparse.Namespace) -> int:
    if not o.force:
        print("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ",
              end="", file=cli.out, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = cli.client().prune_containers()
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:\n" + "\n".join(deleted) + "\n", file=cli.out)
    print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}", file=cli.out)
    return 0


def attach(cli: CLI, o: argparse.Namespace) -> int:
    """Join the container's output (and its stdin when it was created with -i) until it stops."""
    client = cli.client()
    info = client.inspect_container(o.container)
    stdin = bool(info["Config"].get("OpenStdin")) and not o.no_stdin
    result: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: result.update(client.wait(info["Id"])), daemon=True)
    waiter.start()
    sock = client.attach_socket(info["Id"], params={"stdin": int(stdin), "stdout": 1, "stderr": 1, "stream": 1})
    if stdin:
        threading.Thread(target=pump_stdin, args=(getattr(sock, "_sock", sock),), daemon=True).start()
    proxy_signals(client, info["Id"])
    copy_frames(sock, tty=bool(info["Config"].get("Tty")))
    waiter.join()
    return int(result.get("StatusCode", 0))


HANDLERS = {"run": run_container, "attach": attach, "create": create, "start": start, "ls": ls, "list": ls, "ps": ls, "logs": logs,
            "stop": stop, "kill": kill, "restart": restart, "rm": rm, "wait": wait, "inspect": inspect,
            "prune": prune}


def run(cli: CLI, opts: argparse.Namespace) -> int:
    try:
        return HANDLERS[opts.verb](cli, opts)
    except RunError as exc:
        print(exc.message, file=cli.err)
        return exc.code
    except InvalidParameter:
        raise

