"""What the routes need from the daemon, as narrow Protocols in wire types (dicts shaped like the
Engine API's JSON). The daemon's backends satisfy these without importing this module."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from typing import Any, Protocol

from berth.api.filters import Filters
from berth.api.http import Request, Response
from berth.api.router import Route
from berth.security.identity import Identity


class SystemBackend(Protocol):
    async def system_version(self) -> dict[str, Any]:
        """The body of GET /version."""
        ...

    async def system_info(self) -> dict[str, Any]:
        """The body of GET /info."""
        ...

    def system_events(self, since: float | None, until: float | None, filters: Filters) -> AsyncIterator[dict[str, Any]]:
        """Past events from ``since`` (if given), then live ones until ``until`` (if given), filtered.

        Ends by itself only when ``until`` is reached; otherwise runs until the caller stops it.
        """
        ...


class BuildBackend(Protocol):
    def build(self, body: AsyncIterable[bytes], opts: Any) -> AsyncIterator[dict[str, Any]]:
        """POST /build's messages (``opts``: ``berth.build.options.Options``)."""
        ...


class BuildCacheBackend(Protocol):
    async def build_prune(self, until: float | None, keep_storage: int) -> dict[str, Any]:
        """POST /build/prune: the build cache's images unused since ``until``, oldest first, until
        ``keep_storage`` bytes are left."""
        ...


class ImageBackend(Protocol):
    async def images_list(self, all_: bool, digests: bool, filters: Filters, api_version: str) -> list[dict[str, Any]]:
        """The body of GET /images/json."""
        ...

    async def image_inspect(self, name: str, api_version: str) -> dict[str, Any]:
        """The body of GET /images/{name}/json; NotFound ("No such image: NAME")."""
        ...

    async def image_history(self, name: str) -> list[dict[str, Any]]:
        ...

    async def image_tag(self, name: str, repo: str, tag: str) -> None:
        ...

    async def image_delete(self, name: str, force: bool, noprune: bool) -> list[dict[str, str]]:
        ...

    async def images_prune(self, filters: Filters) -> dict[str, Any]:
        ...

    async def image_import(self, body: AsyncIterable[bytes], repo: str, tag: str, message: str,
                           changes: list[str]) -> str:
        """Import a root filesystem tar as a one-layer image; returns its ID."""
        ...

    def image_load(self, body: AsyncIterable[bytes], quiet: bool) -> AsyncIterator[dict[str, Any]]:
        """Load an archive; yields JSON progress messages, the last ones "Loaded image: ..."."""
        ...

    async def auth(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /auth: check credentials against a registry."""
        ...

    async def search(self, term: str, limit: int, filters: dict[str, list[str]], auth: str) -> list[dict[str, Any]]:
        """GET /images/search."""
        ...

    async def distribution(self, name: str, auth: str) -> dict[str, Any]:
        """GET /distribution/{name}/json."""
        ...

    def image_push(self, name: str, tag: str, auth: str) -> AsyncIterator[dict[str, Any]]:
        """Push to a registry; yields dockerd's progress messages, the last an ``aux`` with the digest."""
        ...

    def image_pull(self, image: str, tag: str, platform: str, auth: str) -> AsyncIterator[dict[str, Any]]:
        """Pull from a registry; yields dockerd's progress messages. ``auth``: X-Registry-Auth as sent."""
        ...

    async def image_save(self, names: list[str]) -> AsyncIterator[bytes]:
        """Resolve every name first (NotFound before any byte), then return the tar stream."""
        ...

    async def system_df_images(self) -> dict[str, Any]:
        ...


class ContainerBackend(Protocol):
    def container_create(self, body: dict[str, Any], name: str, api_version: str) -> dict[str, Any]: ...

    async def container_start(self, name: str) -> None: ...

    async def container_wait(self, name: str, condition: str) -> Awaitable[int]:
        """Register the wait at once (NotFound now, not later); the returned awaitable gives the code."""
        ...

    async def container_stop(self, name: str, timeout: int | None, signal: str) -> None: ...

    async def container_kill(self, name: str, signal: str) -> None: ...

    async def container_restart(self, name: str, timeout: int | None, signal: str) -> None: ...

    async def container_remove(self, name: str, force: bool, volumes: bool) -> None: ...

    def container_list(self, all_: bool, limit: int | None, filters: Filters) -> list[dict[str, Any]]: ...

    def container_inspect(self, name: str) -> dict[str, Any]: ...

    def container_resize(self, name: str, height: int, width: int) -> None: ...

    def container_remove_link(self, parent: str, alias: str) -> None: ...

    def container_stats(self, name: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]: ...

    async def container_update(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def container_pause(self, name: str) -> None: ...

    async def container_unpause(self, name: str) -> None: ...

    def container_rename(self, name: str, new_name: str) -> None: ...

    def container_top(self, name: str, ps_args: str) -> dict[str, Any]: ...

    async def container_stdin(self, name: str, source: Any) -> None:
        """Copy ``source`` (has ``async read(n) -> bytes``, b"" at its end) to the container's stdin,
        waiting for the container to start if need be; then close the container's stdin."""
        ...

    async def containers_prune(self, filters: Filters) -> dict[str, Any]: ...

    def container_output(self, name: str, *, stdout: bool, stderr: bool, since: float, until: float | None,
                         tail: int | None, follow: bool, timestamps: bool, from_start: bool) -> AsyncIterator[bytes]:
        """Log lines as the API sends them (stdcopy frames without a TTY). The first item is b"" once
        the container and its log driver have been checked (NotFound and the driver's refusal are
        raised by the first iteration), so a follower can answer before any line is written."""
        ...


class ContainerFilesBackend(Protocol):
    """A container's files: ``docker cp`` both ways, export, diff, commit."""

    async def archive_stat(self, name: str, path: str) -> str:
        """The X-Docker-Container-Path-Stat header for ``path``; NotFound when it does not exist."""
        ...

    async def archive_get(self, name: str, path: str) -> tuple[str, AsyncIterator[bytes]]: ...

    async def archive_put(self, name: str, path: str, body: AsyncIterable[bytes], no_overwrite: bool,
                          copy_uid_gid: bool = False) -> None:
        """Extract the tar ``body`` into the directory ``path`` (resolved inside the container);
        ``copy_uid_gid`` gives what is copied to the container's user, as dockerd does."""
        ...

    def container_export(self, name: str) -> AsyncIterator[bytes]: ...

    def container_changes(self, name: str) -> list[dict[str, Any]]: ...

    async def container_commit(self, name: str, repo: str, tag: str, comment: str, author: str, pause: bool,
                               changes: list[str], config: dict[str, Any] | None) -> dict[str, Any]: ...


class ExecBackend(Protocol):
    def exec_create(self, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    def exec_inspect(self, exec_id: str) -> dict[str, Any]: ...

    def exec_resize(self, exec_id: str, height: int, width: int) -> None: ...

    async def exec_run(self, exec_id: str, stdin: Any, write: Any) -> int:
        """Run it: read the client's input from ``stdin`` (``async read(n)``; None when detached) and send
        output with ``await write(stream, data)``; returns the exit code."""
        ...


class VolumeBackend(Protocol):
    def volume_create(self, name: str, driver: str, labels: dict[str, str], options: dict[str, str]) -> dict[str, Any]: ...

    def volume_list(self, filters: Filters) -> dict[str, Any]: ...

    def volume_inspect(self, name: str) -> dict[str, Any]: ...

    def volume_remove(self, name: str, force: bool) -> None: ...

    def volumes_prune(self, filters: Filters) -> dict[str, Any]: ...


class NetworkBackend(Protocol):
    async def network_create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def network_list(self, filters: Filters) -> list[dict[str, Any]]: ...

    async def network_inspect(self, name: str) -> dict[str, Any]: ...

    async def network_remove(self, name: str) -> None: ...

    async def networks_prune(self, filters: Filters) -> dict[str, Any]: ...

    async def network_connect(self, name: str, body: dict[str, Any]) -> None: ...

    async def network_disconnect(self, name: str, body: dict[str, Any]) -> None: ...


class PolicyBackend(Protocol):
    def policy_explain(self, spec: dict[str, Any]) -> dict[str, Any]:
        """How the policy decides a request made as someone else (``berth policy explain``)."""
        ...


class Authorizer(Protocol):
    """Decides, before its handler runs, whether a request may go ahead: raises Forbidden when not,
    returns None when it may, or an awaitable when the decision has to wait (that raises Forbidden or
    returns). It may rewrite ``req.body`` (a policy that forces labels on what a caller creates)."""

    def authorize(self, req: Request, route: Route) -> Awaitable[None] | None:
        ...

    async def review(self, req: Request, resp: Response | None) -> Response | None:
        """Called once the handler is done when ``req.review`` is set: ``resp`` (None after a stream or
        a hijack) may be replaced by an error before it is sent; returns the response to send."""
        ...


class Auditor(Protocol):
    """Records every request once it is answered (and refuses requests it could not record)."""

    def admit(self) -> None:
        """Raises Unavailable when a request could not be recorded (the log is behind)."""
        ...

    def done(self, identity: Identity, method: str, target: str, req: Request | None, route: Route | None,
             status: int, sent: int, seconds: float, memo: list[Any] | None = None) -> None:
        """``target``: the path and query as sent; ``req``/``route`` None for a request never routed;
        ``memo``: two slots the connection keeps for the auditor (what its last record repeated)."""
        ...
