"""Volumes: create, list, inspect, remove, prune."""

from __future__ import annotations

from berth.api.backends import VolumeBackend
from berth.api.filters import parse_filters
from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.errors import InvalidParameter


def routes(backend: VolumeBackend) -> list[Route]:
    def create(req: Request) -> Response:
        body = req.json_body() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("the volume config must be a JSON object")
        return Response.json(backend.volume_create(body.get("Name") or "", body.get("Driver") or "local",
                                                   body.get("Labels") or {}, body.get("DriverOpts") or {}), status=201)

    def list_(req: Request) -> Response:
        return Response.json(backend.volume_list(parse_filters(req.arg("filters"),
                                                               ("dangling", "driver", "label", "name"))))

    def inspect(req: Request) -> Response:
        return Response.json(backend.volume_inspect(req.params["name"]))

    def remove(req: Request) -> Response:
        backend.volume_remove(req.params["name"], req.bool_arg("force"))
        return Response.empty(204)

    def prune(req: Request) -> Response:
        return Response.json(backend.volumes_prune(parse_filters(req.arg("filters"), ("label", "all"))))

    return [
        route("POST", "/volumes/create", create),
        route("GET", "/volumes", list_),
        route("POST", "/volumes/prune", prune),
        route("GET", "/volumes/{name}", inspect),
        route("DELETE", "/volumes/{name}", remove),
    ]
