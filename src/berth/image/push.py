"""docker push: each layer the registry lacks is uploaded (its tar rebuilt from the layer store, gzip'd
deterministically so a second push gives the same digest), a layer it has is skipped (HEAD), a layer
another repository of the same registry has is mounted from there; then the config, then the
manifest: the one the image was pulled with when its blobs are all in place (a pulled image keeps its
format and its digest), else a Docker schema 2 manifest made here.

Progress goes out in dockerd's messages, the last one an ``aux`` with the tag, digest and size.
"""

from __future__ import annotations

import concurrent.futures
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidParameter, NotFound
from berth.image import manifests, reference
from berth.image.distmeta import Blob
from berth.image.layers import chain_ids
from berth.image.registry import Credentials, Registry, Settings
from berth.image.store import ImageStore, digest_of, parse_config
from berth.image.uploads import Uploads

Progress = Callable[[dict[str, Any]], None]
REPORT_EVERY = 512 << 10
UPLOADS = 5  # layers pushed at once


@dataclass(frozen=True)
class Pushed:
    tag: str
    digest: str
    size: int


def gzip_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """gzip with no name and no time in its header: the same tar gives the same bytes each time."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip container; mtime 0, no file name
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


class Pusher:
    def __init__(self, store: ImageStore, settings: Settings, credentials: Credentials, progress: Progress) -> None:
        self.store, self.settings, self.credentials, self.progress = store, settings, credentials, progress

    def push(self, name: str, tag: str) -> list[Pushed]:
        ref = reference.parse(name if not tag else f"{name}:{tag}", default_tag=False)
        if ref.digest:
            raise InvalidParameter("cannot push a digest reference")
        tags = [ref] if ref.tag else self._all_tags(ref)
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        ids = []
        for t in tags:  # before any message: an image that is not here is a 404
            try:
                ids.append(self.store.resolve(str(t)))
            except NotFound:
                raise NotFound(f"An image does not exist locally with the tag: {t.familiar}") from None
        self.progress({"status": f"The push refers to repository [{ref.familiar_name}]"})
        reg = Registry(ref.domain, self.settings, self.credentials)
        try:
            return [self._push_one(reg, t, image_id) for t, image_id in zip(tags, ids, strict=True)]
        finally:
            reg.close()

    def _all_tags(self, ref: reference.Reference) -> list[reference.Reference]:
        out = []
        for rec in self.store.all():
            for t in rec.tags:
                r = reference.parse(t)
                if r.name == ref.name:
                    out.append(r)
        return sorted(out, key=str)

    def _push_one(self, reg: Registry, ref: reference.Reference, image_id: str) -> Pushed:
        config = self.store.config_bytes(image_id)
        cfg = parse_config(config)
        diff_ids = cfg["rootfs"]["diff_ids"]
        chains = chain_ids(diff_ids)
        up = Uploads(reg, ref.path)
        for d in diff_ids:
            self.progress({"status": "Preparing", "progressDetail": {}, "id": d[7:19]})
        # layers in parallel (gzip releases the GIL), as dockerd's max-concurrent-uploads (5)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(UPLOADS, len(diff_ids))),
                                                   thread_name_prefix="push") as pool:
            layers = list(pool.map(lambda pair: self._layer(reg, up, ref, pair[0], pair[1]),
                                   zip(diff_ids, chains, strict=True)))
        if not up.exists(image_id):
            digest, _ = up.upload(iter([config]), lambda n: None)
            if digest != image_id:
                raise InvalidParameter(f"the registry stored the config as {digest}, not {image_id}")
        body, media_type = self._manifest(ref, image_id, config, layers)
        sent = up.put_manifest(ref.tag or "latest", body, media_type) or digest_of(body)
        digest = digest_of(body)
        if sent != digest:
            raise InvalidParameter(f"the registry answered digest {sent} for a manifest of digest {digest}")
        self.progress({"status": f"{ref.tag}: digest: {digest} size: {len(body)}"})
        self.progress({"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest, "Size": len(body)}})
        return Pushed(ref.tag or "latest", digest, len(body))

    def _layer(self, reg: Registry, up: Uploads, ref: reference.Reference, diff_id: str, chain: str) -> Blob:
        short = diff_id[7:19]
        known = self.store.meta.blobs(diff_id, reg.domain)
        for blob in (b for b in known if b.repo == ref.path):
            if up.exists(blob.digest):
                self.progress({"status": "Layer already exists", "progressDetail": {}, "id": short})
                return blob
            self.store.meta.forget_blob(diff_id, blob)
        for blob in (b for b in known if b.repo != ref.path):
            if up.mount(blob.digest, blob.repo):
                mounted = Blob(blob.digest, blob.media_type, blob.size, reg.domain, ref.path)
                self.store.meta.add_blobs([(diff_id, mounted)])
                self.progress({"status": f"Mounted from {blob.repo}", "progressDetail": {}, "id": short})
                return mounted
        last = [0]

        def on_bytes(n: int) -> None:
            if n - last[0] >= REPORT_EVERY:
                last[0] = n
                self.progress({"status": "Pushing", "progressDetail": {"current": n}, "id": short})

        digest, size = up.upload(gzip_stream(self.store.layers.tar_stream(chain)), on_bytes)
        blob = Blob(digest, manifests.DOCKER_LAYER, size, reg.domain, ref.path)
        self.store.meta.add_blobs([(diff_id, blob)])
        self.progress({"status": "Pushed", "progressDetail": {}, "id": short})
        return blob

    def _manifest(self, ref: reference.Reference, image_id: str, config: bytes,
                  layers: list[Blob]) -> tuple[bytes, str]:
        """The manifest the image was pulled with, when it names exactly these blobs; else a new one."""
        wanted = [b.digest for b in layers]
        for m in self.store.meta.manifests(image_id):
            try:
                doc = manifests.parse(m.body, m.media_type)
            except InvalidParameter:
                continue
            if isinstance(doc, manifests.Manifest) and [d.digest for d in doc.layers] == wanted \
                    and doc.config.digest == image_id:
                return m.body, m.media_type
        body = json.dumps({
            "schemaVersion": 2, "mediaType": manifests.DOCKER_MANIFEST,
            "config": {"mediaType": manifests.DOCKER_CONFIG, "size": len(config), "digest": image_id},
            "layers": [{"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in layers],
        }, indent=3).encode()
        return body, manifests.DOCKER_MANIFEST
