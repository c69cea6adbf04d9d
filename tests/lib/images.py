"""Test images made here, from Debian's busybox-static: nothing comes from the internet."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def busybox_rootfs_tar(extra: dict[str, bytes] | None = None) -> bytes:
    """A root filesystem tar: /bin/busybox with a few applet links, /etc files, /tmp."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755 if d != "tmp" else 0o1777, 1_700_000_000
            tf.addfile(info)
        tf.add(BUSYBOX, "bin/busybox")
        for applet in ("sh", "ls", "cat", "echo", "rm", "mkdir", "touch", "true", "sleep", "ln", "grep", "wc",
                       "tail", "head", "hostname", "id", "tr", "ps", "env"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "busybox", 1_700_000_000
            tf.addfile(info)
        files = {"etc/greeting": b"hello\n", "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"}
        files.update(extra or {})
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_for(layers: list[bytes], **extra: object) -> bytes:
    import json

    cfg = {"architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
           "config": {"Cmd": ["sh"], "Labels": extra.pop("labels", None) or {}},
           "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
           "history": [{"created": "2026-01-02T03:04:05Z", "created_by": f"layer {i}"} for i in range(len(layers))]}
    cfg.update(extra)
    return json.dumps(cfg).encode()


def _archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_archive(images: list[tuple[bytes, list[bytes], list[str]]], tamper: dict[str, bytes | None] | None = None,
                   manifest: object = None) -> bytes:
    """A `docker save` archive: manifest.json + <digest>.json + <hex>/layer.tar."""
    import json

    members: dict[str, bytes] = {}
    entries = []
    for config, layers, tags in images:
        cname = sha(config)[7:] + ".json"
        members[cname] = config
        paths = []
        for layer in layers:
            path = sha(layer)[7:] + "/layer.tar"
            members[path] = layer
            paths.append(path)
        entries.append({"Config": cname, "RepoTags": tags, "Layers": paths})
    members["manifest.json"] = json.dumps(entries if manifest is None else manifest).encode()
    for name, data in (tamper or {}).items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    return _archive(members)


def oci_archive(config: bytes, layers: list[bytes], name: str, compress: str = "gzip") -> bytes:
    """An OCI image layout with compressed layer blobs."""
    import gzip
    import json

    members = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', f"blobs/sha256/{sha(config)[7:]}": config}
    descs = []
    for layer in layers:
        if compress == "gzip":
            blob, mt = gzip.compress(layer), "application/vnd.oci.image.layer.v1.tar+gzip"
        elif compress == "zstd":
            import zstandard

            blob, mt = zstandard.ZstdCompressor().compress(layer), "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            blob, mt = layer, "application/vnd.oci.image.layer.v1.tar"
        members[f"blobs/sha256/{sha(blob)[7:]}"] = blob
        descs.append({"mediaType": mt, "digest": sha(blob), "size": len(blob)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)}, "layers": descs}).encode()
    members[f"blobs/sha256/{sha(manifest)[7:]}"] = manifest
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest), "size": len(manifest),
         "annotations": {"io.containerd.image.name": name}}]}).encode()
    return _archive(members)
