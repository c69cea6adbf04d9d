"""berth info: system-wide information, as docker info prints its main part."""

from __future__ import annotations

import argparse
import json
from typing import Any

from berth.cli.main import CLI
from berth.cli.templates import render


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="format the output using a Go template, or 'json'")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def run(cli: CLI, opts: argparse.Namespace) -> int:
    info: dict[str, Any] = cli.client().info()
    if opts.format == "json":
        print(json.dumps(info), file=cli.out)
        return 0
    if opts.format:
        print(render(opts.format, info), file=cli.out)
        return 0
    rows = [
        ("Containers", info.get("Containers")), (" Running", info.get("ContainersRunning")),
        (" Paused", info.get("ContainersPaused")), (" Stopped", info.get("ContainersStopped")),
        ("Images", info.get("Images")), ("Server Version", info.get("ServerVersion")),
        ("Storage Driver", info.get("Driver")), ("Logging Driver", info.get("LoggingDriver")),
        ("Cgroup Driver", info.get("CgroupDriver")), ("Cgroup Version", info.get("CgroupVersion")),
        ("Runtimes", " ".join(sorted(info.get("Runtimes") or {}))),
        ("Default Runtime", info.get("DefaultRuntime")),
        ("Security Options", ", ".join(info.get("SecurityOptions") or [])),
        ("Kernel Version", info.get("KernelVersion")), ("Operating System", info.get("OperatingSystem")),
        ("OSType", info.get("OSType")), ("Architecture", info.get("Architecture")),
        ("CPUs", info.get("NCPU")), ("Total Memory", _size(int(info.get("MemTotal") or 0))),
        ("Name", info.get("Name")), ("ID", info.get("ID")), ("Berth Root Dir", info.get("DockerRootDir")),
        ("Debug Mode", str(info.get("Debug")).lower()), ("Labels", ", ".join(info.get("Labels") or [])),
        ("Live Restore Enabled", str(info.get("LiveRestoreEnabled")).lower()),
    ]
    lines = ["Server:"] + [f" {k}: {v}" for k, v in rows]
    print("\n".join(lines), file=cli.out)
    for w in info.get("Warnings") or []:
        print(w, file=cli.err)
    return 0
