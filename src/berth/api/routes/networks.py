"""Networks: create, list, inspect, remove, prune, connect, disconnect."""

from __future__ import annotations

import time

from berth.api.backends import NetworkBackend
from berth.api.filters import parse_filters
from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.api.routes.system import parse_timestamp
from berth.errors import InvalidParameter


def routes(backend: NetworkBackend) -> list[Route]:
    def body_of(req: Request) -> dict:
        body = req.json_body() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("the request body must be a JSON object")
        return body

    async def create(req: Request) -> Response:
        return Response.json(await backend.network_create(body_of(req)), status=201)

    async def list_(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), ("dangling", "driver", "id", "label", "name", "scope", "type"))
        return Response.json(await backend.network_list(filters))

    async def inspect(req: Request) -> Response:
        return Response.json(await backend.network_inspect(req.params["id"]))

    async def remove(req: Request) -> Response:
        await backend.network_remove(req.params["id"])
        return Response.empty(204)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), ("label", "label!", "until"))
        if filters.get("until"):  # as a Unix time for the backend
            filters["until"] = [str(parse_timestamp(filters["until"][-1], time.time()))]
        return Response.json(await backend.networks_prune(filters))

    async def connect(req: Request) -> Response:
        await backend.network_connect(req.params["id"], body_of(req))
        return Response.empty(200)

    async def disconnect(req: Request) -> Response:
        await backend.network_disconnect(req.params["id"], body_of(req))
        return Response.empty(200)

    return [
        route("POST", "/networks/create", create),
        route("GET", "/networks", list_),
        route("POST", "/networks/prune", prune),
        route("GET", "/networks/{id}", inspect),
        route("DELETE", "/networks/{id}", remove),
        route("POST", "/networks/{id}/connect", connect),
        route("POST", "/networks/{id}/disconnect", disconnect),
    ]
