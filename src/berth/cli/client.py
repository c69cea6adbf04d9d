"""Builds the docker-py client for an Endpoint, negotiates the API version like the docker CLI, and
turns connection failures into messages a person can act on."""

from __future__ import annotations

from typing import Any

import docker
import docker.errors
from docker.tls import TLSConfig

from berth import API_VERSION, MIN_API_VERSION
from berth.cli.hosts import Endpoint
from berth.errors import InvalidParameter, Unavailable

_SSH_BASE = "http+docker://berthssh"


class ConnectError(Unavailable):
    """The daemon could not be reached; the message says where and what to check."""


def _version_tuple(v: str) -> tuple[int, int]:
    major, _, minor = v.partition(".")
    return int(major), int(minor or 0)


def make_client(ep: Endpoint, environ: dict[str, str], timeout: int = 60) -> docker.APIClient:
    """A docker-py APIClient for ``ep`` speaking the negotiated API version."""
    pinned = environ.get("DOCKER_API_VERSION") or None
    if pinned is not None:
        try:
            wanted = _version_tuple(pinned)
        except ValueError:
            raise InvalidParameter(f"invalid DOCKER_API_VERSION {pinned!r}: use a version such as 1.47") from None
        if wanted < _version_tuple(MIN_API_VERSION):
            raise InvalidParameter(f"DOCKER_API_VERSION={pinned} is too old: berth speaks API {MIN_API_VERSION} "
                                   f"to {API_VERSION}")
    if ep.scheme == "ssh":
        client = docker.APIClient(base_url="unix:///nonexistent", version=pinned or API_VERSION, timeout=timeout)
        from berth.cli.sshconn import SSHCommandAdapter

        adapter = SSHCommandAdapter(ep.host, timeout=timeout)
        client.mount(_SSH_BASE, adapter)
        client._custom_adapter = adapter
        client.base_url = _SSH_BASE
    else:
        tls: TLSConfig | bool = False
        if ep.tls is not None:
            tls = TLSConfig(
                client_cert=(ep.tls.cert, ep.tls.key) if ep.tls.cert and ep.tls.key else None,
                ca_cert=ep.tls.ca if ep.tls.verify else None,
                verify=bool(ep.tls.verify and ep.tls.ca),
            )
        client = docker.APIClient(base_url=ep.host, version=pinned or API_VERSION, tls=tls, timeout=timeout)
    # requests would let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the CA we configured (and route the
    # daemon's traffic through HTTP_PROXY): the daemon's TLS settings come from -H/--tls*/DOCKER_* only.
    client.trust_env = False
    if not pinned:
        negotiate(client, ep)
    return client


def negotiate(client: docker.APIClient, ep: Endpoint) -> None:
    """Ask /_ping for the server's API version and use the lower of the two, as the docker CLI does."""
    try:
        resp = client._get(client.base_url + "/_ping")
    except Exception as exc:  # noqa: BLE001 - translated into one error kind here
        raise connect_error(exc, ep) from None
    server = resp.headers.get("Api-Version")
    if server:
        try:
            client._version = min(API_VERSION, server, key=_version_tuple)
        except ValueError:
            pass


def connect_error(exc: BaseException, ep: Endpoint) -> ConnectError:
    """A message for a failure to reach the daemon at all: where, what happened, what to check."""
    text = repr(exc) + " " + repr(exc.__context__)
    where = ep.host
    tls_hint = ("check that the client certificate (--tlscert/--tlskey or DOCKER_CERT_PATH) is signed by the "
                "daemon's CA and allows client authentication")
    if ep.scheme == "ssh":
        return ConnectError(f"Cannot connect to the berth daemon at {where} over ssh: the ssh command failed "
                            "(its own message is above)")
    if ep.tls is None and ("BadStatusLine" in text or "\\x15\\x03" in text):
        return ConnectError(f"Cannot connect to the berth daemon at {where}: it answered with TLS.\n"
                            "* Are you trying to connect to a TLS-enabled daemon without TLS? "
                            "(use --tlsverify, or DOCKER_TLS_VERIFY=1 with DOCKER_CERT_PATH)")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return ConnectError(f"Cannot connect to the berth daemon at {where}: it does not speak TLS "
                            "(drop --tls/--tlsverify or unset DOCKER_TLS_VERIFY)")
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ConnectError(f"Cannot connect to the berth daemon at {where}: the server's certificate is not "
                            f"trusted ({_ssl_reason(text)}); check --tlscacert or DOCKER_CERT_PATH/ca.pem")
    if ep.tls is not None and ("ALERT" in text or "alert" in text or "RemoteDisconnected" in text
                               or "Connection reset" in text):
        return ConnectError(f"Cannot connect to the berth daemon at {where}: the daemon refused the TLS "
                            f"connection; {tls_hint}")
    if "Permission denied" in text or "PermissionError" in text:
        return ConnectError(f"permission denied while trying to connect to the berth daemon socket at {where}: "
                            "is your user in the socket's group (usually 'docker')?")
    return ConnectError(f"Cannot connect to the berth daemon at {where}: is berthd running?")


def _ssl_reason(text: str) -> str:
    i = text.find("certificate verify failed")
    if i < 0:
        return "certificate verify failed"
    end = min((j for j in (text.find(" (_ssl", i), text.find("')", i), text.find('")', i)) if j > i),
              default=len(text))
    return text[i:end]


def check_api_error(exc: docker.errors.APIError) -> str:
    """The daemon's own message from an API error response."""
    explanation: Any = exc.explanation
    return f"Error response from daemon: {explanation}" if explanation else str(exc)


