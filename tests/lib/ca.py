"""An independent test CA, so that a bug in ``berth pki`` cannot hide itself.

``SeedCA`` runs the openssl commands the seeds give (RSA keys, ``extfile.cnf`` with
subjectAltName/extendedKeyUsage, ``openssl x509 -req``), proving certificates made by hand that way
work with berthd. ``odd_cert`` makes the certificates no tool should produce on purpose (expired),
with the ``cryptography`` library directly.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class SeedCA:
    """A CA made with the seeds' openssl commands (2048-bit RSA here, to keep the suite fast)."""

    def __init__(self, directory: str, bits: int = 2048) -> None:
        self.dir = directory
        self.bits = str(bits)
        os.makedirs(directory, exist_ok=True)
        _openssl("genrsa", "-out", "ca-key.pem", self.bits, cwd=directory)
        _openssl("req", "-new", "-x509", "-days", "730", "-key", "ca-key.pem", "-sha256", "-subj", "/CN=seed-ca",
                 "-out", "ca.pem", cwd=directory)

    @property
    def ca_pem(self) -> str:
        return os.path.join(self.dir, "ca.pem")

    def issue(self, name: str, cn: str, extfile: str) -> tuple[str, str]:
        """(cert path, key path) for ``cn`` with the extfile.cnf lines given."""
        d = self.dir
        _openssl("genrsa", "-out", f"{name}-key.pem", self.bits, cwd=d)
        _openssl("req", "-subj", f"/CN={cn}", "-sha256", "-new", "-key", f"{name}-key.pem", "-out", f"{name}.csr",
                 cwd=d)
        with open(os.path.join(d, f"{name}-extfile.cnf"), "w") as f:
            f.write(extfile)
        _openssl("x509", "-req", "-days", "730", "-sha256", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
                 "ca-key.pem", "-CAcreateserial", "-out", f"{name}-cert.pem", "-extfile", f"{name}-extfile.cnf",
                 cwd=d)
        os.chmod(os.path.join(d, f"{name}-key.pem"), 0o400)
        return os.path.join(d, f"{name}-cert.pem"), os.path.join(d, f"{name}-key.pem")

    def as_docker_dir(self, name: str, cert: str, key: str) -> str:
        """A directory with ca.pem, cert.pem and key.pem, as the docker CLI wants DOCKER_CERT_PATH."""
        out = os.path.join(self.dir, f"{name}-dir")
        os.makedirs(out, exist_ok=True)
        for src, dst in ((self.ca_pem, "ca.pem"), (cert, "cert.pem"), (key, "key.pem")):
            with open(src, "rb") as f, open(os.path.join(out, dst), "wb") as g:
                g.write(f.read())
        return out


def make_crl(ca_dir: str, serials: list[int], der: bool = False, expired: bool = False) -> bytes:
    """A CRL of the CA in ``ca_dir`` revoking ``serials`` (PEM, or DER); ``expired``: past its next update."""
    with open(os.path.join(ca_dir, "ca.pem"), "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(ca_dir, "ca-key.pem"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=7)))
    if expired:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
                   .last_update(now - dt.timedelta(days=40)).next_update(now - dt.timedelta(days=10)))
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - dt.timedelta(minutes=1))
            .build())
    crl = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def serial_of(cert_path: str) -> int:
    with open(cert_path, "rb") as f:
        return int(x509.load_pem_x509_certificate(f.read()).serial_number)


def odd_cert(ca_dir: str, out_dir: str, cn: str, *, expired: bool = False, eku: str = "client",
             days: int = 30) -> str:
    """A certificate signed by the CA in ``ca_dir`` (ca.pem, ca-key.pem), in docker's layout; a server
    one names 127.0.0.1 and localhost."""
    with open(os.path.join(ca_dir, "ca.pem"), "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(ca_dir, "ca-key.pem"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else \
        (now - dt.timedelta(minutes=5), now + dt.timedelta(days=days))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if eku == "client" else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if eku != "client":
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(out_dir, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(ca_dir, "ca.pem"), "rb") as f, open(os.path.join(out_dir, "ca.pem"), "wb") as g:
        g.write(f.read())
    return out_dir
