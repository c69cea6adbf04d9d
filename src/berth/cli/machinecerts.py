"""The machine store's certificates: one CA per store (``certs/ca.pem``, ``ca-key.pem``), one client
certificate with a real name (``certs/cert.pem``, ``key.pem``, copied into each machine's directory
as docker-machine does), and each host's server certificate, whose SANs are the address the store
reaches it by (an IP or a name: docker-machine's generic driver put a name in an IP SAN) and the
names the host gives itself. Keys are 0400. Made with ``berth.security.pki``.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import shutil
import socket
import tempfile

from cryptography import x509

from berth.cli.machines import Store
from berth.security import pki

CA_CN = "berth machine CA"


def ca_cn() -> str:
    """A CA name of its own per CA: while two CAs are trusted (rotate-ca), OpenSSL finds a certificate's
    issuer and the CRL to check it against by name, and two CAs of one name would be mistaken."""
    import datetime as dt
    import secrets

    return f"{CA_CN} {dt.datetime.now(dt.UTC):%Y-%m-%d} {secrets.token_hex(4)}"


def certs_dir(store: Store) -> str:
    return os.path.join(store.path, "certs")


def client_cn() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _place(src: str, dst: str, mode: int) -> None:
    tmp = f"{dst}.tmp-{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def ensure_ca(store: Store) -> pki.CA:
    """The store's CA and client certificate, made the first time."""
    d = certs_dir(store)
    if not os.path.exists(os.path.join(d, "ca.pem")):
        os.makedirs(d, mode=0o700, exist_ok=True)
        pki.init_ca(d, ca_cn(), days=3650)
    ca = pki.CA.load(d)
    if not os.path.exists(os.path.join(d, "cert.pem")):
        new_client(store, ca)
    return ca


def new_client(store: Store, ca: pki.CA) -> x509.Certificate:
    """A new client certificate for the store (the old one, if any, is replaced, not revoked)."""
    d = certs_dir(store)
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        cert = pki.issue(ca, tmp, client_cn(), server=False, org="berth machine", days=1095)
        _place(os.path.join(tmp, "key.pem"), os.path.join(d, "key.pem"), 0o400)
        _place(os.path.join(tmp, "cert.pem"), os.path.join(d, "cert.pem"), 0o444)
    return cert


def client_serial(store: Store) -> int:
    return int(x509.load_pem_x509_certificate(read(os.path.join(certs_dir(store), "cert.pem"))).serial_number)


def copy_client(store: Store, machine_dir: str, ca_pem: bytes | None = None) -> None:
    """The store's client material into a machine's directory (what DOCKER_CERT_PATH names); ``ca_pem``:
    the CAs the client trusts there (the store's CA by default)."""
    d = certs_dir(store)
    _place(os.path.join(d, "cert.pem"), os.path.join(machine_dir, "cert.pem"), 0o444)
    _place(os.path.join(d, "key.pem"), os.path.join(machine_dir, "key.pem"), 0o400)
    if ca_pem is None:
        _place(os.path.join(d, "ca.pem"), os.path.join(machine_dir, "ca.pem"), 0o444)
    else:
        write(os.path.join(machine_dir, "ca.pem"), ca_pem, 0o444)


def write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def server_sans(address: str, hostnames: list[str]) -> list[str]:
    """The address the store uses (an IP SAN for an IP, a DNS SAN for a name), the host's own names, and
    loopback (for a client on the host itself)."""
    sans: list[str] = []
    try:
        sans.append(f"IP:{ipaddress.ip_address(address)}")
    except ValueError:
        sans.append(f"DNS:{address}")
    sans += [f"DNS:{h}" for h in hostnames]
    sans += ["DNS:localhost", "IP:127.0.0.1"]
    return list(dict.fromkeys(sans))


def new_server(ca: pki.CA, machine_dir: str, cn: str, sans: list[str]) -> tuple[bytes, bytes]:
    """A server certificate into machine_dir (server.pem, server-key.pem); returns (cert, key) PEM."""
    with tempfile.TemporaryDirectory(dir=machine_dir) as tmp:
        pki.issue(ca, tmp, cn, server=True, sans=sans, days=1095)
        cert, key = read(os.path.join(tmp, "cert.pem")), read(os.path.join(tmp, "key.pem"))
        _place(os.path.join(tmp, "key.pem"), os.path.join(machine_dir, "server-key.pem"), 0o400)
        _place(os.path.join(tmp, "cert.pem"), os.path.join(machine_dir, "server.pem"), 0o444)
    return cert, key


def ca_pem(store: Store) -> bytes:
    return read(os.path.join(certs_dir(store), "ca.pem"))


def crl(store: Store) -> bytes | None:
    path = os.path.join(certs_dir(store), "crl.pem")
    return read(path) if os.path.exists(path) else None


def revoke(store: Store, ca: pki.CA, serials: list[int]) -> bytes:
    """The store's CRL with ``serials`` added (valid as long as the certificates it may list)."""
    return read(pki.revoke(ca, certs_dir(store), serials, days=1095))
