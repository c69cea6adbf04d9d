"""berth audit verify | tail | search: check and read berthd's audit log (on this host, from its files)."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from berth.cli.main import CLI
from berth.security import audit

DEFAULT_LOG = "/var/lib/berth/audit/audit.log"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    v = sub.add_parser("verify", help="Check the chain and the signatures: exit 0 when intact, 1 naming the "
                                      "first bad record")
    v.add_argument("path", nargs="?", default=DEFAULT_LOG, metavar="PATH", help=f"the log (default {DEFAULT_LOG})")
    v.add_argument("--key", help="the public key (default audit-key.pub beside the log)")
    for name, help_ in (("tail", "Print the last records (and follow with -f)"),
                        ("search", "Print the records that match every filter given")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("path", nargs="?", default=DEFAULT_LOG, metavar="PATH", help=f"the log (default {DEFAULT_LOG})")
        s.add_argument("--principal", help="unix:alice(1000), tls:CN=bob… (a substring)")
        s.add_argument("--action", help="container.create, or a prefix: container.")
        s.add_argument("--container", help="a container's ID (a prefix) or name in the path")
        s.add_argument("--decision", choices=["allow", "deny"])
        s.add_argument("--kind", choices=["request", "daemon", "checkpoint"])
        s.add_argument("--json", action="store_true", help="print the records as they are (JSON lines)")
        if name == "tail":
            s.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10)")
            s.add_argument("-f", "--follow", action="store_true", help="then print new records as they come")


def _matches(rec: dict[str, Any], o: argparse.Namespace) -> bool:
    if o.principal and o.principal not in str(rec.get("principal", "")):
        return False
    if o.action and not str(rec.get("action", "")).startswith(o.action):
        return False
    if o.decision and rec.get("decision") != o.decision:
        return False
    if o.kind and rec.get("kind") != o.kind:
        return False
    if o.container:
        where = f"{rec.get('path', '')} {rec.get('resource', '')} {rec.get('query', '')}"
        if o.container not in where:
            return False
    return True


def _text(rec: dict[str, Any]) -> str:
    kind = rec.get("kind")
    if kind == "request":
        decision = rec.get("decision", "-")
        rule = f" ({rec['rule']})" if rec.get("rule") else ""
        query = f"?{rec['query']}" if rec.get("query") else ""
        return (f"{rec.get('seq'):>8} {rec.get('time')} {rec.get('principal')} {rec.get('method')} "
                f"{rec.get('path')}{query} -> {rec.get('status')} {decision}{rule} {rec.get('us')} µs")
    extra = {k: v for k, v in rec.items() if k not in ("seq", "time", "kind", "prev", "sig", "key")}
    return f"{rec.get('seq'):>8} {rec.get('time')} {kind} {json.dumps(extra)}"


def _print(cli: CLI, recs: Iterable[dict[str, Any]], as_json: bool) -> None:
    for rec in recs:
        print(json.dumps(rec, separators=(",", ":")) if as_json else _text(rec), file=cli.out, flush=True)


def _follow(path: str, after: int) -> Iterator[dict[str, Any]]:
    """Records with seq > ``after`` as they are written: the file is read from where it was left,
    and reopened from its start when it is rotated (another inode at the path)."""
    f = None
    ino = -1
    rest = b""
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        if st is not None and (f is None or st.st_ino != ino):
            if f is not None:
                f.close()
            f, ino, rest = open(path, "rb"), st.st_ino, b""
        if f is not None:
            rest += f.read(1 << 20)
            *lines, rest = rest.split(b"\n")
            for raw in lines:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and int(rec.get("seq", 0)) > after:
                    after = int(rec["seq"])
                    yield rec
            if lines:
                continue
        time.sleep(0.2)


def run(cli: CLI, opts: argparse.Namespace) -> int:
    if opts.sub == "verify":
        report = audit.verify(opts.path, opts.key)
        if report.ok:
            print(f"intact: {report.records} records, {report.checkpoints} signed checkpoints, "
                  f"{len(report.files)} file(s)", file=cli.out)
            return 0
        print(f"TAMPERED or damaged: {report.problem}", file=cli.out)
        return 1
    matching = (r for r in audit.records(opts.path) if _matches(r, opts))
    if opts.sub == "search":
        _print(cli, matching, opts.json)
        return 0
    last: list[dict[str, Any]] = []
    for rec in matching:
        last.append(rec)
        if len(last) > max(opts.lines, 0):
            last.pop(0)
    _print(cli, last, opts.json)
    if opts.follow:
        seq = max((int(r.get("seq", 0)) for r in audit.records(opts.path)), default=0)
        try:
            _print(cli, (r for r in _follow(opts.path, seq) if _matches(r, opts)), opts.json)
        except KeyboardInterrupt:
            return 0
    return 0
