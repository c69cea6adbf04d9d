"""One build's run: its stages (those that do not need each other at once, in parallel; their
output in order), each instruction's step, the containers and images the steps make."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from berth.build import expand
from berth.build.options import Options
from berth.build.parse import Dockerfile, Instruction, parse
from berth.container import archive as carchive
from berth.container import logs as clogs
from berth.container import users
from berth.daemon.backends import buildcopy, buildprune, buildremote
from berth.daemon.backends import buildsteps as steps
from berth.daemon.backends.buildsteps import BuildFailed
from berth.daemon.backends.containerfiles import ContainerFilesAPI
from berth.daemon.backends.containers import ContainerAPI
from berth.daemon.backends.images import ImageService
from berth.errors import BerthError, NotFound, NotSupported
from berth.image import reference
from berth.image.store import ImageStore, NewLayer
from berth.linux import safepath


class Builder(Protocol):
    """What a run needs of the builder (``build.Builder``)."""
    containers: ContainerAPI
    files: ContainerFilesAPI
    images: ImageService
    store: ImageStore
    root: str

EMPTY_TAR_DIFF = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
Message = dict[str, Any]


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Run:
    """One build: its stages, their images, the containers it made."""

    def __init__(self, b: Builder, opts: Options, df: Dockerfile, ctx: str, digests: dict[str, str]) -> None:
        self.b, self.opts, self.df, self.ctx, self.digests = b, opts, df, ctx, digests
        self.stage_images: dict[str, str] = {}  # stage number → image ID (stage_image finds names)
        self.done: list[asyncio.Event] = []  # each stage's, set once its image is there
        self.made: list[str] = []  # intermediate containers still there
        self.cache_only: set[str] | None = None  # with cachefrom: the images the cache may use
        self.running: set[str] = set()  # RUN steps' containers between their start and their exit

    def say(self, text: str) -> Message:
        return {"stream": text}

    async def execute(self) -> AsyncIterator[Message]:
        ok = False
        error: Message | None = None
        try:
            async for m in self._stages():
                if not self.opts.quiet or m.get("quiet"):
                    m.pop("quiet", None)
                    yield m
            ok = True
        except BuildFailed as exc:
            error = {"errorDetail": {"code": exc.code, "message": exc.message} if exc.code else
                     {"message": exc.message}, "error": exc.message}
        except BerthError as exc:
            error = {"errorDetail": {"message": exc.message}, "error": exc.message}
        except (OSError, RecursionError, OverflowError, ValueError) as exc:  # what the input drove the OS to
            error = {"errorDetail": {"message": f"build failed: {exc}"}, "error": f"build failed: {exc}"}
        finally:
            # the containers go before the last message: a client that sees the end finds them gone
            if ok and self.opts.rm or self.opts.forcerm:
                for cid in list(self.made):
                    await self._drop(cid)
        if error is not None:
            yield error

    async def _stages(self) -> AsyncIterator[Message]:
        df, opts = self.df, self.opts
        last = df.stage_index(opts.target) if opts.target else len(df.stages) - 1
        for k, v in sorted(opts.labels.items()):  # as dockerd: a LABEL step each, at the end of the target
            df.stages[last].instructions.append(Instruction("LABEL", f"LABEL {k}={v}", (k, v), {"raw": "1"}))
        if opts.cache_from:
            self.cache_only = await asyncio.to_thread(buildprune.chains, self.b.store, opts.cache_from)
        stages = df.stages[:last + 1]
        total = len(df.meta_args) + sum(1 + len(s.instructions) for s in stages)
        meta: dict[str, str | None] = {}
        for n, ins in enumerate(df.meta_args, start=1):
            yield self.say(f"Step {n}/{total} : {ins.original}")
            yield self.say("\n")
            for raw in ins.args:
                name, eq, default = raw.partition("=")
                meta[name] = opts.build_args.get(name) if name in opts.build_args else (
                    expand.word(default, {k: v for k, v in meta.items() if v is not None}, df.escape) if eq else None)
        meta_env = {k: v for k, v in meta.items() if v is not None}
        first, n = [], len(df.meta_args)
        for stage in stages:
            first.append(n + 1)
            n += 1 + len(stage.instructions)
        # Every stage runs at once, waiting only for the stages it names (FROM, COPY --from); the
        # output goes out stage after stage, as the classic builder's would. A later stage's output
        # waits in its queue (bounded: a full queue holds that stage back).
        self.done = [asyncio.Event() for _ in stages]
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(256) for _ in stages]
        final: list[steps.StageState] = []

        async def run_stage(i: int) -> None:
            gen = self._stage(i, first[i], total, meta_env, final if i == len(stages) - 1 else [])
            try:
                async with contextlib.aclosing(gen):  # a cancelled stage's RUN container goes (see _run)
                    async for m in gen:
                        await queues[i].put(m)
                await queues[i].put(None)
            except asyncio.CancelledError:
                raise  # the reader has stopped: nothing waits for this stage's queue
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, in order (a cancel ends the wait)
                await queues[i].put(exc)

        tasks = [asyncio.create_task(run_stage(i)) for i in range(len(stages))]
        try:
            for q in queues:
                while (m := await q.get()) is not None:
                    if isinstance(m, BaseException):
                        raise m
                    yield m
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for cid in list(self.running):  # a stage stopped between two messages: its RUN step's container
                await self._drop(cid)
                self.running.discard(cid)
        state = final[0]
        if opts.quiet:  # as dockerd: the ID alone
            for tag in opts.tags:
                await self.b.images.image_tag(state.image_id, tag, "")
            yield {"stream": state.image_id + "\n", "quiet": True}
            return
        yield {"aux": {"ID": state.image_id}}
        yield self.say(f"Successfully built {_short(state.image_id)}\n")
        for tag in opts.tags:
            await self.b.images.image_tag(state.image_id, tag, "")  # the tag and its event, as docker tag
            yield self.say(f"Successfully tagged {reference.parse(tag).familiar}\n")

    async def _stage(self, index: int, step: int, total: int, meta_env: dict[str, str],
                     result: list[steps.StageState]) -> AsyncGenerator[Message, None]:
        stage = self.df.stages[index]
        yield self.say(f"Step {step}/{total} : {stage.from_.original}")
        yield self.say("\n")
        base = expand.word(stage.base, meta_env, self.df.escape)
        platform = expand.word(stage.from_.flags.get("platform", ""), meta_env, self.df.escape)
        if platform and platform not in ("linux", "linux/amd64") and platform != "$BUILDPLATFORM":
            raise BuildFailed(f"FROM --platform={platform}: berth builds for linux/amd64 only")
        pulled: list[Message] = []
        state = await self._from(base, index, pulled)
        state.meta = dict(meta_env)
        for m in pulled:
            yield m
        yield self.say(f" ---> {_short(state.image_id)}\n" if state.image_id else " ---> \n")
        async for m in self._triggers(state):
            yield m
        for ins in stage.instructions:
            step += 1
            yield self.say(f"Step {step}/{total} : {ins.original}")
            yield self.say("\n")
            async for m in self._dispatch(ins, state):
                yield m
            yield self.say(f" ---> {_short(state.image_id)}\n")
        if not state.image_id:
            raise BuildFailed("No image was generated. Is your Dockerfile empty?")
        self.stage_images[str(index)] = state.image_id
        self.done[index].set()
        result.append(state)

    async def stage_image(self, name: str, before: int) -> str | None:
        """The image of the stage ``name`` (its name or its number) defined before stage ``before``,
        once that stage is done; None when no such stage."""
        for i, s in enumerate(self.df.stages[:before]):
            if name.lower() in (s.name, str(i)):
                await self.done[i].wait()
                return self.stage_images[str(i)]
        return None

    async def _triggers(self, st: steps.StageState) -> AsyncIterator[Message]:
        """The base image's ONBUILD triggers, run as instructions of their own (no step numbers)."""
        triggers = [t for t in st.run.get("OnBuild") or [] if isinstance(t, str)]
        st.run["OnBuild"] = None
        if not triggers:
            return
        yield self.say(f"\x1b[91m# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n"
                       "\x1b[0m")
        for text in triggers:
            parsed = parse(f"FROM scratch\n{text}\n".encode())
            for ins in parsed.stages[0].instructions:
                if ins.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise BuildFailed(f"{ins.cmd} isn't allowed as an ONBUILD trigger")
                async for m in self._dispatch(ins, st):
                    yield m

    # ---- FROM --------------------------------------------------------------------------------------
    async def _from(self, base: str, index: int, pulled: list[Message]) -> steps.StageState:
        if base.lower() == "scratch":
            return steps.new_state("", None, self.df.escape, self.opts.build_args, index)
        image_id = await self.stage_image(base, index) or await self._image(base, pulled)
        cfg = json.loads(await asyncio.to_thread(self.b.store.config_bytes, image_id))
        return steps.new_state(image_id, cfg, self.df.escape, self.opts.build_args, index)

    async def _image(self, name: str, pulled: list[Message] | None = None) -> str:
        ref = reference.parse(name)
        if not self.opts.pull:
            try:
                return await asyncio.to_thread(self.b.store.resolve, str(ref) if not ref.digest else name)
            except NotFound:
                pass
        async for m in self.b.images.image_pull(ref.familiar_name, ref.digest or ref.tag or "latest", "",
                                                buildremote.registry_auth(self.opts.auth, ref.domain)):
            if pulled is not None:
                pulled.append(m)
        return await asyncio.to_thread(self.b.store.resolve, name)

    # ---- instructions ------------------------------------------------------------------------------
    async def _dispatch(self, ins: Instruction, st: steps.StageState) -> AsyncIterator[Message]:
        if ins.cmd == "RUN":
            async for m in self._run(ins, st):
                yield m
        elif ins.cmd in ("COPY", "ADD"):
            async for m in self._copy(ins, st):
                yield m
        else:
            comment, one_string = steps.metadata(ins, st)
            steps.check_size(st)
            if ins.cmd == "WORKDIR":
                async for m in self._files(st, comment, lambda root: os.close(root.mkdir_all(st.run["WorkingDir"]))):
                    yield m
                return
            if await self._commit_meta(st, comment, one_string):
                yield self.say(" ---> Using cache\n")

    def _container_config(self, st: steps.StageState, cmd: list[str]) -> dict[str, Any]:
        cc = json.loads(json.dumps(st.run))
        cc["Cmd"] = cmd
        return cc

    def _nop(self, st: steps.StageState, comment: str, one_string: bool) -> list[str]:
        return [*st.shell(), "#(nop) " + comment] if one_string else [*st.shell(), "#(nop) ", comment]

    async def _take(self, st: steps.StageState, image_id: str) -> None:
        """Go on from a cached step's image: its config (layers, history, run config) is the stage's."""
        cfg = json.loads(await asyncio.to_thread(self.b.store.config_bytes, image_id))
        st.base_config, st.run, st.image_id = cfg, steps.run_config(cfg, image_id), image_id

    async def _cached(self, st: steps.StageState, cc: dict[str, Any]) -> str | None:
        if self.opts.nocache:
            return None
        hit = await asyncio.to_thread(self.b.store.cached_child, st.image_id, cc, self.cache_only)
        if hit:
            await asyncio.to_thread(self.b.store.build_cache.mark, hit)  # used: kept longer by builder prune
        return hit

    async def _commit_meta(self, st: steps.StageState, comment: str, one_string: bool) -> bool:
        """An image for a metadata step (an empty layer); True when the cache had it."""
        cc = self._container_config(st, self._nop(st, comment, one_string))
        hit = await self._cached(st, cc)
        if hit:
            await self._take(st, hit)
            return True
        await asyncio.to_thread(self._new_image, st, cc, None, "")
        return False

    def _new_image(self, st: steps.StageState, cc: dict[str, Any], ex: Any, container: str,
                   record: bool = True) -> None:
        """Register the step's image: the stage's config with the run config, history and layer
        (``record`` False: no history entry, for the empty image a first step on scratch starts from)."""
        base = st.base_config
        empty = ex is None or ex.diff_id == EMPTY_TAR_DIFF
        diff_ids = list((base.get("rootfs") or {}).get("diff_ids") or [])
        entry: dict[str, Any] = {"created": _now(), "created_by": " ".join(cc.get("Cmd") or [])}
        if st.maintainer:
            entry["author"] = st.maintainer
        if empty:
            entry["empty_layer"] = True
        else:
            diff_ids.append(ex.diff_id)
        run = json.loads(json.dumps(st.run))
        run["Image"] = st.image_id
        cc = {**cc, "Image": st.image_id}
        new = {k: v for k, v in base.items() if k not in ("config", "container_config", "history", "rootfs",
                                                          "container", "created", "author")}
        new.update({"architecture": base.get("architecture") or "amd64", "os": base.get("os") or "linux",
                    "config": run, "container": container, "container_config": cc, "created": entry["created"],
                    "docker_version": "berth", "history": [*(base.get("history") or []), *([entry] if record else [])],
                    "rootfs": {"type": "layers", "diff_ids": diff_ids}})
        if st.maintainer:
            new["author"] = st.maintainer
        data = json.dumps(new, separators=(",", ":")).encode()
        layers = [NewLayer(d, None) for d in diff_ids]
        if not empty:
            layers[-1] = NewLayer(ex.diff_id, ex)
        try:
            image_id, _ = self.b.store.add(data, layers, [], parent=st.image_id or None)
        except BaseException:
            if ex is not None:
                self.b.store.layers.discard(ex.staging)
            raise
        if ex is not None and empty:
            self.b.store.layers.discard(ex.staging)
        self.b.store.build_cache.mark(image_id)
        st.image_id = image_id
        st.base_config = new
        st.run["Image"] = image_id

    async def _container(self, st: steps.StageState, cmd: list[str], env_extra: list[str]) -> str:
        if not st.image_id:
            raise BuildFailed("Please provide a source image with `from` prior to commit")
        env = list(st.run.get("Env") or []) + env_extra
        hc = {"NetworkMode": self.opts.network_mode or "default", "ExtraHosts": self.opts.extra_hosts or None,
              "LogConfig": {"Type": "json-file", "Config": {}}, **self.opts.host_config}
        body = {"Image": st.image_id, "Cmd": cmd, "Entrypoint": [], "Env": env, "User": st.run.get("User") or "",
                "WorkingDir": st.run.get("WorkingDir") or "", "Labels": st.run.get("Labels") or {},
                "Healthcheck": {"Test": ["NONE"]}, "HostConfig": hc}
        created = await asyncio.to_thread(self.b.containers.container_create, body, "", "1.41")
        self.made.append(created["Id"])
        return str(created["Id"])

    async def _commit_container(self, st: steps.StageState, cid: str, cc: dict[str, Any]) -> None:
        ctr = self.b.files.registry.get(cid)
        async with self.b.files.registry.lock(cid):  # an exit's unmount is over
            pass
        files, layers = self.b.files.files, self.b.store.layers
        upper = self.b.files.registry.layout.dir(cid, "upper")
        # a container that goes right after gives its upper directory to the layer store as it is (one
        # write of the step's files, not three); otherwise its changes are copied through a tar
        adopt = self.opts.rm and ctr.idmap is None and os.stat(upper).st_dev == os.stat(layers.tmp).st_dev

        def work() -> None:
            if adopt:
                files.release_upper(ctr)
                ufd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    ex = layers.adopt(upper, carchive.layer_stream(ufd, lambda p: False))
                finally:
                    os.close(ufd)
            else:
                with tempfile.TemporaryFile(dir=self.b.root) as tmp:
                    files.commit_layer(ctr, tmp)
                    tmp.seek(0)
                    ex = layers.extract(tmp)
            self._new_image(st, cc, ex, cid)

        await asyncio.to_thread(work)

    async def _drop(self, cid: str) -> None:
        """Remove a container this run made (its volumes too); gone already is fine."""
        with contextlib.suppress(BerthError):
            await self.b.containers.container_remove(cid, True, True)
        with contextlib.suppress(ValueError):
            self.made.remove(cid)

    async def _remove(self, cid: str) -> AsyncIterator[Message]:
        if self.opts.rm:
            await self._drop(cid)
            yield self.say(f"Removing intermediate container {cid[:12]}\n")

    async def _run(self, ins: Instruction, st: steps.StageState) -> AsyncIterator[Message]:
        cmd, saved = steps.run_command(ins, st)
        cc = self._container_config(st, saved)
        hit = await self._cached(st, cc)
        if hit:
            await self._take(st, hit)
            yield self.say(" ---> Using cache\n")
            return
        cid = await self._container(st, cmd, st.arg_env() + st.proxy_env())
        yield self.say(f" ---> Running in {cid[:12]}\n")
        fut = await self.b.containers.container_wait(cid, "next-exit")
        self.running.add(cid)
        try:
            await self.b.containers.container_start(cid)
            async for chunk in self._output(cid):
                yield chunk
            code = await fut
            self.running.discard(cid)
        except (asyncio.CancelledError, GeneratorExit):  # another stage failed, or the client went
            await asyncio.shield(self._drop(cid))
            raise
        if code != 0:
            raise BuildFailed(f"The command '{steps.shown(cmd)}' returned a non-zero code: {code}", code)
        await self._commit_container(st, cid, cc)
        async for m in self._remove(cid):
            yield m

    async def _output(self, cid: str) -> AsyncIterator[Message]:
        ctr = self.b.files.registry.get(cid)
        async for line in self.b.containers.life.logs.output(ctr, stdout=True, stderr=True, since=0, until=None,
                                                             tail=None, follow=True, from_start=True):
            if line is None:
                continue
            text = line.data.decode("utf-8", "replace")
            yield self.say(f"\x1b[91m{text}\x1b[0m" if line.stream == clogs.STDERR else text)

    async def _files(self, st: steps.StageState, comment: str, change: Any) -> AsyncIterator[Message]:
        """A step that changes files without running anything: a container that never starts."""
        if not st.image_id:  # FROM scratch: the first file step starts from an empty image (an earlier one's)
            scratch = self._container_config(st, self._nop(st, "FROM scratch", False))
            if base := await self._cached(st, scratch):
                await self._take(st, base)
            else:
                await asyncio.to_thread(self._new_image, st, scratch, None, "", False)
        cc = self._container_config(st, self._nop(st, comment, True))
        hit = await self._cached(st, cc)
        if hit:
            await self._take(st, hit)
            yield self.say(" ---> Using cache\n")
            return
        cid = await self._container(st, ["/bin/sh"], [])
        ctr = self.b.files.registry.get(cid)

        def work() -> None:
            with self.b.files.life.rootfs.root_for(ctr) as root:
                change(root)

        await asyncio.to_thread(work)
        await self._commit_container(st, cid, cc)
        if self.opts.rm:
            await self._drop(cid)

    def _download(self, ins: Instruction, st: steps.StageState, into: str) -> list[str]:
        """ADD's URLs, each into a directory of its own under ``into``: their paths there."""
        args = [expand.word(a, st.env, st.escape) for a in ins.args[:-1]]
        if not all("://" in a for a in args):
            raise NotSupported("ADD of URLs and local files together is not supported by berth yet")
        names = []
        for n, url in enumerate(args):
            os.mkdir(os.path.join(into, str(n)))
            names.append(f"{n}/{buildremote.add_url(url, os.path.join(into, str(n)))}")
        return names

    async def _copy(self, ins: Instruction, st: steps.StageState) -> AsyncIterator[Message]:
        downloads, names = "", None
        if ins.cmd == "ADD" and any("://" in a for a in ins.args[:-1]):
            downloads = tempfile.mkdtemp(prefix="add-", dir=os.path.dirname(self.ctx))
            names = await asyncio.to_thread(self._download, ins, st, downloads)
        plan = await asyncio.to_thread(buildcopy.plan, ins, st, downloads or self.ctx,
                                       {} if downloads else self.digests, names)
        src_ctr = None
        try:
            if plan.from_image:
                image_id = await self.stage_image(plan.from_image, st.stage) or await self._image(plan.from_image)
                src = steps.new_state(image_id, None, self.df.escape, {})
                src_cid = await self._container(src, ["/bin/sh"], [])
                src_ctr = self.b.files.registry.get(src_cid)

                def complete() -> None:
                    assert src_ctr is not None
                    with self.b.files.life.rootfs.root_for(src_ctr) as root:
                        buildcopy.plan_from_root(plan, root)

                await asyncio.to_thread(complete)

            def change(dst: Any) -> None:
                owner = (0, 0)
                if plan.chown:
                    u = users.resolve_user(dst, plan.chown)
                    owner = (u.uid, u.gid)
                with contextlib.ExitStack() as stack:
                    src = stack.enter_context(self.b.files.life.rootfs.root_for(src_ctr)) if src_ctr is not None \
                        else stack.enter_context(safepath.Root.at(plan.root, label="build context"))
                    buildcopy.apply(plan, src, dst, owner)

            async for m in self._files(st, plan.comment, change):
                yield m
        finally:
            if src_ctr is not None:
                await self._drop(src_ctr.id)


