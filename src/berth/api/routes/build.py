"""POST /build: the classic builder's protocol (the docker CLI with DOCKER_BUILDKIT=0 or without
buildx, docker-compose 1.29, docker-py). The query is parsed and checked here; the build's messages
stream back as JSON lines, an error once they have begun in the stream (``errorDetail``)."""

from __future__ import annotations

import json
import time
from typing import Any

from berth.api.backends import BuildBackend, BuildCacheBackend
from berth.api.filters import parse_filters
from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.api.routes.images import _stream
from berth.api.routes.system import parse_timestamp
from berth.build.options import Options
from berth.errors import InvalidParameter, NotSupported

_INT_LIMITS = {"shmsize": "ShmSize", "memory": "Memory", "memswap": "MemorySwap", "cpushares": "CpuShares",
               "cpuperiod": "CpuPeriod", "cpuquota": "CpuQuota"}


def _json_map(req: Request, name: str, values_may_be_null: bool) -> dict[str, Any]:
    text = req.arg(name)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidParameter(f"{name} is not valid JSON") from None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and (isinstance(v, str) or v is None and values_may_be_null) for k, v in value.items()):
        raise InvalidParameter(f"{name} must be a JSON object of strings")
    return value


def options(req: Request) -> Options:
    if req.arg("version") == "2":
        raise NotSupported("BuildKit (version=2) is not supported by berth: it runs the classic builder")
    if req.bool_arg("squash"):
        raise InvalidParameter("squash is only supported with experimental mode")
    remote = req.arg("remote")
    if len(remote) > 4096 or "\0" in remote:
        raise InvalidParameter("invalid remote URL")
    try:
        cache_from = json.loads(req.arg("cachefrom") or "[]")
    except ValueError:
        raise InvalidParameter("cachefrom is not valid JSON") from None
    if not isinstance(cache_from, list) or not all(isinstance(c, str) for c in cache_from):
        raise InvalidParameter("cachefrom must be a JSON list of image names")
    if req.arg("platform") and req.arg("platform") not in ("linux", "linux/amd64"):
        raise NotSupported(f"building for platform {req.arg('platform')} is not supported on this host")
    host_config: dict[str, Any] = {}
    for arg, key in _INT_LIMITS.items():
        if req.arg(arg):
            value = req.int_arg(arg)
            if value is None or value < -1:
                raise InvalidParameter(f"invalid {arg}: {req.arg(arg)}")
            host_config[key] = value
    for arg, key in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems"), ("cgroupparent", "CgroupParent")):
        if req.arg(arg):
            host_config[key] = req.arg(arg)
    dockerfile = req.arg("dockerfile") or "Dockerfile"
    if "\0" in dockerfile or len(dockerfile) > 4096:
        raise InvalidParameter("invalid dockerfile name")
    return Options(
        tags=[t for t in req.query.get("t", []) if t], dockerfile=dockerfile, quiet=req.bool_arg("q"),
        nocache=req.bool_arg("nocache"), rm=req.bool_arg("rm", True), forcerm=req.bool_arg("forcerm"),
        pull=req.bool_arg("pull"), build_args=_json_map(req, "buildargs", True),
        labels=_json_map(req, "labels", False), target=req.arg("target"), network_mode=req.arg("networkmode"),
        extra_hosts=[h for v in req.query.get("extrahosts", []) for h in v.split(",") if h],
        host_config=host_config, remote=remote, cache_from=cache_from, auth=req.headers.get("x-registry-config", ""))


def routes(backend: BuildBackend, cache: BuildCacheBackend) -> list[Route]:
    async def build(req: Request) -> None:
        assert req.connection is not None
        messages = backend.build(req.connection.body_stream(), options(req))
        first = await anext(messages, None)  # an error before the first message is a status code
        await _stream(req, messages, first)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), ("until", "unused-for", "id", "parent", "type", "description",
                                                     "inuse", "shared", "private"))
        until_text = (filters.get("until") or filters.get("unused-for") or [""])[-1]
        until = parse_timestamp(until_text, time.time()) if until_text else None
        keep = req.int_arg("keep-storage") or 0
        if keep < 0:
            raise InvalidParameter("keep-storage must not be negative")
        return Response.json(await cache.build_prune(until, keep))

    return [route("POST", "/build", build, body_in_thread=True), route("POST", "/build/prune", prune)]
