"""What a build request asks for (POST /build's query), parsed and checked by the route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Options:
    tags: list[str]
    dockerfile: str = "Dockerfile"
    quiet: bool = False
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    pull: bool = False
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    network_mode: str = ""
    extra_hosts: list[str] = field(default_factory=list)
    host_config: dict[str, Any] = field(default_factory=dict)  # shmsize, memory, cpu*
    remote: str = ""  # a URL: the context is fetched from there (a tarball, a Dockerfile or git)
    cache_from: list[str] = field(default_factory=list)  # images whose chains are the only cache
    auth: str = ""  # X-Registry-Config (base64 JSON of registry → credentials)
