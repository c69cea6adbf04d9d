"""Docker's authorization plugin protocol (moby's pkg/authorization and pkg/plugins), so that plugins
written for dockerd work with berthd unchanged.

A plugin is found as dockerd finds it: a socket ``/run/docker/plugins/NAME.sock`` (or
``NAME/NAME.sock``), else a spec file ``NAME.spec`` (an address: ``unix:///…`` or ``tcp://…``) or
``NAME.json`` (``{"Addr": …, "TLSConfig": …}``) in ``/etc/docker/plugins`` or
``/usr/lib/docker/plugins``. At start berthd activates it (``POST /Plugin.Activate``; it must
implement ``authz``). Then every request is put to it twice: ``POST /AuthZPlugin.AuthZReq`` before
the handler, ``POST /AuthZPlugin.AuthZRes`` with the response before it is sent. The payloads are
moby's ``authorization.Request``: ``User``, ``UserAuthNMethod``, ``RequestMethod``, ``RequestUri``,
``RequestBody`` (base64, JSON bodies only, never for ``/auth``; a JSON body over 4 MiB is refused,
as moby does since CVE-2024-41110), ``RequestHeaders`` (without ``Authorization``,
``X-Registry-Auth``, ``X-Registry-Config``), ``RequestPeerCertificates`` (PEM), and the
``Response*`` fields. A plugin answers ``{"Allow": bool, "Msg": …, "Err": …}``; a denial is a 403
"authorization denied by plugin NAME: MSG", a plugin that cannot be reached or answers an error a
500 "plugin NAME failed with error: …" (the request is refused either way).

Where berth differs from dockerd: ``User`` is also set for unix-socket callers (the SO_PEERCRED user
name, with ``UserAuthNMethod`` "unix"; dockerd leaves both empty there), and a plugin that does not
answer within ``TIMEOUT`` fails the request instead of being retried for 30 s.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from berth.errors import Forbidden, InvalidParameter, System

SOCKETS_DIR = "/run/docker/plugins"
SPECS_DIRS = ("/etc/docker/plugins", "/usr/lib/docker/plugins")
MIMETYPE = "application/vnd.docker.plugins.v1.2+json"
REQUEST, RESPONSE = "AuthZPlugin.AuthZReq", "AuthZPlugin.AuthZRes"
MAX_BODY = 4 * 1024 * 1024  # a JSON request body larger than this is refused (moby's maxBodySize)
MAX_ANSWER = 1024 * 1024  # bytes of a plugin's answer read at most
TIMEOUT = 30.0  # seconds a plugin has to answer
_DUMMY_HOST = "plugin.moby.localhost"  # the Host moby sends to a plugin on a unix socket
_HIDDEN_HEADERS = frozenset({"authorization", "x-registry-auth", "x-registry-config"})
_AUTH_PATH = re.compile(r"^[^/]*/(v\d[\d.]*/)?auth")


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str  # "unix" | "tcp" | "http" | "https"
    location: str  # a socket path, or host:port
    tls: ssl.SSLContext | None = None


def find(name: str, sockets_dir: str = SOCKETS_DIR, specs_dirs: tuple[str, ...] = SPECS_DIRS) -> Address:
    """The address of plugin ``name``, found as dockerd finds it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*", name) or ".." in name.split("/"):
        raise InvalidParameter(f"invalid authorization plugin name {name!r}")
    base = name.split(":")[0]  # "name:latest" as dockerd's plugin store accepts it
    for path in (os.path.join(sockets_dir, base + ".sock"), os.path.join(sockets_dir, base, base + ".sock")):
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return Address("unix", path)
        except OSError:
            continue
    for directory in specs_dirs:
        for path in (os.path.join(directory, base + ".spec"), os.path.join(directory, base, base + ".spec"),
                     os.path.join(directory, base + ".json"), os.path.join(directory, base, base + ".json")):
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8") as f:
                text = f.read(65536)
            if path.endswith(".json"):
                try:
                    spec = json.loads(text)
                    addr, tls = str(spec["Addr"]), spec.get("TLSConfig")
                except (ValueError, KeyError, TypeError):
                    raise InvalidParameter(f"{path}: not a plugin spec ({{\"Addr\": …}})") from None
                return _address(addr.strip(), path, tls)
            return _address(text.strip(), path, None)
    raise InvalidParameter(f"could not find plugin {name} in v1 plugin registry: plugin not found")


def _address(text: str, where: str, tls: Mapping[str, Any] | None) -> Address:
    u = urlsplit(text)
    if u.scheme == "unix":
        return Address("unix", u.path or u.netloc)
    if u.scheme in ("tcp", "http", "https") and u.hostname:
        ctx = None
        if tls is not None or u.scheme == "https":
            ctx = ssl.create_default_context(cafile=(tls or {}).get("CAFile") or None)
            if tls and not tls.get("CAFile"):  # moby: a TLSConfig without CAFile skips verification
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            if tls and tls.get("CertFile"):
                ctx.load_cert_chain(tls["CertFile"], tls.get("KeyFile"))
        return Address("tcp", u.netloc, ctx)
    raise InvalidParameter(f"{where}: Unknown protocol in {text!r}")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(_DUMMY_HOST, timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Plugin:
    def __init__(self, name: str, addr: Address, timeout: float = TIMEOUT) -> None:
        self.name, self.addr, self.timeout = name, addr, timeout

    def call(self, method: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """POST /METHOD with JSON, as moby's plugin client does (blocking: run it in a thread).
        Raises System with moby's words when the plugin cannot be reached or answers an error."""
        if self.addr.scheme == "unix":
            conn: http.client.HTTPConnection = _UnixConnection(self.addr.location, self.timeout)
        elif self.addr.tls is not None:
            conn = http.client.HTTPSConnection(self.addr.location, timeout=self.timeout, context=self.addr.tls)
        else:
            conn = http.client.HTTPConnection(self.addr.location, timeout=self.timeout)
        body = json.dumps(payload, separators=(",", ":")).encode() + b"\n" if payload is not None else b""
        try:
            conn.request("POST", "/" + method, body=body, headers={"Accept": MIMETYPE})
            resp = conn.getresponse()
            data = resp.read(MAX_ANSWER + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise System(f"plugin {self.name} failed with error: {method}: {exc}") from None
        finally:
            conn.close()
        if len(data) > MAX_ANSWER:
            raise System(f"plugin {self.name} failed with error: {method}: an answer over {MAX_ANSWER} bytes")
        if resp.status != 200:
            try:
                err = str(json.loads(data).get("Err") or "")
            except (ValueError, AttributeError):
                err = ""
            raise System(f"plugin {self.name} failed with error: {method}: {err or data[:500].decode(errors='replace')}")
        try:
            out = json.loads(data) if data.strip() else {}
        except ValueError:
            raise System(f"plugin {self.name} failed with error: {method}: its answer is not JSON") from None
        if not isinstance(out, dict):
            raise System(f"plugin {self.name} failed with error: {method}: its answer is not a JSON object")
        return out

    def activate(self) -> None:
        manifest = self.call("Plugin.Activate", None)
        if "authz" not in (manifest.get("Implements") or []):
            raise InvalidParameter(f"Plugin does not implement the requested driver: plugin={self.name!r}, "
                                   'requested implementation="authz"')

    def decide(self, method: str, payload: Mapping[str, Any]) -> None:
        """AuthZReq or AuthZRes: returns when allowed; Forbidden (moby's words) when not."""
        answer = self.call(method, payload)
        if answer.get("Allow") is not True:
            raise Forbidden(f"authorization denied by plugin {self.name}: {answer.get('Msg') or ''}")


# ---- the payloads ---------------------------------------------------------------------------------
def canonical(name: str) -> str:
    """A header name as Go's net/http keys it (``content-type`` → ``Content-Type``)."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def sends_body(uri: str, content_type: str) -> bool:
    """moby's sendBody: JSON only, and never for /auth (credentials)."""
    path = urlsplit(uri).path
    if _AUTH_PATH.match(path):
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def request_payload(user: str, authn: str, method: str, uri: str, headers: Mapping[str, str], body: bytes,
                    peer_certs: list[bytes]) -> dict[str, Any]:
    """moby's authorization.Request before the handler (fields left out when empty, as omitempty)."""
    out: dict[str, Any] = {}
    if user:
        out["User"] = user
    if authn:
        out["UserAuthNMethod"] = authn
    out["RequestMethod"] = method
    out["RequestUri"] = uri
    if body and sends_body(uri, headers.get("content-type", "")):
        if len(body) > MAX_BODY:
            raise InvalidParameter(f"request body too large for authorization plugin: size exceeds {MAX_BODY} bytes")
        out["RequestBody"] = base64.b64encode(body).decode()
    hdrs = {canonical(k): v for k, v in headers.items() if k not in _HIDDEN_HEADERS and k not in ("host",
                                                                                                  "transfer-encoding")}
    if hdrs:
        out["RequestHeaders"] = hdrs
    if peer_certs:
        out["RequestPeerCertificates"] = [base64.b64encode(ssl.DER_cert_to_PEM_cert(c).encode()).decode()
                                          for c in peer_certs]
    return out


def response_payload(request: Mapping[str, Any], status: int, headers: Mapping[str, str], body: bytes,
                     content_type: str) -> dict[str, Any]:
    """The same Request with the response's status, headers and (JSON) body, for AuthZRes."""
    out = dict(request)
    if status:
        out["ResponseStatusCode"] = status
    if body and sends_body(str(request.get("RequestUri", "")), content_type):
        out["ResponseBody"] = base64.b64encode(body).decode()
    if headers:
        out["ResponseHeaders"] = {canonical(k): v for k, v in headers.items()}
    return out
