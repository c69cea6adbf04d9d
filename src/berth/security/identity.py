"""The identity of a caller, known for every request.

unix socket: the peer's uid/gid/pid from SO_PEERCRED and the user name; TLS with a verified client
certificate: its subject CN, O and OU; plain TCP (or TLS without client certificates): anonymous.
Authorization and audit (later) key on ``Identity.principal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    kind: str  # "unix" | "tls" | "anonymous"
    user: str = ""  # unix user name, or certificate CN
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    organization: str = ""
    organizational_unit: str = ""
    listener: str = ""  # the listener the connection came through (``unix:///run/berth.sock``)
    certificate: bytes = field(default=b"", repr=False, compare=False)  # a TLS client's certificate, DER

    @property
    def principal(self) -> str:
        """A stable text form: ``unix:alice(1000)``, ``tls:CN=node1``, ``anonymous``."""
        if self.kind == "unix":
            return f"unix:{self.user}({self.uid})"
        if self.kind == "tls":
            parts = [f"CN={self.user}"]
            if self.organization:
                parts.append(f"O={self.organization}")
            if self.organizational_unit:
                parts.append(f"OU={self.organizational_unit}")
            return "tls:" + ",".join(parts)
        return "anonymous"


ANONYMOUS = Identity("anonymous")


def from_peer_cert(cert: dict[str, Any] | None, der: bytes = b"") -> Identity:
    """Identity from ``ssl.SSLSocket.getpeercert()``'s dict (and the certificate itself, DER);
    anonymous when there is no certificate."""
    if not cert:
        return ANONYMOUS
    fields: dict[str, str] = {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            fields.setdefault(key, value)
    return Identity(
        "tls",
        user=fields.get("commonName", ""),
        organization=fields.get("organizationName", ""),
        organizational_unit=fields.get("organizationalUnitName", ""),
        certificate=der,
    )
