"""The push side of a registry (``Registry``'s connection, tokens and scheme): blobs checked with
HEAD, mounted from another repository, uploaded in chunks; manifests put."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import httpx

from berth.errors import BerthError, Forbidden, Unavailable
from berth.image.registry import AuthFailed, Registry, _registry_words


class Uploads:
    """The push side of a registry: blobs checked, mounted, uploaded in chunks; manifests put."""

    CHUNK = 8 << 20  # bytes a PATCH carries

    def __init__(self, reg: Registry, repo: str) -> None:
        self.reg, self.repo = reg, repo
        self.scope = f"repository:{repo}:pull,push"

    def _fail(self, r: httpx.Response, what: str) -> BerthError:
        words = _registry_words(r)
        if r.status_code == 401:
            return AuthFailed(words)
        if r.status_code == 403:
            return Forbidden(words)
        return Unavailable(f"{what}: the registry {self.reg.domain} answered HTTP {r.status_code}: {words}")

    def exists(self, digest: str) -> bool:
        with self.reg._request("HEAD", f"/v2/{self.repo}/blobs/{digest}", self.scope) as r:
            if r.status_code in (200, 307):
                return True
            if r.status_code == 404:
                return False
            raise self._fail(r, f"checking blob {digest}")

    def mount(self, digest: str, source_repo: str) -> bool:
        """Cross-repository mount of a blob the registry has in ``source_repo``; False when it would not."""
        path = f"/v2/{self.repo}/blobs/uploads/?mount={digest}&from={source_repo}"
        with self.reg._request("POST", path, f"{self.scope} repository:{source_repo}:pull") as r:
            if r.status_code == 201:
                return True
            if r.status_code == 202:  # an upload was started instead: cancel it, we will upload ourselves
                location = r.headers.get("location", "")
                if location:
                    with self.reg._request("DELETE", self._path(location), self.scope):
                        pass
                return False
            raise self._fail(r, f"mounting blob {digest}")

    def _path(self, location: str) -> str:
        """An upload's Location (absolute or not) as a path and query on the registry's endpoint."""
        url = httpx.URL(location)
        if url.is_absolute_url:
            if url.host.lower() not in (self.reg.endpoint.rsplit(":", 1)[0].strip("[]").lower(),):
                raise Unavailable(f"the registry {self.reg.domain} sent an upload location on another host")
            return url.raw_path.decode()
        return location

    def upload(self, chunks: Iterator[bytes], on_bytes: Callable[[int], None]) -> tuple[str, int]:
        """A blob from ``chunks``: POST, a PATCH per CHUNK bytes, PUT with the digest (known only at the
        end). Returns (digest, size)."""
        sha = hashlib.sha256()
        size = 0
        with self.reg._request("POST", f"/v2/{self.repo}/blobs/uploads/", self.scope) as r:
            if r.status_code != 202:
                raise self._fail(r, "starting an upload")
            location = r.headers.get("location", "")
        buf = bytearray()

        def send(data: bytes) -> None:
            nonlocal location
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"{size - len(data)}-{size - 1}"}
            with self.reg._request("PATCH", self._path(location), self.scope, headers, content=data) as r:
                if r.status_code != 202:
                    raise self._fail(r, "uploading a blob")
                location = r.headers.get("location", location)

        for chunk in chunks:
            buf += chunk
            sha.update(chunk)
            size += len(chunk)
            on_bytes(size)
            if len(buf) >= self.CHUNK:
                send(bytes(buf))
                buf.clear()
        if buf:
            send(bytes(buf))
        digest = "sha256:" + sha.hexdigest()
        sep = "&" if "?" in location else "?"
        with self.reg._request("PUT", f"{self._path(location)}{sep}digest={digest}", self.scope,
                               {"Content-Length": "0"}) as r:
            if r.status_code != 201:
                raise self._fail(r, f"finishing blob {digest}")
        return digest, size

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> str:
        with self.reg._request("PUT", f"/v2/{self.repo}/manifests/{tag}", self.scope,
                               {"Content-Type": media_type}, content=body) as r:
            if r.status_code != 201:
                raise self._fail(r, "putting the manifest")
            return r.headers.get("docker-content-digest", "")
