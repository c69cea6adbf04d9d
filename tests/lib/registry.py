"""A real registry for the tests: Debian's docker-registry (distribution 2.8) on a loopback port with
a per-test configuration and storage, and skopeo to put images there (from the archives that
tests/lib/images.py makes). Everything is registered in the test's Cleanup."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.daemon import free_port, public_tmpdir

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    root: str  # its storage and configuration
    proc: subprocess.Popen[bytes]

    def blob_path(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return f"{self.root}/data/docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"

    creds: str = ""  # user:password for skopeo, when the registry wants them

    def push_archive(self, archive: bytes, name: str, fmt: str = "v2s2") -> str:
        """A docker-archive tar to ``name`` (repo:tag) on this registry with skopeo, in ``fmt`` (v2s2 or
        oci); returns the manifest's digest as the registry has it."""
        path = f"{self.root}/{name.replace('/', '_').replace(':', '_')}.tar"
        with open(path, "wb") as f:
            f.write(archive)
        skopeo("copy", "--quiet", "--dest-tls-verify=false", *(["--dest-creds", self.creds] if self.creds else []),
               "--format", fmt, f"docker-archive:{path}", f"docker://{self.host}/{name}")
        return self.digest(name)

    def push_index(self, name: str, images: dict[str, tuple[bytes, list[bytes]]]) -> str:
        """An OCI index over one image per platform ("linux/arm64/v8" → (config, layers)), written as
        an OCI layout and copied with ``skopeo copy --all``; returns the index's digest."""
        import gzip
        import hashlib

        layout = f"{self.root}/layout-{name.replace('/', '_').replace(':', '_')}"
        os.makedirs(f"{layout}/blobs/sha256")

        def blob(data: bytes) -> dict[str, object]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            with open(f"{layout}/blobs/sha256/{digest[7:]}", "wb") as f:
                f.write(data)
            return {"digest": digest, "size": len(data)}

        entries = []
        for plat, (config, layers) in images.items():
            os_, arch, *variant = plat.split("/")
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gzip.compress(x, mtime=0))}
                           for x in layers]}).encode()
            platform = {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {})}
            entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
                            "platform": platform})
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": entries}).encode()
        with open(f"{layout}/oci-layout", "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        with open(f"{layout}/index.json", "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       **blob(index), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}, f)
        skopeo("copy", "--quiet", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi",
               f"docker://{self.host}/{name}")
        return self.digest_of_index(name)

    def digest_of_index(self, name: str) -> str:
        import hashlib

        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{self.host}/{name}")
        return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()

    def digest(self, name: str) -> str:
        out = skopeo("inspect", "--tls-verify=false", *(["--creds", self.creds] if self.creds else []),
                     f"docker://{self.host}/{name}")
        return str(json.loads(out)["Digest"])


def skopeo(*args: str) -> str:
    r = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": os.environ.get("HOME", "/root")})
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def htpasswd(cleanup: Cleanup, users: dict[str, str]) -> str:
    """An htpasswd file (bcrypt, as distribution wants) and the registry config lines that use it."""
    import bcrypt

    path = cleanup.path(public_tmpdir("berth-htpasswd-")) + "/htpasswd"
    with open(path, "w") as f:
        for user, password in users.items():
            f.write(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    return f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {path}\n"


def start_registry(cleanup: Cleanup, extra: str = "", bind: str = "127.0.0.1", http_extra: str = "") -> Registry:
    if not os.path.exists(REGISTRY) or not os.path.exists(SKOPEO):
        pytest.skip("needs Debian's docker-registry and skopeo (make test installs them)")
    root = cleanup.path(public_tmpdir("berth-registry-"))
    port = free_port()
    with open(f"{root}/config.yml", "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: {bind}:{port}\n{http_extra}{extra}")
    proc = subprocess.Popen([REGISTRY, "serve", f"{root}/config.yml"], stdout=open(f"{root}/log", "wb"),
                            stderr=subprocess.STDOUT)
    cleanup.process(proc, f"registry on {port}")
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((bind, port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the registry did not start: " + open(f"{root}/log").read())
            time.sleep(0.05)
    return Registry(f"{bind}:{port}", root, proc)


class TokenServer:
    """A token server as distribution's ``auth: token`` wants one: Basic credentials in, an RS256 JWT
    out, with the signing certificate in an ``x5c`` header and ``aud`` a single string. It grants
    what ``users`` allows: {user: password}; anonymous callers get pull on ``public/*`` only."""

    def __init__(self, cleanup: Cleanup, users: dict[str, str], lifetime: int = 300, jwt_lifetime: int = 0) -> None:
        import base64
        import http.server
        import threading

        from berth.security import pki

        self.users, self.lifetime, self.issued = users, lifetime, 0
        # shorter: a token that expires before it says it will (distribution allows 60 s past "exp")
        self.jwt_lifetime = jwt_lifetime or lifetime
        self.dir = cleanup.path(public_tmpdir("berth-tokens-"))
        self.ca = pki.init_ca(self.dir, "token signer", key_spec=pki.KeySpec(2048))
        self.port = free_port()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                from urllib.parse import parse_qs, urlsplit

                q = parse_qs(urlsplit(self.path).query)
                user = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.users.get(name) != password:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                access = []
                for scope in q.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    repo, _, actions = rest.rpartition(":")
                    granted = actions.split(",") if user else (["pull"] if repo.startswith("public/") else [])
                    access.append({"type": kind, "name": repo, "actions": granted})
                token = server.sign(user, q.get("service", [""])[0], access)
                body = json.dumps({"token": token, "expires_in": server.lifetime}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        cleanup.add(f"token server on {self.port}", self.httpd.shutdown)

    def sign(self, user: str, service: str, access: list[dict[str, object]]) -> str:
        import base64
        import secrets

        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        der = self.ca.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "berth-test-issuer", "sub": user, "aud": service, "exp": now + self.jwt_lifetime,
                  "nbf": now - 120, "iat": now - 60, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
        sig = self.ca.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr, call-arg]
        self.issued += 1
        return f"{signing_input.decode()}.{b64(sig)}"

    def registry_config(self) -> str:
        return (f"auth:\n  token:\n    realm: http://127.0.0.1:{self.port}/token\n    service: berth-test-registry\n"
                f"    issuer: berth-test-issuer\n    rootcertbundle: {self.dir}/ca.pem\n")


class CuttingProxy:
    """A TCP relay on 127.0.0.1 in front of ``target`` (host:port) that cuts the first ``cuts``
    connections carrying more than ``after`` bytes back to the client: a registry dying mid-blob."""

    def __init__(self, cleanup: Cleanup, target: str, after: int, cuts: int = 1, delay: float = 0) -> None:
        import threading

        self.delay = delay  # seconds the connection hangs before it is cut
        self.target = target.rsplit(":", 1)
        self.after, self.cuts_left, self.cut = after, cuts, 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        cleanup.add(f"proxy {self.host}", self.stop)

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()

    def _accept(self) -> None:
        import threading

        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target[0], int(self.target[1])))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if downstream and sent + len(data) > self.after:
                    with self.lock:
                        cut = self.cuts_left > 0
                        if cut:
                            self.cuts_left -= 1
                            self.cut += 1
                    if cut:
                        dst.sendall(data[: max(0, self.after - sent)])
                        time.sleep(self.delay)
                        raise OSError("cut")
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
