"""berth version: client and server versions, as docker version prints them."""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

import docker.errors

from berth import API_VERSION, __version__
from berth.cli.main import CLI
from berth.cli.templates import render

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="format the output using a Go template, or 'json'")


def _client_info(cli: CLI, api: str) -> dict[str, Any]:
    return {"Platform": {"Name": "berth"}, "Version": __version__, "ApiVersion": api,
            "DefaultAPIVersion": API_VERSION, "PythonVersion": platform.python_version(),
            "Os": "linux", "Arch": _ARCH.get(platform.machine(), platform.machine()),
            "Context": cli.endpoint.context}


def run(cli: CLI, opts: argparse.Namespace) -> int:
    server: dict[str, Any] | None = None
    error = None
    try:
        client = cli.client()
        server = client.version(api_version=False)
        api = client.api_version
    except (docker.errors.DockerException, OSError, Exception) as exc:  # printed after the client part
        error = exc
        api = API_VERSION
    data = {"Client": _client_info(cli, api), "Server": server}
    if opts.format == "json":
        print(json.dumps(data), file=cli.out)
    elif opts.format:
        print(render(opts.format, data), file=cli.out)
    else:
        _print_human(cli, data)
    if error is not None:
        raise error
    return 0


def _print_human(cli: CLI, data: dict[str, Any]) -> None:
    c = data["Client"]
    lines = ["Client:", f" Version:           {c['Version']}"]
    api_line = c["ApiVersion"]
    if c["ApiVersion"] != API_VERSION:
        api_line += f" (downgraded from {API_VERSION})"
    lines += [f" API version:       {api_line}", f" Python version:    {c['PythonVersion']}",
              f" OS/Arch:           {c['Os']}/{c['Arch']}", f" Context:           {c['Context']}"]
    s = data["Server"]
    if s:
        lines += ["", f"Server: {s.get('Platform', {}).get('Name', '')}"]
        for comp in s.get("Components") or []:
            lines.append(f" {comp['Name']}:")
            lines.append(f"  Version:          {comp.get('Version', '')}")
            d = comp.get("Details") or {}
            if comp["Name"] == "Engine":
                lines.append(f"  API version:      {d.get('ApiVersion')} (minimum version {d.get('MinAPIVersion')})")
                lines.append(f"  OS/Arch:          {d.get('Os')}/{d.get('Arch')}")
                lines.append(f"  Kernel:           {d.get('KernelVersion')}")
            elif d.get("Path"):
                lines.append(f"  Path:             {d['Path']}")
    print("\n".join(lines), file=cli.out)
