"""``docker cp`` both ways, export, diff and commit (``api.backends.ContainerFilesBackend``): the
container package's ``Files`` and ``Rootfs`` do the file work, in threads; commit adds the layer to
the image store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from berth.container import archive as carchive
from berth.container import users
from berth.container.files import Files
from berth.container.model import Container, now
from berth.daemon.backends.lifecycle import Lifecycle
from berth.daemon.backends.threads import Reader, consume_in_thread, iterate_in_thread
from berth.errors import BerthError
from berth.image import importer
from berth.image import reference as image_reference
from berth.image.store import NewLayer
from berth.image.streams import decompressed


class ContainerFilesAPI:
    """A container's files: ``docker cp`` both ways, export, diff and commit. The blocking file work
    runs in threads; paths inside the container are resolved by ``linux/safepath``."""

    def __init__(self, life: Lifecycle) -> None:
        self.life = life
        self.registry = life.registry
        self.files = Files(life.rootfs)

    async def _settled(self, name: str) -> Container:
        """The container, once an exit in progress has released its resources (the monitor holds the
        lock while it unmounts the rootfs): a stopped container's files are then read from a mount of
        berth's own, which nothing else unmounts."""
        ctr = self.registry.get(name)
        if not ctr.running:
            async with self.registry.lock(ctr.id):
                pass
            ctr = self.registry.get(ctr.id)
        return ctr

    async def archive_stat(self, name: str, path: str) -> str:
        ctr = await self._settled(name)

        def work() -> str:
            with self.life.rootfs.root_for(ctr) as root:
                return carchive.stat_header(root, path, name)

        return await asyncio.to_thread(work)

    async def archive_get(self, name: str, path: str) -> tuple[str, AsyncIterator[bytes]]:
        ctr = await self._settled(name)
        stack = contextlib.ExitStack()
        root = await asyncio.to_thread(stack.enter_context, self.life.rootfs.root_for(ctr))
        try:
            header = await asyncio.to_thread(carchive.stat_header, root, path, name)
        except BaseException:
            stack.close()
            raise
        arcname = os.path.basename(path.rstrip("/")) or "."

        async def chunks() -> AsyncIterator[bytes]:
            with stack:
                async for chunk in iterate_in_thread(lambda: carchive.tar_stream(root, path, arcname, name,
                                                                                 idmap=ctr.idmap)):
                    yield chunk

        return header, chunks()

    async def archive_put(self, name: str, path: str, body: AsyncIterable[bytes], no_overwrite: bool,
                          copy_uid_gid: bool = False) -> None:
        ctr = await self._settled(name)
        writable = self.files.writable(ctr)

        def work(pipe: Reader) -> None:
            with self.life.rootfs.root_for(ctr) as root:
                owner = None
                if copy_uid_gid:  # as dockerd: the container's user owns what is copied in
                    u = users.resolve_user(root, ctr.config.get("User") or "")
                    owner = (u.uid, u.gid)
                carchive.extract(decompressed(pipe), root, path, name, no_overwrite,  # type: ignore[arg-type]
                                 owner=owner, writable=writable, idmap=ctr.idmap)

        await consume_in_thread(body, work)

    async def container_export(self, name: str) -> AsyncIterator[bytes]:
        """The container's filesystem as a tar (volumes not included), as docker export."""
        ctr = await self._settled(name)
        stack = contextlib.ExitStack()
        root = await asyncio.to_thread(stack.enter_context, self.files.export_root(ctr))
        with stack:
            async for chunk in iterate_in_thread(lambda: carchive.tree_stream(root.fd, idmap=ctr.idmap)):
                yield chunk
        self.registry.event("export", ctr)

    def container_changes(self, name: str) -> list[dict[str, Any]]:
        return self.files.changes(self.registry.get(name))

    async def container_commit(self, name: str, repo: str, tag: str, comment: str, author: str, pause: bool,
                               changes: list[str], config: dict[str, Any] | None) -> dict[str, Any]:
        """``docker commit``: the container's upper layer as a new layer on its image's, the config
        its own (merged with ``config`` and the Dockerfile ``changes``); paused meanwhile if asked."""
        ctr = self.registry.get(name)
        tags = [f"{repo}:{tag or 'latest'}"] if repo else []
        for t in tags:
            image_reference.parse(t)  # a bad name fails before any work
        cfg = dict(ctr.config)
        for key, value in (config or {}).items():
            if value not in (None, "", [], {}):
                cfg[key] = value
        importer.apply_changes(cfg, changes)
        runtime = self.life.runtimes[ctr.runtime]
        paused = False
        if pause and ctr.running and not ctr.state.paused:
            try:
                await asyncio.to_thread(runtime.pause, ctr.id)
                paused = True
            except BerthError:
                if self.registry.is_running(ctr.id):
                    raise  # else it exited meanwhile: nothing to pause
        try:
            image_id = await asyncio.to_thread(self._commit_sync, ctr, tags, comment, author, cfg)
        finally:
            if paused:
                with contextlib.suppress(BerthError):
                    await asyncio.to_thread(runtime.resume, ctr.id)
        self.registry.event("commit", ctr, comment=comment, imageID=image_id, imageRef=tags[0] if tags else "")
        return {"Id": image_id}

    def _commit_sync(self, ctr: Container, tags: list[str], comment: str, author: str, cfg: dict[str, Any]) -> str:
        images = self.life.images
        with tempfile.TemporaryFile(dir=self.registry.layout.root) as tmp:
            self.files.commit_layer(ctr, tmp)
            tmp.seek(0)
            ex = images.layers.extract(tmp)
        try:
            parent = images.get(ctr.image_id)
            base = json.loads(images.config_bytes(ctr.image_id))
            created = now()
            history = [*(base.get("history") or []), {"created": created, "created_by": " ".join(ctr.command),
                                                      **({"author": author} if author else {}),
                                                      **({"comment": comment} if comment else {})}]
            new = {**{k: v for k, v in base.items() if k not in ("history", "rootfs", "config", "container_config")},
                   "architecture": base.get("architecture") or "amd64", "os": base.get("os") or "linux",
                   "author": author, "comment": comment, "created": created, "container": ctr.id,
                   "container_config": ctr.config, "config": cfg, "docker_version": "berth",
                   "history": history,
                   "rootfs": {"type": "layers", "diff_ids": [*base["rootfs"]["diff_ids"], ex.diff_id]}}
            data = json.dumps(new, separators=(",", ":")).encode()
            layers = [NewLayer(d, None) for d in base["rootfs"]["diff_ids"]] + [NewLayer(ex.diff_id, ex)]
            image_id, _ = images.add(data, layers, tags, parent=parent.id)
        except BaseException:
            images.layers.discard(ex.staging)
            raise
        return image_id
