"""Images: list, inspect, history, tag, delete, prune, import, load, save."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from berth.api.backends import ImageBackend
from berth.api.filters import parse_filters
from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.errors import BerthError, InvalidParameter

LIST_FILTERS = ("before", "dangling", "label", "reference", "since", "until")
PRUNE_FILTERS = ("dangling", "label", "until")
SEARCH_FILTERS = ("is-automated", "is-official", "stars")


def _json_line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


async def _stream(req: Request, messages: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None = None) -> None:
    """JSON messages, one a line; an error once the status line is out is reported in the stream, as
    dockerd does (``errorDetail``)."""
    assert req.connection is not None
    writer = await req.connection.start_stream(200, "application/json")
    try:
        if first is not None:
            await writer.write(_json_line(first))
        async for m in messages:
            await writer.write(_json_line(m))
    except BerthError as exc:
        await writer.write(_json_line({"errorDetail": {"message": exc.message}, "error": exc.message}))
    await writer.close()


def routes(backend: ImageBackend) -> list[Route]:
    async def list_(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), LIST_FILTERS)
        if req.arg("filter"):  # API < 1.41 spelling of a reference filter
            filters.setdefault("reference", []).append(req.arg("filter"))
        return Response.json(await backend.images_list(req.bool_arg("all"), req.bool_arg("digests"), filters,
                                                       req.version))

    async def inspect(req: Request) -> Response:
        return Response.json(await backend.image_inspect(req.params["name"], req.version))

    async def history(req: Request) -> Response:
        return Response.json(await backend.image_history(req.params["name"]))

    async def tag(req: Request) -> Response:
        repo = req.arg("repo")
        if not repo:
            raise InvalidParameter("repository name (repo) is required")
        await backend.image_tag(req.params["name"], repo, req.arg("tag"))
        return Response.empty(201)

    async def delete(req: Request) -> Response:
        return Response.json(await backend.image_delete(req.params["name"], req.bool_arg("force"),
                                                        req.bool_arg("noprune")))

    async def prune(req: Request) -> Response:
        return Response.json(await backend.images_prune(parse_filters(req.arg("filters"), PRUNE_FILTERS)))

    async def create(req: Request) -> Response | None:
        assert req.connection is not None
        if req.arg("fromImage"):
            await _pull(req)
            return None
        if req.arg("fromSrc") != "-":
            raise InvalidParameter("import needs fromSrc=- (the root filesystem tar as the request body); "
                                   "importing from a URL is not supported")
        changes = req.query.get("changes", [])
        image_id = await backend.image_import(req.connection.body_stream(), req.arg("repo"), req.arg("tag"),
                                              req.arg("message"), changes)
        return Response(200, _json_line({"status": image_id}))

    async def _pull(req: Request) -> None:
        assert req.connection is not None
        messages = backend.image_pull(req.arg("fromImage"), req.arg("tag"), req.arg("platform"),
                                      req.headers.get("x-registry-auth", ""))
        first = await anext(messages, None)  # an error before the first message is the response's status
        await _stream(req, messages, first)

    async def push(req: Request) -> None:
        messages = backend.image_push(req.params["name"], req.arg("tag"), req.headers.get("x-registry-auth", ""))
        first = await anext(messages, None)  # an image that is not here is a 404, before any message
        await _stream(req, messages, first)

    async def load(req: Request) -> Response | None:
        assert req.connection is not None
        quiet = req.bool_arg("quiet")
        messages = backend.image_load(req.connection.body_stream(), quiet)
        if quiet:
            # Nothing is sent until the load is over, so an error is a real status code.
            lines = [_json_line(m) async for m in messages]
            return Response(200, b"".join(lines))
        await _stream(req, messages)
        return None

    async def save(req: Request) -> None:
        assert req.connection is not None
        names = req.query.get("names", []) if "name" not in req.params else [req.params["name"]]
        if not names:
            raise InvalidParameter("no image names given (names=...)")
        stream = await backend.image_save(names)
        writer = await req.connection.start_stream(200, "application/x-tar")
        async for chunk in stream:
            await writer.write(chunk)
        await writer.close()
        return None

    async def auth(req: Request) -> Response:
        body = req.json_body()
        if not isinstance(body, dict):
            raise InvalidParameter("the body must be a JSON object")
        return Response.json(await backend.auth(body))

    async def search(req: Request) -> Response:
        term = req.arg("term")
        if not term:
            raise InvalidParameter("search term is empty")
        limit_text = req.arg("limit") or "25"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            raise InvalidParameter(f"limit {limit_text} is outside the range of [1, 100]")
        filters = parse_filters(req.arg("filters"), SEARCH_FILTERS)
        return Response.json(await backend.search(term, int(limit_text), filters,
                                                  req.headers.get("x-registry-auth", "")))

    async def distribution(req: Request) -> Response:
        return Response.json(await backend.distribution(req.params["name"], req.headers.get("x-registry-auth", "")))

    async def df(req: Request) -> Response:
        return Response.json(await backend.system_df_images())

    return [
        route("GET", "/images/json", list_),
        route("POST", "/images/create", create, stream_body=True),
        route("POST", "/auth", auth),
        route("GET", "/images/search", search),
        route("POST", "/images/{name:path}/push", push),
        route("GET", "/distribution/{name:path}/json", distribution),
        route("POST", "/images/load", load, stream_body=True),
        route("GET", "/images/get", save),
        route("POST", "/images/prune", prune),
        route("GET", "/images/{name:path}/json", inspect),
        route("GET", "/images/{name:path}/history", history),
        route("GET", "/images/{name:path}/get", save),
        route("POST", "/images/{name:path}/tag", tag),
        route("DELETE", "/images/{name:path}", delete),
        route("GET", "/system/df", df),
    ]
