"""Where the daemon is and how to reach it, resolved like the docker CLI does.

Precedence (docker/cli ``resolveContextName``): ``--context`` and ``-H`` together are an error;
``--context`` wins, then ``-H``, then ``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then the current
context in config.json, then the default (unix:///var/run/docker.sock). The "default" context takes
its TLS settings from --tls/--tlsverify/--tlscacert/--tlscert/--tlskey, DOCKER_TLS_VERIFY and
DOCKER_CERT_PATH (default ~/.docker); a named context from its stored TLS material.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from berth.cli.contexts import DEFAULT, ContextStore, config_dir
from berth.errors import InvalidParameter

DEFAULT_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True, slots=True)
class TLSSettings:
    verify: bool  # verify the server's certificate against ca
    ca: str | None
    cert: str | None
    key: str | None


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str  # normalized: unix:///path, tcp://host:port, ssh://[user@]host[:port]
    tls: TLSSettings | None
    context: str

    @property
    def scheme(self) -> str:
        return self.host.split("://", 1)[0]


@dataclass(slots=True)
class ConnectionOptions:
    hosts: list[str]
    context: str | None = None
    tls: bool | None = None
    tlsverify: bool | None = None
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None


def normalize_host(text: str, tls: bool) -> str:
    """Client-side parse of a daemon address (docker's ``ParseHost``)."""
    raw = text.strip()
    if not raw:
        return DEFAULT_HOST
    if "://" not in raw:
        raw = "tcp://" + raw
    scheme, _, rest = raw.partition("://")
    scheme = scheme.lower()
    if scheme == "unix":
        return "unix://" + (rest or "/var/run/docker.sock")
    if scheme == "ssh":
        if not rest:
            raise InvalidParameter(f"invalid ssh address {text!r}: no host")
        return "ssh://" + rest
    if scheme in ("tcp", "http", "https"):
        u = urlsplit("//" + rest)
        try:
            port = u.port
        except ValueError:
            raise InvalidParameter(f"invalid address {text!r}: bad port") from None
        host = u.hostname or "localhost"
        port = port or (2376 if tls or scheme == "https" else 2375)
        shown = f"[{host}]" if ":" in host else host
        return f"tcp://{shown}:{port}"
    raise InvalidParameter(f"invalid daemon address {text!r}: unsupported protocol {scheme!r} "
                           "(use unix://, tcp:// or ssh://)")


def _default_tls(opts: ConnectionOptions, env: dict[str, str]) -> TLSSettings | None:
    verify = opts.tlsverify if opts.tlsverify is not None else bool(env.get("DOCKER_TLS_VERIFY"))
    use_tls = verify or bool(opts.tls) or bool(env.get("DOCKER_TLS"))
    if not use_tls:
        return None
    cert_path = env.get("DOCKER_CERT_PATH") or config_dir(env)

    def pick(explicit: str | None, name: str) -> str | None:
        if explicit:
            return explicit
        path = os.path.join(cert_path, name)
        return path if os.path.isfile(path) else None

    ca, cert, key = pick(opts.tlscacert, "ca.pem"), pick(opts.tlscert, "cert.pem"), pick(opts.tlskey, "key.pem")
    if verify and ca is None:
        raise InvalidParameter(f"TLS verification is on but there is no CA certificate: looked for "
                               f"{os.path.join(cert_path, 'ca.pem')} (set DOCKER_CERT_PATH or --tlscacert)")
    for given in (opts.tlscacert, opts.tlscert, opts.tlskey):
        if given and not os.path.isfile(given):
            raise InvalidParameter(f"could not read TLS file {given}: no such file")
    if (cert is None) != (key is None):
        cert = key = None
    return TLSSettings(verify, ca, cert, key)


def resolve(opts: ConnectionOptions, env: dict[str, str]) -> Endpoint:
    if len(opts.hosts) > 1:
        raise InvalidParameter("specify only one -H")
    if opts.context and opts.hosts:
        raise InvalidParameter("conflicting options: either specify --host or --context, not both")
    store = ContextStore(env)
    if opts.context:
        name = opts.context
    elif opts.hosts or env.get("DOCKER_HOST"):
        name = DEFAULT
    else:
        name = env.get("DOCKER_CONTEXT") or store.current()
    if name != DEFAULT:
        ctx = store.get(name)
        tls = None
        if ctx.tls_files or ctx.skip_tls_verify:
            tls = TLSSettings(not ctx.skip_tls_verify, ctx.tls_files.get("ca.pem"), ctx.tls_files.get("cert.pem"),
                              ctx.tls_files.get("key.pem"))
        return Endpoint(normalize_host(ctx.host, tls is not None), tls, name)
    return default_endpoint(opts, env)


def default_endpoint(opts: ConnectionOptions, env: dict[str, str]) -> Endpoint:
    """The "default" context: -H or DOCKER_HOST, with TLS from the flags and environment."""
    tls = _default_tls(opts, env)
    host = opts.hosts[0] if opts.hosts else env.get("DOCKER_HOST") or DEFAULT_HOST
    return Endpoint(normalize_host(host, tls is not None), tls, DEFAULT)
