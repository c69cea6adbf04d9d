"""docker pull: a manifest (through a manifest list or index, for the platform asked), the config,
and the layers, downloaded in parallel and each extracted as its bytes arrive (dockerd downloads,
then extracts one layer after another). Layers already in the store are skipped by chain ID. Every
blob is checked against its digest as it streams; nothing is registered until every layer is in,
and a failure leaves nothing behind (the staged layers are discarded).

Progress goes out in dockerd's messages, so the docker CLI draws its bars.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from berth.errors import BerthError, InvalidParameter, NotFound, Unavailable
from berth.image import manifests, reference
from berth.image.distmeta import Blob, PulledManifest
from berth.image.layers import Extracted, chain_ids
from berth.image.registry import DOCKER_HUB, AuthFailed, Credentials, Registry, Settings
from berth.image.store import ImageStore, NewLayer, digest_of, parse_config

Progress = Callable[[dict[str, Any]], None]
T = TypeVar("T")
log = logging.getLogger("berth.pull")
REPORT_EVERY = 512 << 10  # a Downloading message per this many bytes of a layer
RETRIES = 5  # broken downloads of one blob taken up again


@dataclass(frozen=True)
class Pulled:
    image_id: str
    digest: str  # the manifest's (or the list's, when pulled through one)
    name: str  # familiar name:tag or name@digest
    new: bool  # the image was not in the store before


class _Stream:
    """A blob's chunks as a file, hashed as read, with progress, bounded by the descriptor's size.

    A read may return fewer bytes than asked, as a raw file's does (the readers above it loop): a
    chunk is handed on as it came from the connection, uncopied, unless a small read splits it."""

    def __init__(self, chunks: Iterator[bytes], size: int, on_bytes: Callable[[int], None]) -> None:
        self.chunks: Iterator[bytes] | None = chunks
        self.limit, self.on_bytes = size, on_bytes
        self.rest = memoryview(b"")  # what a small read left of the last chunk
        self.read_total = 0
        self.sha = hashlib.sha256()

    def _next(self) -> bytes:
        if self.chunks is None:
            return b""
        for chunk in self.chunks:
            if not chunk:
                continue
            self.read_total += len(chunk)
            if self.limit and self.read_total > self.limit:
                raise InvalidParameter(f"the registry sent more than the {self.limit} bytes the manifest gives")
            self.sha.update(chunk)
            self.on_bytes(self.read_total)
            return chunk
        self.chunks = None
        return b""

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [bytes(self.rest)]
            self.rest = memoryview(b"")
            while chunk := self._next():
                parts.append(chunk)
            return b"".join(parts)
        if not self.rest:
            chunk = self._next()
            if len(chunk) <= n:
                return chunk
            self.rest = memoryview(chunk)
        out = bytes(self.rest[:n])
        self.rest = self.rest[n:]
        return out

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()

    @property
    def size(self) -> int:
        return self.read_total

    def drain(self) -> None:
        self.rest = memoryview(b"")
        while self._next():
            pass


def _verified(body: bytes, digest: str, what: str) -> bytes:
    if digest_of(body) != digest:
        raise InvalidParameter(f"{what} verification failed for digest {digest}")
    return body


def describe(reg: Registry, ref: reference.Reference) -> dict[str, Any]:
    """What GET /distribution/{name}/json answers: the descriptor of what the reference names, and
    the platforms of a list's entries (or of the image's config)."""
    body, content_type = reg.manifest(ref.path, ref.digest or ref.tag or "latest", manifests.ACCEPT)
    doc = manifests.parse(body, content_type)
    desc = {"mediaType": doc.media_type, "digest": digest_of(body), "size": len(body)}
    if isinstance(doc, manifests.Index):
        platforms = [{"architecture": d.platform.architecture, "os": d.platform.os,
                      **({"variant": d.platform.variant} if d.platform.variant else {})}
                     for d in doc.manifests if d.platform is not None]
    else:
        cfg = parse_config(_verified(reg.blob_bytes(ref.path, doc.config.digest), doc.config.digest, "config"))
        platforms = [{"architecture": str(cfg.get("architecture") or ""), "os": str(cfg.get("os") or "")}]
    return {"Descriptor": desc, "Platforms": platforms}


def via_mirrors(ref: reference.Reference, settings: Settings, credentials: Credentials,
                fn: Callable[[Registry], T]) -> T:
    """``fn`` on the reference's registry; for Docker Hub, on each mirror in turn first (one that
    fails or lacks the image hands over to the next, as dockerd)."""
    mirrors = settings.mirrors if ref.domain == DOCKER_HUB else ()
    for mirror in (*mirrors, ""):
        reg = Registry(ref.domain, settings, credentials, mirror=mirror)
        try:
            return fn(reg)
        except (Unavailable, NotFound, AuthFailed) as exc:
            if not mirror:
                raise
            log.info("mirror %s: %s; trying the next", mirror, exc.message)
        finally:
            reg.close()
    raise AssertionError("unreachable")  # pragma: no cover


class Puller:
    def __init__(self, store: ImageStore, settings: Settings, credentials: Credentials, progress: Progress) -> None:
        self.store, self.settings, self.progress = store, settings, progress
        self.credentials = credentials
        self.cancelled = threading.Event()

    def _via(self, ref: reference.Reference, fn: Callable[[Registry], T]) -> T:
        return via_mirrors(ref, self.settings, self.credentials, fn)

    def pull(self, ref: reference.Reference, platform: manifests.Platform | None) -> Pulled:
        return self._via(ref, lambda reg: self._pull(reg, ref, platform))

    def pull_all(self, ref: reference.Reference, platform: manifests.Platform | None) -> list[Pulled]:
        """Every tag of the repository (docker pull --all-tags), one after the other."""
        tags = sorted(self._via(ref, lambda reg: reg.tags(ref.path)))
        if not tags:
            raise NotFound(f"no tags in repository {ref.familiar_name}")
        return [self.pull(reference.Reference(ref.domain, ref.path, tag), platform) for tag in tags]

    def _manifest(self, reg: Registry, ref: reference.Reference, want: str) -> tuple[bytes, str]:
        try:
            return reg.manifest(ref.path, want, manifests.ACCEPT)
        except NotFound as exc:
            if exc.message.startswith("name unknown"):  # NAME_UNKNOWN: the repository is not there
                raise NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may "
                               f"require 'docker login': denied: {exc.message}") from None
            raise NotFound(f"manifest for {ref.familiar} not found: {exc.message}") from None

    def _pull(self, reg: Registry, ref: reference.Reference, platform: manifests.Platform | None) -> Pulled:
        want = ref.digest or ref.tag or "latest"
        body, content_type = self._manifest(reg, ref, want)  # before any message: a 404 is a status code
        self.progress({"status": f"Pulling from {ref.path if ref.domain != 'docker.io' else ref.familiar_name}",
                       "id": ref.tag or ref.digest or "latest"})
        top_digest = digest_of(body)
        if ref.digest:
            _verified(body, ref.digest, "manifest")
        doc = manifests.parse(body, content_type)
        if isinstance(doc, manifests.Index):
            entry = manifests.choose(doc, platform or manifests.host_platform())
            body, content_type = reg.manifest(ref.path, entry.digest, manifests.ACCEPT)
            _verified(body, entry.digest, "manifest")
            doc = manifests.parse(body, content_type)
            if not isinstance(doc, manifests.Manifest):
                raise InvalidParameter("a manifest list names another manifest list")
        config = _verified(reg.blob_bytes(ref.path, doc.config.digest), doc.config.digest, "config")
        cfg = parse_config(config)
        if platform is not None and (cfg.get("os"), cfg.get("architecture")) != (platform.os, platform.architecture):
            raise NotFound(f"image with reference {ref.familiar} was found but does not match the specified platform: "
                           f"wanted {platform}, actual: {cfg.get('os')}/{cfg.get('architecture')}")
        diff_ids = cfg["rootfs"]["diff_ids"]
        if len(diff_ids) != len(doc.layers):
            raise InvalidParameter(f"the image config lists {len(diff_ids)} layers, the manifest {len(doc.layers)}")
        image_id = digest_of(config)
        existed = self._exists(image_id)
        layers = self._layers(reg, ref, doc, diff_ids)
        name = ref.familiar_name
        tags = [str(ref)] if ref.tag else []
        tags.append(f"{ref.name}@{top_digest}")
        self.store.add(config, layers, tags)
        self.store.meta.add_blobs([(diff_id, Blob(d.digest, d.media_type or manifests.DOCKER_LAYER, d.size,
                                                  ref.domain, ref.path))
                                   for diff_id, d in zip(diff_ids, doc.layers, strict=True)])
        self.store.meta.add_manifest(image_id, PulledManifest(ref.domain, ref.path, digest_of(body), doc.media_type,
                                                              body))
        self.progress({"status": f"Digest: {top_digest}"})
        shown = f"{name}:{ref.tag}" if ref.tag else f"{name}@{ref.digest}"
        self.progress({"status": f"Status: {'Image is up to date' if existed else 'Downloaded newer image'} for "
                                 f"{shown}"})
        return Pulled(image_id, top_digest, shown, not existed)

    def _exists(self, image_id: str) -> bool:
        try:
            self.store.get(image_id)
            return True
        except NotFound:
            return False

    def _layers(self, reg: Registry, ref: reference.Reference, doc: manifests.Manifest,
                diff_ids: list[str]) -> list[NewLayer]:
        chains = chain_ids(diff_ids)
        todo = []
        for i, d in enumerate(doc.layers):
            short = d.digest[7:19]
            if self.store.has_layer(chains[i]):
                self.progress({"status": "Already exists", "progressDetail": {}, "id": short})
            else:
                self.progress({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
                todo.append(i)
        done: dict[int, Extracted] = {}
        if todo:
            workers = max(1, min(self.settings.max_downloads, len(todo)))
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
                futures = {pool.submit(self._one, reg, ref.path, doc.layers[i], diff_ids[i]): i for i in todo}
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        done[futures[fut]] = fut.result()
                except BaseException:
                    self.cancelled.set()
                    for f in futures:
                        f.cancel()
                    for f in futures:  # each finished layer's staging goes, so nothing is left behind
                        if not f.cancelled():
                            try:
                                self.store.layers.discard(f.result().staging)
                            except BaseException:  # noqa: BLE001 - its own failure, already being raised
                                pass
                    raise
        return [NewLayer(diff_ids[i], done.get(i)) for i in range(len(doc.layers))]

    def _resumable(self, reg: Registry, repo: str, d: manifests.Descriptor, short: str) -> Generator[bytes, None, None]:
        """A blob's bytes; a connection that breaks before the end is taken up where it broke (Range),
        up to RETRIES times with a growing pause, as dockerd retries ("Retrying in N seconds")."""
        offset, failures = 0, 0
        while True:
            try:
                with reg.blob(repo, d.digest, offset) as resp:
                    if offset and resp.status_code != 206:
                        raise Unavailable(f"the registry {reg.domain} cannot resume blob {d.digest} (no Range)")
                    for chunk in resp.iter_bytes():
                        offset += len(chunk)
                        yield chunk
                if not d.size or offset >= d.size:
                    return
                raise httpx.ReadError("the registry closed the connection before the end of the blob")
            except (httpx.TransportError, Unavailable) as exc:
                failures += 1
                if failures > RETRIES or self.cancelled.is_set() or isinstance(exc, Unavailable) and offset:
                    raise Unavailable(f"downloading blob {d.digest}: {exc}") from None
                pause = min(5, failures)
                self.progress({"status": f"Retrying in {pause} second{'s' if pause > 1 else ''}",
                               "progressDetail": {}, "id": short})
                if self.cancelled.wait(pause):
                    raise Unavailable("cancelled") from None

    def _one(self, reg: Registry, repo: str, d: manifests.Descriptor, diff_id: str) -> Extracted:
        short = d.digest[7:19]
        last = [0]

        def on_bytes(n: int) -> None:
            if self.cancelled.is_set():
                raise BerthError("cancelled")
            if n - last[0] >= REPORT_EVERY or n == d.size:
                last[0] = n
                self.progress({"status": "Downloading", "progressDetail": {"current": n, "total": d.size},
                               "id": short})

        chunks = self._resumable(reg, repo, d, short)
        try:
            stream = _Stream(chunks, d.size, on_bytes)
            try:
                ex = self.store.layers.extract(stream, src_hashed=True)  # type: ignore[arg-type]
            except InvalidParameter:
                # the layer was extracted as it arrived: bytes that break the tar or the compression
                # are most often bytes that do not match the digest; say that when it is so
                stream.drain()
                if stream.digest != d.digest:
                    raise InvalidParameter(f"filesystem layer verification failed for digest {d.digest}") from None
                raise
        finally:
            chunks.close()
        try:
            self.progress({"status": "Verifying Checksum", "progressDetail": {}, "id": short})
            if ex.raw_digest != d.digest:  # the stream's own hash (src_hashed)
                raise InvalidParameter(f"filesystem layer verification failed for digest {d.digest}")
            if ex.diff_id != diff_id:
                raise InvalidParameter(f"layer {d.digest} has diff ID {ex.diff_id}, but the image config expects "
                                       f"{diff_id}")
        except BaseException:
            self.store.layers.discard(ex.staging)
            raise
        self.progress({"status": "Download complete", "progressDetail": {}, "id": short})
        self.progress({"status": "Extracting", "progressDetail": {"current": d.size, "total": d.size}, "id": short})
        self.progress({"status": "Pull complete", "progressDetail": {}, "id": short})
        return ex
