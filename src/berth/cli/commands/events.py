"""berth events: stream events from the daemon, as docker events prints them."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from berth.cli.main import CLI
from berth.cli.templates import render
from berth.errors import InvalidParameter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="show events created since this timestamp or duration (e.g. 10m)")
    p.add_argument("--until", help="stream events until this timestamp or duration")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output (key=value)")
    p.add_argument("--format", help="format the output using a Go template, or 'json'")


def to_timestamp(text: str | None) -> str | None:
    """docker's GetTimestamp: durations are relative to now; numbers and dates pass through."""
    if not text:
        return None
    units = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            try:
                t = time.time() - float(text[: -len(unit)]) * units[unit]
                return f"{int(t)}.{int((t % 1) * 1e9):09d}"
            except ValueError:
                break
    try:
        float(text)
        return text
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"invalid time {text!r}: use a Unix timestamp, an RFC 3339 date or a duration") \
            from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return f"{dt.timestamp():.9f}"


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidParameter(f"bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def format_event(ev: dict[str, Any]) -> str:
    ns = ev.get("timeNano") or ev.get("time", 0) * 1_000_000_000
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    stamp += f".{ns % 1_000_000_000:09d}Z"
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    tail = " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")" if attrs else ""
    return f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID', '')}{tail}"


def run(cli: CLI, opts: argparse.Namespace) -> int:
    filters = parse_filters(opts.filter)
    client = cli.client()
    stream = client.events(since=to_timestamp(opts.since), until=to_timestamp(opts.until),
                           filters=filters or None, decode=True)
    for ev in stream:
        if opts.format == "json":
            line = json.dumps(ev)
        elif opts.format:
            line = render(opts.format, ev)
        else:
            line = format_event(ev)
        print(line, file=cli.out, flush=True)
    return 0
