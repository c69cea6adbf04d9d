"""Manifests as registries serve them: Docker schema 2 and OCI image manifests, and the lists over
them (Docker manifest lists, OCI indexes), parsed from untrusted bytes into typed values.

A manifest's digest is the sha256 of its bytes as served; the bytes are kept, never re-serialized.
"""

from __future__ import annotations

import json
import platform as platform_mod
import re
from dataclasses import dataclass

from berth.errors import InvalidParameter, NotFound

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
})
LISTS = (DOCKER_LIST, OCI_INDEX)
MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 << 20  # distribution's own limit
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}\Z")
MAX_LAYERS = 256


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> Platform:
    machine = platform_mod.machine()
    arch = _ARCH.get(machine, machine)
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine, "")
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` as --platform takes it (``linux/amd64``, ``linux/arm64/v8``)."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(re.match(r"^[a-z0-9_]+\Z", p) for p in parts):
        raise InvalidParameter(f'"{text}": unknown operating system or architecture: invalid argument')
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def _str(obj: dict[str, object], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidParameter(f"invalid {what}: {key} must be a string")
    return value


def _descriptor(obj: object, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidParameter(f"invalid {what}: a descriptor must be an object")
    digest = _str(obj, "digest", what)
    if not _DIGEST.match(digest):
        raise InvalidParameter(f"invalid {what}: unsupported digest {digest[:80]!r}")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidParameter(f"invalid {what}: size must be a non-negative integer")
    urls = obj.get("urls") or []
    plat = obj.get("platform")
    parsed = None
    if isinstance(plat, dict):
        parsed = Platform(str(plat.get("os") or ""), str(plat.get("architecture") or ""), str(plat.get("variant") or ""))
    return Descriptor(_str(obj, "mediaType", what) if "mediaType" in obj else "", digest, size,
                      tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else (), parsed)


def media_type_of(body: bytes, content_type: str) -> str:
    """The media type: the document's own ``mediaType``, else the Content-Type the registry sent."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidParameter("invalid manifest: not JSON") from None
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    ct = content_type.split(";")[0].strip()
    if ct in (*LISTS, *MANIFESTS):
        return ct
    if isinstance(doc, dict) and "manifests" in doc:
        return OCI_INDEX
    if isinstance(doc, dict) and "layers" in doc:
        return OCI_MANIFEST
    raise InvalidParameter(f"unsupported manifest media type {ct!r}")


def _schema1(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("schemaVersion") == 1


def parse(body: bytes, content_type: str) -> Manifest | Index:
    if len(body) > MAX_MANIFEST:
        raise InvalidParameter("invalid manifest: larger than 4 MiB")
    media_type = media_type_of(body, content_type) if not _schema1(body) else ""
    doc = json.loads(body)
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
            raise InvalidParameter("Docker Image manifest schema 1 is not supported (it was removed from Docker "
                                   "too): push the image again with a current client")
        raise InvalidParameter("invalid manifest: schemaVersion must be 2")
    if media_type in LISTS:
        entries = doc.get("manifests")
        if not isinstance(entries, list) or len(entries) > 1024:
            raise InvalidParameter("invalid manifest list: manifests must be a list")
        return Index(media_type, tuple(_descriptor(e, "manifest list entry") for e in entries))
    if media_type not in MANIFESTS:
        raise InvalidParameter(f"unsupported manifest media type {media_type!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        raise InvalidParameter(f"invalid manifest: layers must be a list of at most {MAX_LAYERS}")
    parsed = tuple(_descriptor(d, "layer") for d in layers)
    for d in parsed:
        if d.media_type and d.media_type not in LAYER_TYPES:
            raise InvalidParameter(f"unsupported layer media type {d.media_type!r}")
    return Manifest(media_type, _descriptor(doc.get("config"), "config"), parsed)


def choose(index: Index, want: Platform) -> Descriptor:
    """The entry for ``want``: os and architecture equal, and the variant when both name one (an
    entry without a variant fits any); NotFound in dockerd's words otherwise."""
    fits = [d for d in index.manifests if d.platform is not None and d.platform.os == want.os
            and d.platform.architecture == want.architecture
            and (not want.variant or not d.platform.variant or d.platform.variant == want.variant)]
    exact = [d for d in fits if d.platform is not None and d.platform.variant == want.variant]
    if exact or fits:
        return (exact or fits)[0]
    raise NotFound(f"no matching manifest for {want} in the manifest list entries")
