"""A client of the distribution API (v2) for one registry and one pull or push: manifests and blobs,
Basic and Bearer authentication from the registry's ``WWW-Authenticate`` challenge (tokens cached
per scope until they expire), redirects to blob storage (httpx drops the Authorization header when a
redirect leaves the registry's origin), and HTTP for insecure registries when HTTPS fails, as dockerd.

Credentials are never logged nor put in an error message.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from berth.errors import BerthError, Forbidden, InvalidParameter, NotFound, System, Unavailable

DOCKER_HUB = "docker.io"
HUB_ENDPOINT = "registry-1.docker.io"
SMALL_LIMIT = 8 << 20  # a manifest, a config, a token answer
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
CERTS_DIRS = ("/etc/berth/certs.d", "/etc/docker/certs.d")
_HOSTPORT = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9a-fA-F:]+\](:[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class Settings:
    """The daemon's registry configuration (``insecure-registries``, ``max-concurrent-downloads``)."""
    insecure: tuple[str, ...] = ()  # host[:port] or a CIDR
    max_downloads: int = 3
    certs_dirs: tuple[str, ...] = CERTS_DIRS  # <dir>/<host:port>/
    mirrors: tuple[str, ...] = ()  # Docker Hub's pull-through mirrors, tried in order before Docker Hub

    @classmethod
    def parse(cls, insecure: object, downloads: object, certs_dirs: object, mirrors: object = None) -> Settings:
        """daemon.json's insecure-registries (host[:port] or a CIDR), max-concurrent-downloads and
        registry-certs-dirs, each checked; InvalidParameter in dockerd's words where it has them."""
        for name, value in (("insecure-registries", insecure), ("registry-certs-dirs", certs_dirs),
                            ("registry-mirrors", mirrors or [])):
            if not isinstance(value, (list, tuple)):
                raise InvalidParameter(f"{name} must be a list")
        assert isinstance(insecure, (list, tuple)) and isinstance(certs_dirs, (list, tuple))
        entries = []
        for entry in insecure:
            text = str(entry).strip()
            if "://" in text:
                raise InvalidParameter(f"insecure registry {text} should not contain '://'")
            if "/" in text:
                try:
                    ipaddress.ip_network(text, strict=False)
                except ValueError:
                    raise InvalidParameter(f"insecure registry {text} is not a valid CIDR") from None
            elif not _HOSTPORT.fullmatch(text):
                raise InvalidParameter(f"insecure registry {text} is neither host[:port] nor a CIDR")
            entries.append(text)
        if not isinstance(downloads, int) or isinstance(downloads, bool) or not 1 <= downloads <= 64:
            raise InvalidParameter(f"max-concurrent-downloads must be between 1 and 64, not {downloads}")
        dirs = tuple(os.path.abspath(str(d)) for d in certs_dirs) or CERTS_DIRS
        checked = []
        for m in mirrors or []:  # type: ignore[attr-defined]
            url = str(m).strip().rstrip("/")
            scheme, sep, rest = url.partition("://")
            if not sep or scheme not in ("http", "https"):
                raise InvalidParameter(f"invalid mirror: unsupported scheme \"{scheme if sep else ''}\" in \"{m}\"")
            if not _HOSTPORT.fullmatch(rest):
                raise InvalidParameter(f"invalid mirror: \"{m}\" is not a valid URI (host[:port] with no path)")
            checked.append(url)
        return cls(tuple(entries), downloads, dirs, tuple(checked))

    def is_insecure(self, domain: str) -> bool:
        """Loopback registries are insecure unless said otherwise, as dockerd's default 127.0.0.0/8."""
        host = domain.rsplit(":", 1)[0].strip("[]") if not domain.endswith("]") else domain.strip("[]")
        if domain in self.insecure or host == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if ip.is_loopback:
            return True
        for entry in self.insecure:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


@dataclass(frozen=True, slots=True)
class Credentials:
    """From ``X-Registry-Auth``: a username and password, or an identity token (a refresh token)."""
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @classmethod
    def from_header(cls, header: str) -> Credentials:
        if not header:
            return cls()
        try:
            padded = header + "=" * (-len(header) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        except (ValueError, TypeError):
            raise InvalidParameter("invalid X-Registry-Auth header: not base64url-encoded JSON") from None
        if not isinstance(data, dict):
            return cls()
        return cls(str(data.get("username") or ""), str(data.get("password") or ""),
                   str(data.get("identitytoken") or ""), str(data.get("registrytoken") or ""))

    def __repr__(self) -> str:  # never the secrets
        return f"Credentials(username={self.username!r})"


def registry_domain(server: str) -> str:
    """docker login's server address as a registry domain: Docker Hub's index URL is docker.io."""
    text = server.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    if not text or text in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DOCKER_HUB
    if not _HOSTPORT.fullmatch(text):
        raise InvalidParameter(f"invalid registry address {server!r}")
    return text


def tls_context(domain: str, settings: Settings) -> ssl.SSLContext | bool:
    """How HTTPS to ``domain`` is verified: not at all for an insecure registry (as dockerd); else the
    system's CAs plus each ``*.crt`` of ``<certs dir>/<domain>/``, and a client certificate from each
    ``*.cert`` with its ``*.key`` there (Docker's certs.d layout)."""
    if settings.is_insecure(domain):
        return False
    ctx = ssl.create_default_context()
    if "/" in domain or domain.startswith("."):
        return ctx
    for base in settings.certs_dirs:
        d = os.path.join(base, domain)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            try:
                if name.endswith(".crt"):
                    ctx.load_verify_locations(cafile=path)
                elif name.endswith(".cert"):
                    key = path[:-len(".cert")] + ".key"
                    if not os.path.exists(key):
                        raise InvalidParameter(f"missing key {os.path.basename(key)} for client certificate {name}")
                    ctx.load_cert_chain(path, key)
                elif name.endswith(".key") and not os.path.exists(path[:-len(".key")] + ".cert"):
                    raise InvalidParameter(f"missing client certificate {name[:-4]}.cert for key {name}")
            except (OSError, ssl.SSLError) as exc:
                raise InvalidParameter(f"cannot use {path} for {domain}: {exc}") from None
    return ctx


class AuthFailed(System):
    """The registry refused the credentials, or wanted some: dockerd 20.10 answers these with a 500 (a
    401 would make the docker CLI prompt for a password on its stdin)."""


class RegistryError(BerthError):
    """What the registry answered, in its words (its ``errors[0]``)."""


def _registry_words(resp: httpx.Response) -> str:
    try:
        errors = json.loads(resp.read()[:SMALL_LIMIT]).get("errors") or []
        first = errors[0]
        code, message = str(first.get("code") or "").lower().replace("_", " "), str(first.get("message") or "")
        return f"{code}: {message}" if code and message else (message or code)  # dockerd's "code: message"
    except (ValueError, AttributeError, IndexError, TypeError, httpx.HTTPError):
        return f"HTTP {resp.status_code}"


@dataclass
class _Token:
    value: str
    expires: float


@dataclass
class Registry:
    domain: str
    settings: Settings
    credentials: Credentials = field(default_factory=Credentials)
    timeout: float = 60.0
    mirror: str = ""  # a Docker Hub mirror's URL: its host is asked instead of Docker Hub

    def __post_init__(self) -> None:
        self.endpoint = HUB_ENDPOINT if self.domain == DOCKER_HUB else self.domain
        self.scheme = "https"
        if self.mirror:
            self.scheme, _, self.endpoint = self.mirror.partition("://")
        self.client = httpx.Client(timeout=httpx.Timeout(30.0, read=self.timeout), follow_redirects=True,
                                   trust_env=True, verify=tls_context(self.endpoint if self.mirror else self.domain,
                                                                      self.settings),
                                   headers={"User-Agent": "berth"})
        self.plain = httpx.Client(timeout=httpx.Timeout(30.0, read=self.timeout), follow_redirects=True,
                                  trust_env=True, headers={"User-Agent": "berth"}) \
            if self.settings.is_insecure(self.endpoint if self.mirror else self.domain) or self.scheme == "http" \
            else None
        self.tokens: dict[str, _Token] = {}
        self.basic = False  # the registry asked for Basic: send it each time
        self.identity = ""  # a refresh token the token server gave (docker login's IdentityToken)
        # an insecure registry reached as https: HTTPS or HTTP is found out once (an http mirror is known)
        self.probed = self.plain is None or self.scheme == "http"
        self.lock = threading.Lock()

    def close(self) -> None:
        self.client.close()
        if self.plain is not None:
            self.plain.close()

    # ---- authentication ------------------------------------------------------------------------
    def _auth_header(self, scope: str) -> dict[str, str]:
        with self.lock:
            tok = self.tokens.get(scope)
            if tok is not None and tok.expires > time.monotonic():
                return {"Authorization": f"Bearer {tok.value}"}
        if self.basic and self.credentials.username:
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self.credentials.registry_token:
            return {"Authorization": f"Bearer {self.credentials.registry_token}"}
        return {}

    def _answer_challenge(self, resp: httpx.Response, scope: str) -> None:
        url = str(resp.request.url)
        challenge = resp.headers.get("www-authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        params = dict(_CHALLENGE.findall(challenge))
        if kind == "basic":
            if not self.credentials.username:
                raise AuthFailed(f'{resp.request.method.capitalize()} "{url}": no basic auth credentials')
            self.basic = True
            return
        if kind != "bearer" or "realm" not in params:
            raise RegistryError(f"unsupported authentication challenge from {self.domain}")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        c = self.credentials
        if c.identity_token:
            r = self.client.post(params["realm"], data={"grant_type": "refresh_token", "refresh_token":
                                 c.identity_token, "client_id": "berth", **query})
        else:
            auth = (c.username, c.password) if c.username else None
            r = self.client.get(params["realm"], params=query, auth=auth)
        if r.status_code in (401, 403):
            raise AuthFailed(f"unauthorized: {_registry_words(r)}" if r.content else "unauthorized: authentication "
                             "required")
        if r.status_code != 200:
            raise Unavailable(f"the token server of {self.domain} answered HTTP {r.status_code}")
        try:
            data = json.loads(r.content[:SMALL_LIMIT])
            value = str(data.get("token") or data.get("access_token") or "")
            life = int(data.get("expires_in") or 60)
            self.identity = str(data.get("refresh_token") or "")
        except (ValueError, AttributeError, TypeError):
            raise Unavailable(f"the token server of {self.domain} answered something that is not a token") from None
        if not value:
            raise Unavailable(f"the token server of {self.domain} answered no token")
        with self.lock:  # a little early, so a token does not expire in the middle of a request
            self.tokens[scope] = _Token(value, time.monotonic() + max(1, min(life, 3600) - 10))

    # ---- requests ------------------------------------------------------------------------------
    @contextmanager
    def _request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                 content: bytes | None = None) -> Iterator[httpx.Response]:
        """One request, answered after at most one authentication challenge; the caller reads the body."""
        for attempt in range(2):
            resp = self._send(method, path, {**(headers or {}), **self._auth_header(scope)}, content)
            if resp.status_code == 401 and attempt == 0:
                resp.close()
                self._answer_challenge(resp, scope)
                continue
            try:
                yield resp
            finally:
                resp.close()
            return
        raise AuthFailed("unauthorized: authentication required")  # pragma: no cover

    def _probe(self) -> None:
        """For an insecure registry, HTTPS or HTTP, decided once (by the first request, under the lock:
        the download and upload threads share this registry)."""
        with self.lock:
            if self.probed or self.plain is None or self.scheme != "https":
                return
            try:
                self.client.get(f"https://{self.endpoint}/v2/").close()
            except httpx.TransportError:
                self.scheme = "http"
            self.probed = True

    def _send(self, method: str, path: str, headers: dict[str, str], content: bytes | None = None) -> httpx.Response:
        if not self.probed:
            self._probe()
        url = f"{self.scheme}://{self.endpoint}{path}"
        try:
            client = self.plain if self.scheme == "http" and self.plain is not None else self.client
            return client.send(client.build_request(method, url, headers=headers, content=content), stream=True)
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise Unavailable(f"Get \"{url}\": {exc}") from None
        except httpx.TimeoutException:
            raise Unavailable(f"Get \"{url}\": the registry did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"Get \"{url}\": {exc}") from None

    def login(self) -> str:
        """``GET /v2/`` answered with the credentials (docker login); an identity token when the token
        server gave a refresh token, else ""."""
        with self._request("GET", "/v2/", "") as r:
            if r.status_code == 200:
                return self.identity
            if r.status_code in (401, 403):
                raise AuthFailed(f"login attempt to {r.request.url} failed with status: {r.status_code} "
                                 f"{'Unauthorized' if r.status_code == 401 else 'Forbidden'}")
            words = _registry_words(r)
            raise Unavailable(f"the registry {self.domain} answered HTTP {r.status_code} to /v2/: {words}")

    def search(self, query: str, limit: int) -> list[dict[str, object]]:
        """The registry's v1 search endpoint (Docker Hub's index has one; distribution does not)."""
        endpoint = "index.docker.io" if self.domain == DOCKER_HUB else self.endpoint
        saved, self.endpoint = self.endpoint, endpoint
        try:
            with self._request("GET", f"/v1/search?{httpx.QueryParams({'q': query, 'n': limit})}", "") as r:
                if r.status_code != 200:
                    raise System(f"Unexpected status code {r.status_code}")
                data = json.loads(_read_limited(r, SMALL_LIMIT, "search answer"))
        except ValueError:
            raise System("the registry's search answer is not JSON") from None
        finally:
            self.endpoint = saved
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise System("the registry's search answer has no results")
        out = []
        for item in results[:limit]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out.append({"name": item["name"], "description": str(item.get("description") or ""),
                            "star_count": int(item.get("star_count") or 0),
                            "is_official": bool(item.get("is_official")),
                            "is_automated": bool(item.get("is_automated"))})
        return out

    def tags(self, repo: str, limit: int = 10000) -> list[str]:
        """Every tag of ``repo`` (``/v2/<repo>/tags/list``, following its Link pages)."""
        out: list[str] = []
        path = f"/v2/{repo}/tags/list?n=1000"
        while path and len(out) < limit:
            with self._request("GET", path, f"repository:{repo}:pull") as r:
                if r.status_code == 404:
                    raise NotFound(_registry_words(r))
                if r.status_code != 200:
                    raise Unavailable(f"the registry {self.domain} answered HTTP {r.status_code} to the tags list")
                data = json.loads(_read_limited(r, SMALL_LIMIT, "tags list"))
                link = r.headers.get("link", "")
            out += [t for t in (data.get("tags") or []) if isinstance(t, str)]
            m = re.match(r'<([^>]+)>;\s*rel="next"', link)
            path = m.group(1) if m and m.group(1).startswith("/v2/") else ""
        return out[:limit]

    def manifest(self, repo: str, ref: str, accept: str) -> tuple[bytes, str]:
        """The manifest's bytes as served, and its Content-Type."""
        scope = f"repository:{repo}:pull"
        with self._request("GET", f"/v2/{repo}/manifests/{ref}", scope, {"Accept": accept}) as r:
            if r.status_code == 200:
                body = _read_limited(r, SMALL_LIMIT, "manifest")
                return body, r.headers.get("content-type", "")
            words = _registry_words(r)
            if r.status_code == 404:
                raise NotFound(words)
            if r.status_code == 401:
                raise AuthFailed(words)
            if r.status_code == 403:
                raise Forbidden(words)
            raise Unavailable(f"the registry {self.domain} answered HTTP {r.status_code}: {words}")

    @contextmanager
    def blob(self, repo: str, digest: str, offset: int = 0) -> Iterator[httpx.Response]:
        """A blob's response, streaming; ``offset``: resume from there (Range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull", headers) as r:
            if r.status_code not in (200, 206):
                words = _registry_words(r)
                if r.status_code == 404:
                    raise NotFound(f"blob {digest} of {repo}: {words}")
                raise Unavailable(f"the registry {self.domain} answered HTTP {r.status_code} for blob {digest}: "
                                  f"{words}")
            yield r

    def blob_bytes(self, repo: str, digest: str) -> bytes:
        with self.blob(repo, digest) as r:
            return _read_limited(r, SMALL_LIMIT, "config")


def _read_limited(r: httpx.Response, limit: int, what: str) -> bytes:
    out = bytearray()
    for chunk in r.iter_bytes():
        out += chunk
        if len(out) > limit:
            raise InvalidParameter(f"the registry sent a {what} larger than {limit >> 20} MiB")
    return bytes(out)
