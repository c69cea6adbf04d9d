"""A small CA for berthd's mutual TLS, doing what the seeds do by hand with openssl and what
docker-machine generated: a CA, server certificates (serverAuth, with SANs) and client certificates
(clientAuth), in the file names docker expects (ca.pem, cert.pem, key.pem).

Keys are ECDSA P-256 unless RSA is asked for. Private keys are written 0400, certificates 0444.
Nothing is overwritten unless ``force`` is set; a failed run leaves no partial set of files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from berth.errors import Conflict, InvalidParameter, NotFound

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class KeySpec:
    rsa_bits: int | None = None  # None → ECDSA P-256

    def generate(self) -> PrivateKey:
        if self.rsa_bits is None:
            return ec.generate_private_key(ec.SECP256R1())
        if self.rsa_bits < 2048:
            raise InvalidParameter(f"RSA keys must have at least 2048 bits, not {self.rsa_bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)


def parse_san(text: str) -> x509.GeneralName:
    """``DNS:name`` or ``IP:address`` (as openssl's subjectAltName takes them)."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise InvalidParameter(f"invalid SAN {text!r}: use DNS:name or IP:address")
    kind = kind.strip().upper()
    if kind == "DNS":
        return x509.DNSName(value.strip())
    if kind == "IP":
        try:
            return x509.IPAddress(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise InvalidParameter(f"invalid SAN {text!r}: {value!r} is not an IP address") from None
    raise InvalidParameter(f"invalid SAN {text!r}: only DNS: and IP: are supported")


def _name(cn: str, org: str | None = None, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attrs)


def _serial() -> int:
    return int.from_bytes(os.urandom(16), "big") >> 1


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_set(files: dict[str, tuple[bytes, int]], force: bool) -> None:
    """Write every file or none: refuse existing ones without ``force``; stage, then rename."""
    existing = [p for p in files if os.path.exists(p)]
    if existing and not force:
        raise Conflict("refusing to overwrite " + ", ".join(existing) + " (use --force)")
    staged: list[tuple[str, str]] = []
    try:
        for path, (data, mode) in files.items():
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            staged.append((tmp, path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


@dataclass(frozen=True, slots=True)
class CA:
    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def load(cls, directory: str) -> CA:
        cert_path, key_path = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca-key.pem")
        try:
            with open(cert_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            with open(key_path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except FileNotFoundError as exc:
            raise NotFound(f"no CA in {directory}: {exc.filename} is missing (run 'berth pki init --dir "
                           f"{directory}' first)") from None
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"cannot read the CA in {directory}: {exc}") from None
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise InvalidParameter(f"the CA key in {directory} is neither ECDSA nor RSA")
        return cls(cert, key)


def init_ca(directory: str, cn: str = "berth CA", days: int = 730, key_spec: KeySpec = KeySpec(),
            force: bool = False) -> CA:
    """Create ``ca.pem`` and ``ca-key.pem`` in ``directory``."""
    _check_days(days)
    key = key_spec.generate()
    now = dt.datetime.now(dt.UTC)
    name = _name(cn)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_set({os.path.join(directory, "ca.pem"): (_cert_pem(cert), 0o444),
                os.path.join(directory, "ca-key.pem"): (_key_pem(key), 0o400)}, force)
    return CA(cert, key)


def _check_days(days: int) -> None:
    if days < 1 or days > 36500:
        raise InvalidParameter(f"--days must be between 1 and 36500, not {days}")


def issue(ca: CA, out_dir: str, cn: str, *, server: bool, sans: Sequence[str] = (), days: int = 730,
          key_spec: KeySpec = KeySpec(), org: str | None = None, force: bool = False,
          not_before: dt.datetime | None = None, unit: str | None = None) -> x509.Certificate:
    """Issue a server (serverAuth) or client (clientAuth) certificate into ``out_dir`` as cert.pem and
    key.pem, with a copy of the CA's ca.pem beside them."""
    _check_days(days)
    if not cn:
        raise InvalidParameter("a certificate needs a common name (--cn)")
    names = [parse_san(s) for s in sans]
    if server and not names:
        names = [x509.DNSName(cn)]
    key = key_spec.generate()
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org, unit)).issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=is_rsa, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    _write_set({os.path.join(out_dir, "ca.pem"): (_cert_pem(ca.cert), 0o444),
                os.path.join(out_dir, "cert.pem"): (_cert_pem(cert), 0o444),
                os.path.join(out_dir, "key.pem"): (_key_pem(key), 0o400)}, force)
    return cert


def env_lines(host: str, cert_path: str, shell: str = "bash") -> list[str]:
    """The lines ``docker-machine env`` would print for this daemon."""
    values = {"DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": host, "DOCKER_CERT_PATH": os.path.abspath(cert_path)}
    if shell == "fish":
        lines = [f'set -gx {k} "{v}";' for k, v in values.items()]
        hint = "# Run this command to configure your shell:\n# eval (berth pki env ...)"
    elif shell == "powershell":
        lines = [f'$Env:{k} = "{v}"' for k, v in values.items()]
        hint = "# Run this command to configure your shell:\n# & berth pki env --shell powershell ... | Invoke-Expression"
    elif shell in ("bash", "sh", "zsh"):
        lines = [f'export {k}="{v}"' for k, v in values.items()]
        hint = "# Run this command to configure your shell:\n# eval $(berth pki env ...)"
    else:
        raise InvalidParameter(f"unknown shell {shell!r}: use bash, fish or powershell")
    return [*lines, hint]


def revoke(ca: CA, directory: str, serials: Sequence[int], days: int = 30) -> str:
    """Add ``serials`` to the CA's CRL (``<directory>/crl.pem``, made when missing) and sign it again,
    valid for ``days``; what it revoked before stays. Returns the CRL's path (for ``--tlscrl``)."""
    _check_days(days)
    path = os.path.join(directory, "crl.pem")
    now = dt.datetime.now(dt.UTC)
    revoked: dict[int, dt.datetime] = {}
    if os.path.exists(path):
        with open(path, "rb") as f:
            try:
                old = x509.load_pem_x509_crl(f.read())
            except ValueError as exc:
                raise InvalidParameter(f"cannot read the CRL {path}: {exc}") from None
        if not old.is_signature_valid(ca.cert.public_key()):  # type: ignore[arg-type]
            raise InvalidParameter(f"the CRL {path} is not signed by the CA in {directory}")
        revoked = {r.serial_number: r.revocation_date_utc for r in old}
    for serial in serials:
        revoked.setdefault(serial, now)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now).next_update(now + dt.timedelta(days=days)))
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    crl = builder.sign(ca.key, hashes.SHA256())
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
    return path


def serial_of(what: str) -> int:
    """A serial number given as a certificate file (PEM) or in hex."""
    if os.path.exists(what):
        try:
            with open(what, "rb") as f:
                return int(x509.load_pem_x509_certificate(f.read()).serial_number)
        except ValueError as exc:
            raise InvalidParameter(f"{what} is not a PEM certificate: {exc}") from None
    try:
        return int(what.replace(":", ""), 16)
    except ValueError:
        raise InvalidParameter(f"{what!r} is neither a certificate file nor a hex serial number") from None
