"""The image backend: the api's ImageBackend over berth.image, work in threads, events on the bus."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import fnmatch
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from berth.api import versions
from berth.daemon.backends import buildprune
from berth.daemon.backends.threads import (
    abandon,
    body_reader,
    consume_in_thread,
    iterate_in_thread,
    run_in_own_thread,
)
from berth.daemon.events import EventBus, make_event
from berth.errors import Conflict, InvalidParameter
from berth.image import archive, importer, manifests, reference
from berth.image.pull import Puller, describe, via_mirrors
from berth.image.push import Pusher
from berth.image.registry import Credentials, Registry, Settings, registry_domain
from berth.image.store import ImageRecord, ImageStore


def _unix(created: str) -> int:
    if not created:
        return 0
    try:
        return int(dt.datetime.fromisoformat(created.replace("Z", "+00:00")[:26] + "+00:00"
                                             if created.endswith("Z") else created).timestamp())
    except ValueError:
        try:
            return int(dt.datetime.fromisoformat(created[:19]).replace(tzinfo=dt.UTC).timestamp())
        except ValueError:
            return 0


def _familiar(refs: list[str]) -> list[str]:
    return [reference.parse(r).familiar for r in refs]


class ImageService:
    def __init__(self, store: ImageStore, bus: EventBus, in_use: Callable[[], set[str]] = set,
                 df_extra: Callable[[], dict[str, Any]] = dict, registries: Settings | None = None) -> None:
        self.store = store
        self.registries = registries or Settings()
        self.bus = bus
        self.in_use = in_use  # IDs of images that containers use
        self.df_extra = df_extra  # the containers' and volumes' parts of /system/df

    def _event(self, action: str, image_id: str, name: str = "") -> None:
        attrs = {"name": name} if name else {}
        self.bus.publish(make_event("image", action, name or image_id, attrs))

    async def _resolve(self, name: str) -> str:
        return await asyncio.to_thread(self.store.resolve, name)

    # ---- listing and inspecting ----------------------------------------------------------------
    def _summary(self, rec: ImageRecord, cfg: dict[str, Any], api_version: str) -> dict[str, Any]:
        labels = (cfg.get("config") or {}).get("Labels") or {}
        out: dict[str, Any] = {
            "Id": rec.id, "ParentId": rec.parent or "", "RepoTags": _familiar(rec.tags),
            "RepoDigests": _familiar(rec.digests), "Created": _unix(rec.created), "Size": rec.size,
            "SharedSize": -1, "Labels": labels or {}, "Containers": -1,
        }
        if not versions.at_least(api_version, "1.44"):
            out["VirtualSize"] = rec.size
        return out

    def _list(self, filters: dict[str, list[str]], api_version: str, all_: bool = True) -> list[dict[str, Any]]:
        records = self.store.all()
        if not all_:  # as dockerd: untagged images under others (build steps) only with -a; berth's build cache too
            hidden = self.store.build_cache.ids() | {r.parent for r in records if r.parent}
            records = [r for r in records if r.tags or r.digests or r.id not in hidden]
        if "dangling" in filters:
            want = filters["dangling"][-1].lower()
            if want not in ("true", "false", "1", "0"):
                raise InvalidParameter(f"invalid filter 'dangling={want}'")
            dangling = want in ("true", "1")
            records = [r for r in records if (not r.tags) == dangling]
        for key in ("before", "since"):
            for value in filters.get(key, []):
                pivot = self.store.get(self.store.resolve(value))
                records = [r for r in records if (r.added < pivot.added if key == "before" else r.added > pivot.added)]
        if "reference" in filters:
            def matches(rec: ImageRecord) -> bool:
                for ref in rec.tags:
                    r = reference.parse(ref)
                    for pattern in filters["reference"]:
                        colon = pattern.rfind(":")  # a tag's colon comes after the last slash (host:port/x)
                        name_part, tag_part = (pattern[:colon], pattern[colon + 1:]) \
                            if colon > pattern.rfind("/") else (pattern, "")
                        names = (r.familiar_name, r.name)
                        if any(fnmatch.fnmatchcase(n, name_part) for n in names) and \
                                (not tag_part or fnmatch.fnmatchcase(r.tag or "", tag_part)):
                            return True
                return False
            records = [r for r in records if matches(r)]
        out = []
        for rec in records:
            cfg = self.store.config(rec.id)
            if "label" in filters:
                labels = (cfg.get("config") or {}).get("Labels") or {}
                if not all(lbl.partition("=")[0] in labels and (not lbl.partition("=")[1]
                           or labels[lbl.partition("=")[0]] == lbl.partition("=")[2]) for lbl in filters["label"]):
                    continue
            out.append(self._summary(rec, cfg, api_version))
        return out

    async def images_list(self, all_: bool, digests: bool, filters: dict[str, list[str]],
                          api_version: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._list, filters, api_version, all_)

    def _inspect(self, name: str, api_version: str) -> dict[str, Any]:
        rec = self.store.get(self.store.resolve(name))
        cfg = self.store.config(rec.id)
        rows = self.store.layer_rows(rec.layers)
        lower = ":".join(self.store.layers.diff_path(c) for c in reversed(rec.layers))
        out: dict[str, Any] = {
            "Id": rec.id, "RepoTags": _familiar(rec.tags), "RepoDigests": _familiar(rec.digests),
            "Parent": rec.parent or "", "Comment": cfg.get("comment", ""), "Created": rec.created,
            "DockerVersion": cfg.get("docker_version", ""), "Author": cfg.get("author", ""),
            "Config": cfg.get("config"), "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", ""), "Size": rec.size,
            "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": lower}},
            "RootFS": {"Type": "layers", "Layers": [r["diff_id"] for r in rows]},
            "Metadata": {"LastTagTime": dt.datetime.fromtimestamp(rec.added, dt.UTC).isoformat()},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if not versions.at_least(api_version, "1.44"):
            out["VirtualSize"] = rec.size
        if not versions.at_least(api_version, "1.45"):
            out["Container"] = cfg.get("container", "")
            out["ContainerConfig"] = cfg.get("container_config") or {}
        return out

    async def image_inspect(self, name: str, api_version: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._inspect, name, api_version)

    def _history(self, name: str) -> list[dict[str, Any]]:
        rec = self.store.get(self.store.resolve(name))
        cfg = self.store.config(rec.id)
        rows = self.store.layer_rows(rec.layers)
        sizes = [r["size"] for r in rows]
        entries = []
        layer_i = 0
        for h in cfg.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                size = sizes[layer_i] if layer_i < len(sizes) else 0
                layer_i += 1
            entries.append({"Id": "<missing>", "Created": _unix(h.get("created", "")),
                            "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                            "Comment": h.get("comment", "")})
        if not entries:
            entries = [{"Id": "<missing>", "Created": _unix(rec.created), "CreatedBy": "", "Tags": None,
                        "Size": rec.size, "Comment": ""}]
        entries.reverse()
        entries[0]["Id"] = rec.id
        entries[0]["Tags"] = _familiar(rec.tags) or None
        return entries

    async def image_history(self, name: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._history, name)

    # ---- changing -----------------------------------------------------------------------------
    async def image_tag(self, name: str, repo: str, tag: str) -> None:
        image_id = await self._resolve(name)
        ref = await asyncio.to_thread(self.store.tag, image_id, f"{repo}:{tag}" if tag else repo)
        self._event("tag", image_id, ref.familiar)

    async def image_delete(self, name: str, force: bool, noprune: bool) -> list[dict[str, str]]:
        image_id = await self._resolve(name)
        used = image_id in self.in_use()
        if used and not force:
            rec = await asyncio.to_thread(self.store.get, image_id)
            by_tag = reference.looks_like_id(name) is None and len(rec.tags) > 1
            if not by_tag:
                raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is being "
                               "used by a container")
        out = await asyncio.to_thread(self.store.delete, name, force, noprune, used)
        for item in out:
            if "Untagged" in item:
                self._event("untag", image_id, item["Untagged"])
        if any(item.get("Deleted") == image_id for item in out):
            self._event("delete", image_id)
        return out

    def _prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        dangling_only = filters.get("dangling", ["true"])[-1].lower() in ("true", "1")
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        used = self.in_use()
        cache = self.store.build_cache.ids()
        for rec in self.store.all():
            if dangling_only and rec.tags or rec.id in used:
                continue
            if not rec.tags and (rec.id in cache or self.store.has_children(rec.id)):
                continue  # build steps' images are the build cache (builder prune's); parents stay, as dockerd
            sizes = {r["chain_id"]: r["size"] for r in self.store.layer_rows(rec.layers)}
            for item in self.store.delete(rec.id, force=True, noprune=False):
                deleted.append(item)
                reclaimed += sizes.get(item.get("Deleted", ""), 0)
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def images_prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        result = await asyncio.to_thread(self._prune, filters)
        self.bus.publish(make_event("image", "prune", "", {"reclaimed": str(result["SpaceReclaimed"])}))
        return result

    async def image_import(self, body: AsyncIterable[bytes], repo: str, tag: str, message: str,
                           changes: list[str]) -> str:
        tags = []
        if repo:
            tags.append(f"{repo}:{tag}" if tag else repo)
            reference.parse(tags[0])  # a bad name fails before any byte is read
        image_id = await consume_in_thread(body, lambda pipe: importer.import_rootfs(self.store, pipe, tags, message,
                                                                                  changes))
        self._event("import", image_id, reference.parse(tags[0]).familiar if tags else "")
        return image_id

    async def image_load(self, body: AsyncIterable[bytes], quiet: bool) -> AsyncIterator[dict[str, Any]]:
        reader, pipe, feeder = body_reader(body)
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def report(msg: dict[str, Any]) -> None:
            if not quiet:
                loop.call_soon_threadsafe(progress.put_nowait, msg)

        work = asyncio.create_task(run_in_own_thread(archive.load, self.store, reader, report))
        try:
            while not work.done():
                getter = asyncio.create_task(progress.get())
                done, _ = await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield _progress_message(getter.result())
                else:
                    getter.cancel()
            while not progress.empty():
                yield _progress_message(progress.get_nowait())
            loaded = work.result()
            if feeder is not None:
                await feeder
        except BaseException:
            await abandon(work, pipe, feeder)
            raise
        for item in loaded:
            if item.tags:
                for t in item.tags:
                    name = reference.parse(t).familiar
                    self._event("load", item.image_id, name)
                    yield {"stream": f"Loaded image: {name}\n"}
            else:
                self._event("load", item.image_id)
                yield {"stream": f"Loaded image ID: {item.image_id}\n"}

    async def image_pull(self, image: str, tag: str, platform: str, auth: str) -> AsyncIterator[dict[str, Any]]:
        """``docker pull``'s messages as they come; an error before the first one is a status code."""
        text = image if not tag else (f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}")
        ref = reference.parse(text, default_tag=False)
        every_tag = not ref.tag and not ref.digest  # a name alone: every tag, as dockerd (docker pull -a)
        want = manifests.parse_platform(platform) if platform else None
        credentials = Credentials.from_header(auth)
        pulled: list[Any] = []

        def work(report: Callable[[dict[str, Any]], None]) -> None:
            puller = Puller(self.store, self.registries, credentials, report)
            pulled.extend(puller.pull_all(ref, want) if every_tag else [puller.pull(ref, want)])

        async for msg in _with_progress(work):
            yield msg
        for p in pulled:
            self._event("pull", p.image_id, p.name)

    async def image_push(self, name: str, tag: str, auth: str) -> AsyncIterator[dict[str, Any]]:
        """``docker push``'s messages as they come."""
        credentials = Credentials.from_header(auth)
        reference.parse(name if not tag else f"{name}:{tag}", default_tag=False)  # a 400 before anything
        pushed: list[Any] = []
        async for msg in _with_progress(lambda report: pushed.extend(
                Pusher(self.store, self.registries, credentials, report).push(name, tag))):
            yield msg
        for p in pushed:
            self._event("push", f"{name}:{p.tag}")

    async def auth(self, body: dict[str, Any]) -> dict[str, Any]:
        """docker login: the credentials tried against the registry; nothing is kept here (the client
        keeps them)."""
        server = str(body.get("serveraddress") or "")
        creds = Credentials(str(body.get("username") or ""), str(body.get("password") or ""),
                            str(body.get("identitytoken") or ""))
        domain = registry_domain(server)

        def login() -> str:
            reg = Registry(domain, self.registries, creds)
            try:
                return reg.login()
            finally:
                reg.close()

        token = await asyncio.to_thread(login)
        return {"Status": "Login Succeeded", "IdentityToken": token}

    async def search(self, term: str, limit: int, filters: dict[str, list[str]], auth: str) -> list[dict[str, Any]]:
        """GET /images/search: the registry the term names (Docker Hub without one), its v1 search."""
        domain, _, query = term.partition("/") if "/" in term and _is_domain(term.split("/", 1)[0]) else \
            ("docker.io", "", term)
        if not query:
            raise InvalidParameter("search term is empty")
        stars = [int(v) for v in filters.get("stars", []) if v.isdigit()]
        if filters.get("stars") and not stars:
            raise InvalidParameter(f"invalid filter 'stars={filters['stars'][0]}'")
        official = {v.lower() for v in filters.get("is-official", [])}
        automated = {v.lower() for v in filters.get("is-automated", [])}
        for values, key in ((official, "is-official"), (automated, "is-automated")):
            if values - {"true", "false", "1", "0"}:
                raise InvalidParameter(f"invalid filter '{key}={sorted(values)[0]}'")

        def search() -> list[dict[str, Any]]:
            reg = Registry(domain, self.registries, Credentials.from_header(auth))
            try:
                return reg.search(query, limit)
            finally:
                reg.close()

        found = await asyncio.to_thread(search)
        return [r for r in found
                if (not stars or r["star_count"] >= max(stars))
                and (not official or r["is_official"] == (official & {"true", "1"} != set()))
                and (not automated or r["is_automated"] == (automated & {"true", "1"} != set()))]

    async def distribution(self, name: str, auth: str) -> dict[str, Any]:
        """GET /distribution/{name}/json: the manifest's descriptor and the platforms it offers."""
        ref = reference.parse(name)

        creds = Credentials.from_header(auth)
        return await asyncio.to_thread(via_mirrors, ref, self.registries, creds, lambda reg: describe(reg, ref))

    async def image_save(self, names: list[str]) -> AsyncIterator[bytes]:
        stream = await asyncio.to_thread(archive.save, self.store, names)  # resolves every name now
        for name in names:
            self._event("save", await self._resolve(name), name)
        return iterate_in_thread(lambda: stream)

    async def system_df_images(self) -> dict[str, Any]:
        def df() -> dict[str, Any]:
            images = []
            layers_size = 0
            seen: set[str] = set()
            build_cache = buildprune.entries(self.store, self.in_use())
            cached = {"sha256:" + c["ID"] for c in build_cache}
            for rec in self.store.all():
                if rec.id in cached:
                    continue
                cfg = self.store.config(rec.id)
                s = self._summary(rec, cfg, "1.47")
                rows = self.store.layer_rows(rec.layers)
                shared = 0
                for r in rows:
                    if r["chain_id"] not in seen:
                        seen.add(r["chain_id"])
                        layers_size += r["size"]
                s["SharedSize"] = shared
                s["Containers"] = 0
                images.append(s)
            return {"LayersSize": layers_size, "Images": images, "Containers": [], "Volumes": [],
                    "BuildCache": build_cache, **self.df_extra()}
        return await asyncio.to_thread(df)

    def counts(self) -> int:
        return self.store.count()


async def _with_progress(work: Callable[[Callable[[dict[str, Any]], None]], None]) -> AsyncIterator[dict[str, Any]]:
    """``work(report)`` in a thread of its own; what it reports, yielded as it comes (bounded: a slow
    reader loses Downloading/Pushing messages, never the others); its error raised at the end."""
    loop = asyncio.get_running_loop()
    progress: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10000)
    pending: collections.deque[dict[str, Any]] = collections.deque()
    woken = threading.Event()  # the loop has a drain coming: the next reports need not wake it again

    def drain() -> None:
        woken.clear()
        while pending:
            _offer(progress, pending.popleft())

    def report(msg: dict[str, Any]) -> None:
        # one wakeup of the loop for a burst of reports from the download threads, not one each: each
        # wakeup costs the loop a spin (linux/spinpoll.py), a core's worth on a 2-core machine
        pending.append(msg)
        if not woken.is_set():
            woken.set()
            loop.call_soon_threadsafe(drain)

    task = asyncio.create_task(run_in_own_thread(work, report))
    try:
        while not task.done():
            getter = asyncio.create_task(progress.get())
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
        drain()
        while not progress.empty():
            yield progress.get_nowait()
        task.result()
    except BaseException:
        await asyncio.gather(task, return_exceptions=True)
        raise


def _is_domain(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def _offer(q: asyncio.Queue[dict[str, Any]], msg: dict[str, Any]) -> None:
    if q.full() and msg.get("status") in ("Downloading", "Pushing"):
        return
    try:
        q.put_nowait(msg)
    except asyncio.QueueFull:
        pass


def _progress_message(m: dict[str, Any]) -> dict[str, Any]:
    total = m.get("total", 0)
    current = total if m["status"] == "Loaded layer" else 0
    return {"status": "Loading layer", "progressDetail": {"current": current, "total": total},
            "id": m.get("id", "")}
