"""``docker load`` and ``docker save`` archives.

Load reads the archive once, as a stream: members over 1 MiB are layers and are extracted as they
pass (never held in memory); smaller members are kept until the end, when ``manifest.json``
(docker-archive) or ``index.json`` (OCI layout) says what they are. Each layer's digest is checked
against what the manifest or the image config says. Nothing is registered until every image of the
archive is complete; on any error every staging directory is removed.

Save writes both layouts in one archive, as Docker 25+ does: an OCI layout (``oci-layout``,
``index.json``, ``blobs/sha256/…``) and a ``manifest.json`` pointing at the same blobs, which older
dockerd (20.10) loads too. Layers are written uncompressed, byte for byte as they were loaded.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from berth import tarfmt
from berth.errors import InvalidParameter
from berth.image import reference
from berth.image.layers import Extracted
from berth.image.store import ImageStore, NewLayer, digest_of, parse_config
from berth.image.streams import decompressed

SMALL = 1 << 20  # members up to this size are kept in memory until the manifest is read
MAX_SMALL_TOTAL = 256 << 20
MAX_MANIFEST = 8 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

Progress = Callable[[dict[str, Any]], None]


_METADATA = ("manifest.json", "index.json", "repositories")


class _MemberView:
    """The data of the archive member being read, as a file object (never past its end)."""

    def __init__(self, reader: tarfmt.TarReader) -> None:
        self._reader = reader

    def read(self, n: int = -1) -> bytes:
        return self._reader.read_data(n if n >= 0 else 1 << 30)


@dataclass
class _Blob:
    raw_digest: str
    extracted: Extracted | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Loaded:
    image_id: str
    tags: list[str]


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


class _Loader:
    def __init__(self, store: ImageStore, progress: Progress) -> None:
        self.store = store
        self.progress = progress
        self.blobs: dict[str, _Blob] = {}
        self.aliases: dict[str, str] = {}  # member name → the member it links to (docker 20.10 saves)
        self.small_total = 0

    def discard_all(self) -> None:
        for b in self.blobs.values():
            if b.extracted is not None:
                self.store.layers.discard(b.extracted.staging)

    def read_archive(self, src: BinaryIO) -> None:
        try:
            reader = tarfmt.TarReader(decompressed(src))
            for entry in reader:
                name = _norm(entry.name)
                if entry.type in (tarfmt.SYMLINK, tarfmt.HARDLINK):
                    base = posixpath.dirname(name) if entry.type == tarfmt.SYMLINK else ""
                    self.aliases[name] = _norm(posixpath.normpath(posixpath.join(base, entry.linkname)))
                    continue
                if entry.type != tarfmt.REGULAR:
                    continue
                if name in _METADATA and entry.size > MAX_MANIFEST:
                    raise InvalidParameter(f"invalid archive: {name} is too large ({entry.size} bytes; the limit "
                                           f"is {MAX_MANIFEST >> 20} MiB)")
                if entry.size <= SMALL or name in _METADATA:
                    data = b"".join(iter(reader.read_data, b""))
                    self.small_total += len(data)
                    if self.small_total > MAX_SMALL_TOTAL:
                        raise InvalidParameter("invalid archive: too much metadata (small files over 256 MiB)")
                    self.blobs[name] = _Blob(digest_of(data), data=data)
                    continue
                self.progress({"status": "Loading layer", "id": name[-12:], "total": entry.size})
                view = _MemberView(reader)
                try:
                    ex = self.store.layers.extract(view)  # type: ignore[arg-type]
                except InvalidParameter as exc:
                    raise InvalidParameter(f"invalid layer {name} in the archive: {exc.message}") from None
                while view.read(1 << 20):  # bytes after the layer's own end marker
                    pass
                self.blobs[name] = _Blob(ex.raw_digest, extracted=ex)
                self.progress({"status": "Loaded layer", "id": name[-12:], "total": entry.size})
        except InvalidParameter as exc:
            if "truncated" in exc.message or "unexpected end" in exc.message:
                raise InvalidParameter(f"invalid archive: {exc.message}") from None
            if exc.message.startswith(("invalid", "the archive")):
                raise
            raise InvalidParameter(f"invalid archive: {exc.message}") from None
        except (EOFError, OSError) as exc:
            raise InvalidParameter(f"invalid archive: {exc}") from None

    def _find(self, name: str) -> _Blob | None:
        name = _norm(name)
        for _ in range(8):  # links between members, never followed on disk
            if name in self.blobs:
                return self.blobs[name]
            if name not in self.aliases:
                return None
            name = self.aliases[name]
        raise InvalidParameter(f"invalid archive: too many links from {name}")

    def small(self, name: str, what: str) -> bytes:
        b = self._find(name)
        if b is None:
            raise InvalidParameter(f"the archive's {what} names {name}, which is not in the archive")
        if b.data is None:
            raise InvalidParameter(f"{name} is too large to be the {what}")
        return b.data

    def layer(self, name: str, want_raw_digest: str | None) -> _Blob:
        b = self._find(name)
        if b is None:
            raise InvalidParameter(f"the archive's manifest names layer {name}, which is not in the archive")
        if want_raw_digest is not None and b.raw_digest != want_raw_digest:
            raise InvalidParameter(f"layer {name} has digest {b.raw_digest}, but the manifest says {want_raw_digest}")
        if b.extracted is None:
            assert b.data is not None
            try:
                b.extracted = self.store.layers.extract(io.BytesIO(b.data))
            except InvalidParameter as exc:
                raise InvalidParameter(f"invalid layer {name} in the archive: {exc.message}") from None
        return b

    def json_file(self, name: str) -> Any:
        b = self.blobs.get(name)
        if b is None:
            return None
        if b.data is None:
            raise InvalidParameter(f"{name} is too large (over {SMALL >> 20} MiB)")
        try:
            return json.loads(b.data)
        except ValueError as exc:
            raise InvalidParameter(f"{name} is not valid JSON: {exc}") from None

    # --- the two layouts ------------------------------------------------------------------------
    def plan(self) -> list[tuple[bytes, list[_Blob], list[str]]]:
        """(config bytes, layer blobs, tags) per image."""
        manifest = self.json_file("manifest.json")
        if manifest is not None:
            return self._plan_docker(manifest)
        index = self.json_file("index.json")
        if index is not None:
            return self._plan_oci(index)
        raise InvalidParameter("invalid archive: it has neither manifest.json (docker save) nor index.json "
                               "(OCI layout)")

    def _plan_docker(self, manifest: Any) -> list[tuple[bytes, list[_Blob], list[str]]]:
        if not isinstance(manifest, list):
            raise InvalidParameter("manifest.json must be a list")
        out = []
        for entry in manifest:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                    or not isinstance(entry.get("Layers"), list):
                raise InvalidParameter("manifest.json: each entry needs Config and Layers")
            config = self.small(entry["Config"], "manifest.json Config")
            layers = [self.layer(p, None) for p in entry["Layers"]]
            tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
            out.append((config, layers, tags))
        return out

    def _descriptor_blob(self, desc: dict[str, Any]) -> bytes:
        digest = desc.get("digest", "")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise InvalidParameter(f"index.json: bad descriptor digest {digest!r}")
        data = self.small(f"blobs/sha256/{digest[7:]}", "index")
        if digest_of(data) != digest:
            raise InvalidParameter(f"blob {digest} does not match its digest")
        return data

    def _manifests(self, index: Any, depth: int = 0) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        if depth > 2 or not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise InvalidParameter("index.json: no manifests list")
        for desc in index["manifests"]:
            mt = desc.get("mediaType")
            body = json.loads(self._descriptor_blob(desc))
            if mt in (OCI_INDEX, DOCKER_LIST) or "manifests" in body:
                for sub_desc, sub in self._manifests(body, depth + 1):
                    platform = sub_desc.get("platform") or {}
                    if platform.get("os", "linux") == "linux" and platform.get("architecture") in (None, "amd64") \
                            or len(body["manifests"]) == 1:
                        yield {**sub_desc, "annotations": {**(desc.get("annotations") or {}),
                                                           **(sub_desc.get("annotations") or {})}}, sub
                        break
            else:
                yield desc, body

    def _plan_oci(self, index: Any) -> list[tuple[bytes, list[_Blob], list[str]]]:
        out = []
        for desc, manifest in self._manifests(index):
            if not isinstance(manifest.get("config"), dict) or not isinstance(manifest.get("layers"), list):
                raise InvalidParameter("OCI manifest needs config and layers")
            config = self._descriptor_blob(manifest["config"])
            layers = []
            for ld in manifest["layers"]:
                digest = ld.get("digest", "")
                layers.append(self.layer(f"blobs/sha256/{digest.split(':', 1)[-1]}", digest))
            ann = desc.get("annotations") or {}
            tags = []
            name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
            if isinstance(name, str) and name:
                try:
                    tags.append(str(reference.parse(name)))
                except InvalidParameter:
                    pass  # a bare tag ("latest") without a name cannot be a reference
            out.append((config, layers, tags))
        return out


def load(store: ImageStore, src: BinaryIO, progress: Progress = lambda m: None) -> list[Loaded]:
    """Load every image of a docker-archive or OCI-layout tar (optionally gzip'd)."""
    loader = _Loader(store, progress)
    try:
        loader.read_archive(src)
        plans = loader.plan()
        # Check every image before registering any of them.
        for config, layers, tags in plans:
            for t in tags:
                reference.parse(t)
            cfg = parse_config(config)
            got = [b.extracted.diff_id for b in layers if b.extracted is not None]
            want = cfg["rootfs"]["diff_ids"]
            for i, (g, w) in enumerate(zip(got, want, strict=False)):
                if g != w:
                    raise InvalidParameter(f"layer {i + 1} has digest {g}, but the image config expects {w}")
            if len(got) != len(want):
                raise InvalidParameter(f"the image config lists {len(want)} layers, the manifest {len(got)}")
        results = []
        used: set[int] = set()
        for config, layers, tags in plans:
            new_layers = []
            for b in layers:
                assert b.extracted is not None
                if id(b) in used:  # a layer shared by two images of the archive: commit it once
                    new_layers.append(NewLayer(b.extracted.diff_id, None))
                else:
                    used.add(id(b))
                    new_layers.append(NewLayer(b.extracted.diff_id, b.extracted))
            image_id, _ = store.add(config, new_layers, tags)
            results.append(Loaded(image_id, tags))
        return results
    finally:
        loader.discard_all()


# ---- save -----------------------------------------------------------------------------------------
def _member(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _file(name: str, data: bytes, mtime: float) -> Iterator[bytes]:
    yield _member(name, len(data), mtime)
    yield data
    if len(data) % 512:
        yield bytes(512 - len(data) % 512)


def save(store: ImageStore, names: list[str]) -> Iterator[bytes]:
    """The tar stream of ``docker save NAME...``. Resolve names before the first byte is sent."""
    images: list[tuple[str, list[str]]] = []  # (image ID, references to record)
    for name in names:
        image_id = store.resolve(name)
        rec = store.get(image_id)
        hexid = reference.looks_like_id(name)
        if hexid and image_id.endswith(hexid) or name.startswith("sha256:"):
            refs = []  # saved by ID: no tags, as docker does
        else:
            ref = reference.parse(name)
            refs = [str(ref)] if str(ref) in rec.tags else rec.tags
        for existing in images:
            if existing[0] == image_id:
                existing[1].extend(r for r in refs if r not in existing[1])
                break
        else:
            images.append((image_id, list(refs)))
    return _save_stream(store, images)


def _save_stream(store: ImageStore, images: list[tuple[str, list[str]]]) -> Iterator[bytes]:
    now = time.time()
    written: set[str] = set()
    manifest_json = []
    index_manifests = []
    yield from _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
    for image_id, refs in images:
        rec = store.get(image_id)
        config = store.config_bytes(image_id)
        layer_paths, layer_descs = [], []
        for row in store.layer_rows(rec.layers):
            digest = row["diff_id"]
            path = f"blobs/sha256/{digest[7:]}"
            size = row["tar_size"]
            if digest not in written:
                written.add(digest)
                yield _member(path, size, now)
                n = 0
                for chunk in store.layers.tar_stream(row["chain_id"]):
                    n += len(chunk)
                    yield chunk
                if n != size:
                    raise InvalidParameter(f"layer {digest} changed size while saving")
                if size % 512:
                    yield bytes(512 - size % 512)
            layer_paths.append(path)
            layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                                "size": size})
        cfg_path = f"blobs/sha256/{image_id[7:]}"
        if image_id not in written:
            written.add(image_id)
            yield from _file(cfg_path, config, now)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": image_id, "size": len(config)},
                               "layers": layer_descs}, separators=(",", ":")).encode()
        mdigest = digest_of(manifest)
        if mdigest not in written:
            written.add(mdigest)
            yield from _file(f"blobs/sha256/{mdigest[7:]}", manifest, now)
        familiar = [reference.parse(r).familiar for r in refs]
        manifest_json.append({"Config": cfg_path, "RepoTags": familiar or None, "Layers": layer_paths})
        desc = {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(manifest)}
        if refs:
            for r in refs:
                ref = reference.parse(r)
                index_manifests.append({**desc, "annotations": {"io.containerd.image.name": str(ref),
                                                               "org.opencontainers.image.ref.name": ref.tag or ""}})
        else:
            index_manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_manifests}
    yield from _file("index.json", json.dumps(index, separators=(",", ":")).encode(), now)
    yield from _file("manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode(), now)
    yield bytes(1024)
