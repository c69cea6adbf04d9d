"""``docker build`` with the classic builder's protocol (``POST /build``): the context unpacked into a
directory of the build's own, the Dockerfile run instruction by instruction, each step an image
whose parent is the step before (the cache), RUN steps containers with the daemon's defaults, and
the output in the classic builder's words (``Step N/M : …``, `` ---> …``, ``Successfully built``).

Metadata instructions (ENV, LABEL, CMD …) make their image directly: no container is created for
them (dockerd 20.10 creates and removes one, and says so with "Running in" lines; COPY it does not).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator

from berth.build import context as bcontext
from berth.build.options import Options
from berth.build.parse import Dockerfile, parse
from berth.daemon.backends import buildremote
from berth.daemon.backends.buildrun import Message, Run
from berth.daemon.backends.containerfiles import ContainerFilesAPI
from berth.daemon.backends.containers import ContainerAPI
from berth.daemon.backends.images import ImageService
from berth.daemon.backends.threads import Reader, consume_in_thread
from berth.errors import InvalidParameter
from berth.image import reference
from berth.image.streams import Gunzip

FILES_CACHE_LIMIT = 2 << 30  # the small-files cache's bytes (context.trim_cache); builder prune empties it


class Builder:
    def __init__(self, containers: ContainerAPI, files: ContainerFilesAPI, images: ImageService, root: str) -> None:
        self.containers, self.files, self.images = containers, files, images
        self.store = images.store
        self.root = root
        self.files_cache = os.path.join(root, "files")  # small context files, by content (context.unpack)
        os.makedirs(self.files_cache, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)

    # ---- the request ------------------------------------------------------------------------------
    async def build(self, body: AsyncIterable[bytes], opts: Options) -> AsyncIterator[Message]:
        for t in opts.tags:
            reference.parse(t)  # a bad tag fails before any work (a status code)
        work = tempfile.mkdtemp(prefix="build-", dir=self.root)
        ctx = os.path.join(work, "context")
        os.mkdir(ctx, 0o755)  # what `COPY . /dir/` gives /dir (the build's own directory above is 0700)
        try:
            if opts.remote:
                async for _ in body:
                    pass  # a remote context: the body is empty (or ignored, as dockerd does)
                digests = await asyncio.to_thread(buildremote.fetch_context, opts.remote, work, ctx)
            else:
                digests = await self._unpack(body, ctx)
            df = await asyncio.to_thread(self._dockerfile, ctx, opts.dockerfile)
            run = Run(self, opts, df, ctx, digests)
            async for m in run.execute():
                yield m
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _unpack(self, body: AsyncIterable[bytes], ctx: str) -> dict[str, str]:
        def work(pipe: Reader) -> dict[str, str]:
            before = os.stat(self.files_cache).st_mtime_ns
            digests = bcontext.unpack(bcontext.open_context(pipe, Gunzip), ctx, self.files_cache)  # type: ignore[arg-type]
            if os.stat(self.files_cache).st_mtime_ns != before:  # the cache has new entries
                bcontext.trim_cache(self.files_cache, FILES_CACHE_LIMIT)
            return digests

        return await consume_in_thread(body, work)

    def _dockerfile(self, ctx: str, name: str) -> Dockerfile:
        data = bcontext.read_small(ctx, name)
        if data is None and name == "Dockerfile":
            data = bcontext.read_small(ctx, "dockerfile")
        if data is None:
            raise InvalidParameter(f"Cannot locate specified Dockerfile: {name}")
        bcontext.apply_ignore(ctx, bcontext.ignore(ctx))
        return parse(data)


