"""Containers: create, start, wait, attach (output), logs, stop, kill, restart, rm, list, inspect, prune."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from berth.api import versions
from berth.api.backends import ContainerBackend, ContainerFilesBackend, ExecBackend
from berth.api.filters import parse_filters
from berth.api.hijack import DEFAULT_DETACH_KEYS, DetachReader, parse_detach_keys
from berth.api.http import Request, Response
from berth.api.router import Route, route
from berth.api.routes.system import parse_timestamp
from berth.api.streams import demultiplex, frame
from berth.errors import InvalidParameter, NotFound

_BACKLOG_AFTER_UPGRADE = 0.02  # seconds between an attach's 101 and its log backlog (see attach)
LIST_FILTERS = ("ancestor", "before", "exited", "id", "label", "name", "since", "status", "volume", "network")
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def routes(backend: ContainerBackend, files: ContainerFilesBackend) -> list[Route]:
    async def create(req: Request) -> Response:
        body = req.json_body()
        if body is None:
            raise InvalidParameter("the container config is missing (a JSON body)")
        return Response.json(backend.container_create(body, req.arg("name"), req.version), status=201)

    async def start(req: Request) -> Response:
        await backend.container_start(req.params["id"])
        return Response.empty(204)

    async def wait(req: Request) -> None:
        assert req.connection is not None
        waiter = await backend.container_wait(req.params["id"], req.arg("condition"))
        # Headers go out at once, as dockerd does, so the client knows its wait is registered.
        writer = await req.connection.start_stream(200, "application/json")
        code = await waiter
        await writer.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
        await writer.close()
        return None

    def _t(req: Request) -> int | None:
        return req.int_arg("t", req.int_arg("timeout"))

    async def stop(req: Request) -> Response:
        await backend.container_stop(req.params["id"], _t(req), req.arg("signal"))
        return Response.empty(204)

    async def kill(req: Request) -> Response:
        await backend.container_kill(req.params["id"], req.arg("signal", "KILL"))
        return Response.empty(204)

    async def restart(req: Request) -> Response:
        await backend.container_restart(req.params["id"], _t(req), req.arg("signal"))
        return Response.empty(204)

    async def remove(req: Request) -> Response:
        await backend.container_remove(req.params["id"], req.bool_arg("force"), req.bool_arg("v"))
        return Response.empty(204)

    def list_(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), LIST_FILTERS)
        return Response.json(backend.container_list(req.bool_arg("all"), req.int_arg("limit"), filters))

    def inspect(req: Request) -> Response:
        return Response.json(backend.container_inspect(req.params["id"]))

    async def prune(req: Request) -> Response:
        filters = parse_filters(req.arg("filters"), ("label", "label!", "until"))
        if filters.get("until"):  # as a Unix time for the backend (RFC 3339, durations, seconds accepted)
            filters["until"] = [str(parse_timestamp(filters["until"][-1], time.time()))]
        return Response.json(await backend.containers_prune(filters))

    async def logs(req: Request) -> None:
        assert req.connection is not None
        stdout, stderr = req.bool_arg("stdout"), req.bool_arg("stderr")
        if not stdout and not stderr:
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        now = time.time()
        since = parse_timestamp(req.arg("since"), now) if req.arg("since") not in ("", "0") else 0.0
        until = parse_timestamp(req.arg("until"), now) if req.arg("until") not in ("", "0") else None
        tail_text = req.arg("tail", "all")
        tail = None if tail_text in ("all", "") else int(tail_text) if tail_text.isdigit() else None
        out = backend.container_output(req.params["id"], stdout=stdout, stderr=stderr, since=since, until=until,
                                       tail=tail, follow=req.bool_arg("follow"), timestamps=req.bool_arg("timestamps"),
                                       from_start=True)
        await anext(aiter(out), None)  # b"": NotFound or an unreadable driver surface here, before the status
        writer = await req.connection.start_stream(200, MULTIPLEXED)
        async for chunk in out:
            await writer.write(chunk)
        await writer.close()
        return None

    async def attach(req: Request) -> None:
        assert req.connection is not None
        backend.container_inspect(req.params["id"])  # 404 before the upgrade
        out = backend.container_output(req.params["id"], stdout=req.bool_arg("stdout"),
                                       stderr=req.bool_arg("stderr"), since=0.0, until=None, tail=None,
                                       follow=req.bool_arg("stream"), timestamps=False,
                                       from_start=req.bool_arg("logs"))
        tty = bool((backend.container_inspect(req.params["id"]).get("Config") or {}).get("Tty"))
        keys = detach_keys(req.arg("detachKeys"), "Invalid detach keys ({}) provided")
        stream = await req.connection.hijack("application/vnd.docker.raw-stream" if tty else MULTIPLEXED)
        if req.bool_arg("logs"):
            # The backlog is ready at once, and docker-py reads the raw socket past its own HTTP buffer:
            # bytes that reach it with the 101 are lost. A moment lets the 101 be read alone.
            await asyncio.sleep(_BACKLOG_AFTER_UPGRADE)
        # With a TTY, the detach keys end the session and leave the container running (as dockerd).
        stdin = (DetachReader(stream, keys) if tty else stream) if req.bool_arg("stdin") else None
        await _relay(req.params["id"], out, stream, stdin, lambda chunk: bytes(chunk))
        return None

    async def attach_ws(req: Request) -> None:
        """dockerd's WebSocket attach: the container's output as frames (raw, never multiplexed;
        binary from API 1.28, text before), the client's frames to its stdin."""
        from berth.api import websocket  # wsproto and h11 are loaded when the first client asks for them

        assert req.connection is not None
        websocket.check_origin(req.headers, tls=req.identity.kind == "tls")
        target = req.path + ("?" + req.raw_query if req.raw_query else "")
        session = websocket.Session(target, req.headers, binary=versions.at_least(req.version, "1.28"))
        info = backend.container_inspect(req.params["id"])  # 404 before the upgrade
        tty = bool((info.get("Config") or {}).get("Tty"))
        keys = detach_keys(req.arg("detachKeys"), "Invalid detach keys ({}) provided")
        out = backend.container_output(req.params["id"], stdout=req.bool_arg("stdout"),
                                       stderr=req.bool_arg("stderr"), since=0.0, until=None, tail=None,
                                       follow=req.bool_arg("stream"), timestamps=False,
                                       from_start=req.bool_arg("logs"))
        stream = await req.connection.hijack(head=session.accept())
        stdin: Any = None
        if req.bool_arg("stdin"):  # the detach keys apply here too, with a TTY (as dockerd's attach)
            stdin = websocket.Reader(session, stream)
            stdin = DetachReader(stdin, keys) if tty else stdin
        pending = bytearray()

        def to_frame(chunk: bytes) -> bytes:
            data = bytes(chunk) if tty else demultiplex(bytes(chunk), pending)
            return session.message(data)

        await _relay(req.params["id"], out, stream, stdin, to_frame, end=session.close)  # 1000: normal closure
        return None

    async def _relay(cid: str, out: Any, stream: Any, stdin: Any, convert: Any, end: Any = None) -> None:
        """Attach's copy loop: the container's output to the client (through ``convert``), the
        client's input (``stdin``, if any) to the container; then our half-close and a linger. A
        detach (the keys read from ``stdin``) ends it at once and closes the connection."""
        pump = asyncio.ensure_future(backend.container_stdin(cid, stdin)) if stdin is not None else None

        async def copy_out() -> None:
            async for chunk in out:
                if not chunk:
                    continue
                data = convert(chunk)
                if data:
                    await stream.write(data)
            tail = end() if end is not None else b""
            if tail:
                await stream.write(tail)

        copier = asyncio.ensure_future(copy_out())
        try:
            if isinstance(stdin, DetachReader):
                watch = asyncio.ensure_future(stdin.detached.wait())
                await asyncio.wait([copier, watch], return_when=asyncio.FIRST_COMPLETED)
                watch.cancel()
                if stdin.detached.is_set():
                    copier.cancel()
                    await asyncio.gather(copier, return_exceptions=True)
                    stream.close()
                    return
            await copier
        except ConnectionResetError:
            return
        finally:
            if not copier.done():
                copier.cancel()
                await asyncio.gather(copier, return_exceptions=True)
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        stream.send_eof()
        await stream.linger()

    def remove_link(req: Request) -> Response:
        parent, alias = req.params["parent"], req.params["alias"]
        if not req.bool_arg("link"):
            raise NotFound(f"No such container: {parent}/{alias}")
        backend.container_remove_link(parent, alias)
        return Response.empty(204)

    async def commit(req: Request) -> Response:
        body = req.json_body()
        if body is not None and not isinstance(body, dict):
            raise InvalidParameter("the container config to commit must be a JSON object")
        name = req.arg("container")
        if not name:
            raise InvalidParameter("No container name or ID supplied")
        pause = req.bool_arg("pause", True) if req.arg("pause") else True
        return Response.json(await files.container_commit(
            name, req.arg("repo"), req.arg("tag"), req.arg("comment"), req.arg("author"), pause,
            req.query.get("changes", []), body), status=201)

    def resize(req: Request) -> Response:
        backend.container_resize(req.params["id"], req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0)
        return Response.empty(200)

    async def pause(req: Request) -> Response:
        await backend.container_pause(req.params["id"])
        return Response.empty(204)

    async def unpause(req: Request) -> Response:
        await backend.container_unpause(req.params["id"])
        return Response.empty(204)

    def rename(req: Request) -> Response:
        backend.container_rename(req.params["id"], req.arg("name"))
        return Response.empty(204)

    def top(req: Request) -> Response:
        return Response.json(backend.container_top(req.params["id"], req.arg("ps_args")))

    async def archive_get(req: Request) -> Response | None:
        assert req.connection is not None
        path = req.arg("path")
        if not path:
            raise InvalidParameter("path is required")
        if req.method == "HEAD":
            header = await files.archive_stat(req.params["id"], path)
            return Response(200, b"", "application/x-tar", {"X-Docker-Container-Path-Stat": header})
        header, chunks = await files.archive_get(req.params["id"], path)
        writer = await req.connection.start_stream(200, "application/x-tar", {"X-Docker-Container-Path-Stat": header})
        async for chunk in chunks:
            await writer.write(chunk)
        await writer.close()
        return None

    async def archive_put(req: Request) -> Response:
        assert req.connection is not None
        path = req.arg("path")
        if not path:
            raise InvalidParameter("path is required")
        await files.archive_put(req.params["id"], path, req.connection.body_stream(),
                                  req.bool_arg("noOverwriteDirNonDir"), req.bool_arg("copyUIDGID"))
        return Response.empty(200)

    async def export(req: Request) -> None:
        assert req.connection is not None
        backend.container_inspect(req.params["id"])  # 404 before the status line
        writer = await req.connection.start_stream(200, "application/x-tar")
        async for chunk in files.container_export(req.params["id"]):
            await writer.write(chunk)
        await writer.close()
        return None

    def changes(req: Request) -> Response:
        return Response.json(files.container_changes(req.params["id"]))

    async def update(req: Request) -> Response:
        body = req.json_body()
        if not isinstance(body, dict):
            raise InvalidParameter("the update must be a JSON object")
        return Response.json(await backend.container_update(req.params["id"], body))

    async def stats(req: Request) -> None:
        assert req.connection is not None
        backend.container_inspect(req.params["id"])  # 404 before the status line
        samples = backend.container_stats(req.params["id"], req.bool_arg("stream", True), req.bool_arg("one-shot"))
        writer = await req.connection.start_stream(200, "application/json")
        async for sample in samples:
            await writer.write(json.dumps(sample).encode() + b"\n")
        await writer.close()
        return None

    return [
        route("GET", "/containers/{id}/stats", stats),
        route("GET", "/containers/{id}/export", export),
        route("GET", "/containers/{id}/changes", changes),
        route("POST", "/containers/{id}/update", update),
        route("GET", "/containers/{id}/archive", archive_get),
        route("PUT", "/containers/{id}/archive", archive_put, stream_body=True),
        route("POST", "/containers/{id}/pause", pause),
        route("POST", "/containers/{id}/unpause", unpause),
        route("POST", "/containers/{id}/rename", rename),
        route("GET", "/containers/{id}/top", top),
        route("POST", "/containers/{id}/resize", resize),
        route("POST", "/containers/create", create),
        route("GET", "/containers/json", list_),
        route("POST", "/containers/prune", prune),
        route("GET", "/containers/{id}/json", inspect),
        route("POST", "/containers/{id}/start", start),
        route("POST", "/containers/{id}/wait", wait),
        route("POST", "/containers/{id}/stop", stop),
        route("POST", "/containers/{id}/kill", kill),
        route("POST", "/containers/{id}/restart", restart),
        route("POST", "/containers/{id}/attach", attach),
        route("GET", "/containers/{id}/attach/ws", attach_ws),
        route("GET", "/containers/{id}/logs", logs),
        route("DELETE", "/containers/{parent}/{alias}", remove_link),
        route("POST", "/commit", commit),
        route("DELETE", "/containers/{id}", remove),
    ]


def detach_keys(spec: str | None, error: str) -> bytes:
    """The detach keys a client asked for (the docker CLI sends its config.json's), or ctrl-p,ctrl-q."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    try:
        return parse_detach_keys(spec)
    except ValueError:
        raise InvalidParameter(error.format(spec)) from None


_detached_execs: set[asyncio.Future[Any]] = set()  # exec sessions whose client detached, still running


def exec_routes(backend: ExecBackend) -> list[Route]:
    async def create(req: Request) -> Response:
        body = req.json_body()
        if not isinstance(body, dict):
            raise InvalidParameter("the exec config is missing (a JSON body)")
        return Response.json(backend.exec_create(req.params["id"], body), status=201)

    async def start(req: Request) -> Response | None:
        assert req.connection is not None
        body = req.json_body() or {}
        info = backend.exec_inspect(req.params["id"])  # 404 before the upgrade
        if body.get("Detach"):
            async def nowhere(stream: int, data: bytes) -> None:
                return None

            asyncio.ensure_future(backend.exec_run(req.params["id"], None, nowhere))
            return Response.empty(200)
        # The framing follows this request's Tty, not the exec's (as dockerd does): docker-py starts an
        # exec created with a TTY without saying Tty again and reads the output as multiplexed frames.
        tty = bool(body.get("Tty"))
        stream = await req.connection.hijack("application/vnd.docker.raw-stream" if tty else MULTIPLEXED)
        # With a TTY, the detach keys end the session; the process goes on, its output unread.
        stdin: Any = stream
        if info["ProcessConfig"]["tty"] and info["OpenStdin"]:
            stdin = DetachReader(stream, base64.b64decode(info.get("DetachKeys") or "") or DEFAULT_DETACH_KEYS)

        async def write(which: int, data: bytes) -> None:
            if isinstance(stdin, DetachReader) and stdin.detached.is_set():
                return
            await stream.write(data if tty else frame(which, data))

        run = asyncio.ensure_future(backend.exec_run(req.params["id"], stdin, write))
        try:
            if isinstance(stdin, DetachReader):
                watch = asyncio.ensure_future(stdin.detached.wait())
                await asyncio.wait([run, watch], return_when=asyncio.FIRST_COMPLETED)
                watch.cancel()
                if stdin.detached.is_set() and not run.done():
                    _detached_execs.add(run)
                    run.add_done_callback(_detached_execs.discard)
                    stream.close()
                    return None
            await run
        except ConnectionResetError:
            return None
        stream.send_eof()
        await stream.linger()
        return None

    def inspect(req: Request) -> Response:
        return Response.json(backend.exec_inspect(req.params["id"]))

    def resize(req: Request) -> Response:
        backend.exec_resize(req.params["id"], req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0)
        return Response.empty(200)

    return [
        route("POST", "/containers/{id}/exec", create),
        route("POST", "/exec/{id}/start", start),
        route("GET", "/exec/{id}/json", inspect),
        route("POST", "/exec/{id}/resize", resize),
    ]
