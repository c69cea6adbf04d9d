"""Rendering the daemon's JSON message stream (load, later pull and build): progress bars with rich
on a terminal, plain lines otherwise; an error message in the stream makes the command fail."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from berth.cli.main import CLI
from berth.errors import BerthError


class StreamError(BerthError):
    """The daemon reported an error inside a stream whose status was already 200."""


def show_stream(cli: CLI, messages: Iterable[dict[str, Any]]) -> int:
    if cli.out.isatty():
        return _rich(cli, messages)
    for m in messages:
        _check(m)
        if "stream" in m:
            cli.out.write(m["stream"])
        elif m.get("status") and not m.get("progressDetail"):
            print(m["status"], file=cli.out)
    return 0


def _check(m: dict[str, Any]) -> None:
    if "error" in m or "errorDetail" in m:
        raise StreamError((m.get("errorDetail") or {}).get("message") or m.get("error") or "error")


def _rich(cli: CLI, messages: Iterable[dict[str, Any]]) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = Console(file=cli.out)
    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console) as bar:
        for m in messages:
            _check(m)
            if "stream" in m:
                bar.console.print(m["stream"].rstrip("\n"), highlight=False)
                continue
            detail = m.get("progressDetail") or {}
            key = m.get("id", "")
            if key not in tasks:
                tasks[key] = bar.add_task(f"{key} {m.get('status', '')}", total=detail.get("total") or None)
            bar.update(tasks[key], completed=detail.get("current", 0), total=detail.get("total") or None)
    return 0
