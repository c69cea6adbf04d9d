"""berth exec, cp, top, stats, pause, unpause, rename, diff, export, and `berth volume ...`."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import threading
from typing import Any

from berth.cli.attach import copy_frames, pump_stdin
from berth.cli.commands.container import _each
from berth.cli.main import CLI
from berth.cli.output import human_size, table
from berth.cli.templates import render
from berth.errors import InvalidParameter

VERBS = ("exec", "cp", "top", "stats", "pause", "unpause", "rename", "diff", "export", "volume", "df")
ALIASES = {v: v for v in VERBS if v != "df"}


def add_verb_arguments(verb: str, p: argparse.ArgumentParser) -> None:
    if verb == "exec":
        p.add_argument("-i", "--interactive", action="store_true")
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("-e", "--env", action="append", default=[])
        p.add_argument("-w", "--workdir")
        p.add_argument("-u", "--user")
        p.add_argument("container")
        p.add_argument("command", nargs=argparse.REMAINDER)
    elif verb == "cp":
        p.add_argument("source")
        p.add_argument("destination")
    elif verb == "top":
        p.add_argument("container")
        p.add_argument("ps_args", nargs="*")
    elif verb == "stats":
        p.add_argument("containers", nargs="*")
        p.add_argument("--no-stream", action="store_true")
    elif verb in ("pause", "unpause"):
        p.add_argument("containers", nargs="+")
    elif verb == "rename":
        p.add_argument("container")
        p.add_argument("new_name")
    elif verb == "diff":
        p.add_argument("container")
    elif verb == "export":
        p.add_argument("container")
        p.add_argument("-o", "--output")
    elif verb == "volume":
        sub = p.add_subparsers(dest="vverb", required=True, metavar="COMMAND")
        c = sub.add_parser("create")
        c.add_argument("name", nargs="?", default="")
        c.add_argument("--label", action="append", default=[])
        ls = sub.add_parser("ls", aliases=["list"])
        ls.add_argument("-q", "--quiet", action="store_true")
        ls.add_argument("-f", "--filter", action="append", default=[])
        ins = sub.add_parser("inspect")
        ins.add_argument("names", nargs="+")
        ins.add_argument("-f", "--format")
        rm = sub.add_parser("rm", aliases=["remove"])
        rm.add_argument("names", nargs="+")
        rm.add_argument("-f", "--force", action="store_true")
        pr = sub.add_parser("prune")
        pr.add_argument("-a", "--all", action="store_true")
        pr.add_argument("-f", "--force", action="store_true")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        add_verb_arguments(verb, sub.add_parser(verb))


def exec_(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    cmd = o.command[1:] if o.command[:1] == ["--"] else o.command
    if not cmd:
        raise InvalidParameter("exec needs a command")
    ex = c.exec_create(o.container, cmd, stdin=o.interactive, environment=o.env or None, workdir=o.workdir,
                       user=o.user or "")
    if o.detach:
        c.exec_start(ex["Id"], detach=True)
        return 0
    sock = c.exec_start(ex["Id"], socket=True)
    if o.interactive:
        threading.Thread(target=pump_stdin, args=(getattr(sock, "_sock", sock),), daemon=True).start()
    copy_frames(sock)
    return int(c.exec_inspect(ex["Id"])["ExitCode"] or 0)


def _split(spec: str) -> tuple[str | None, str]:
    if ":" in spec and not spec.startswith(("/", ".")):
        name, _, path = spec.partition(":")
        return name, path
    return None, spec


def cp(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    src_ctr, src = _split(o.source)
    dst_ctr, dst = _split(o.destination)
    if (src_ctr is None) == (dst_ctr is None):
        raise InvalidParameter("copying between containers or between local paths is not supported: "
                               "one side must be CONTAINER:PATH")
    if src_ctr is not None:
        chunks, _ = c.get_archive(src_ctr, src)
        buf = io.BytesIO(b"".join(chunks))
        target = dst
        with tarfile.open(fileobj=buf) as tf:
            members = tf.getmembers()
            if os.path.isdir(target):
                tf.extractall(target, filter="data")
            else:
                root = members[0].name.split("/")[0]
                for m in members:
                    m.name = os.path.basename(target) + m.name[len(root):]
                tf.extractall(os.path.dirname(os.path.abspath(target)), members=members, filter="data")
        return 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(src, arcname=os.path.basename(src.rstrip("/")))
    assert dst_ctr is not None
    c.put_archive(dst_ctr, dst, buf.getvalue())
    return 0


def top(cli: CLI, o: argparse.Namespace) -> int:
    res = cli.client().top(o.container, ps_args=" ".join(o.ps_args) or None)
    table(cli.out, res["Titles"], res["Processes"] or [])
    return 0


def stats(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    names = o.containers or [x["Names"][0].lstrip("/") for x in c.containers()]
    rows = []
    for name in names:
        s = c.stats(name, stream=False)
        cpu, pre = s["cpu_stats"], s.get("precpu_stats") or {}
        delta = cpu["cpu_usage"]["total_usage"] - (pre.get("cpu_usage") or {}).get("total_usage", 0)
        sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        pct = delta / sys_delta * cpu.get("online_cpus", 1) * 100 if sys_delta > 0 else 0.0
        mem = s.get("memory_stats") or {}
        rows.append([s["id"][:12], s["name"].lstrip("/"), f"{pct:.2f}%",
                     f"{human_size(mem.get('usage', 0))} / {human_size(mem.get('limit', 0))}",
                     str((s.get("pids_stats") or {}).get("current", 0))])
    table(cli.out, ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"], rows)
    return 0


def diff(cli: CLI, o: argparse.Namespace) -> int:
    for ch in cli.client().diff(o.container) or []:
        print(f"{'CAD'[ch['Kind']]} {ch['Path']}", file=cli.out)
    return 0


def export(cli: CLI, o: argparse.Namespace) -> int:
    if not o.output and cli.out.isatty():
        raise InvalidParameter("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    out = open(o.output, "wb") if o.output else sys.stdout.buffer
    for chunk in cli.client().export(o.container):
        out.write(chunk)
    if o.output:
        out.close()
    return 0


def volume(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    v = o.vverb
    if v == "create":
        labels = dict(x.split("=", 1) if "=" in x else (x, "") for x in o.label)
        print(c.create_volume(o.name or None, labels=labels or None)["Name"], file=cli.out)
    elif v in ("ls", "list"):
        from berth.cli.commands.events import parse_filters

        vols = c.volumes(filters=parse_filters(o.filter) or None).get("Volumes") or []
        if o.quiet:
            for x in vols:
                print(x["Name"], file=cli.out)
        else:
            table(cli.out, ["DRIVER", "VOLUME NAME"], [[x["Driver"], x["Name"]] for x in vols])
    elif v == "inspect":
        items = [c.inspect_volume(n) for n in o.names]
        for item in items if o.format else []:
            print(render(o.format, item), file=cli.out)
        if not o.format:
            print(json.dumps(items, indent=4), file=cli.out)
    elif v in ("rm", "remove"):
        return _each(cli, o.names, lambda n: c.remove_volume(n, force=o.force))
    elif v == "prune":
        res = c.prune_volumes(filters={"all": ["true"]} if o.all else None)
        for name in res.get("VolumesDeleted") or []:
            print(name, file=cli.out)
        print(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0))}", file=cli.out)
    return 0


def df(cli: CLI, o: argparse.Namespace) -> int:
    d = cli.client().df()
    imgs, ctrs, vols = d.get("Images") or [], d.get("Containers") or [], d.get("Volumes") or []
    table(cli.out, ["TYPE", "TOTAL", "ACTIVE", "SIZE"], [
        ["Images", str(len(imgs)), str(sum(1 for i in imgs if i.get("Containers", 0) > 0)),
         human_size(d.get("LayersSize", 0))],
        ["Containers", str(len(ctrs)), str(sum(1 for c in ctrs if c["State"] == "running")),
         human_size(sum(c.get("SizeRw", 0) for c in ctrs))],
        ["Local Volumes", str(len(vols)), str(sum(1 for v in vols if v["UsageData"]["RefCount"])),
         human_size(sum(v["UsageData"]["Size"] for v in vols))]])
    return 0


def run(cli: CLI, o: argparse.Namespace) -> int:
    c = cli.client()
    handlers: dict[str, Any] = {
        "exec": exec_, "cp": cp, "top": top, "stats": stats, "diff": diff, "export": export, "volume": volume,
        "df": df,
        "pause": lambda cli, o: _each(cli, o.containers, c.pause),
        "unpause": lambda cli, o: _each(cli, o.containers, c.unpause),
        "rename": lambda cli, o: c.rename(o.container, o.new_name) or 0,
    }
    return int(handlers[o.verb](cli, o))
