"""The daemon's TLS material: certificate revocation lists, expiry warnings, and who was refused.

CRLs (``--tlscrl``, PEM or DER, one or several CAs' in one file) are checked by OpenSSL at the
handshake (``VERIFY_CRL_CHECK_LEAF``): a revoked client gets a ``certificate revoked`` alert and never
reaches HTTP. OpenSSL does not say which certificate it refused, so the client's Certificate message
is kept as the handshake reads it (the context's message callback sees it after decryption, TLS 1.3
included) and the refusal is logged with its serial and subject.

Every CA that signs client certificates needs a CRL in the file once one is given (OpenSSL refuses a
client whose issuer has none: "unable to get certificate CRL").
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from berth.errors import InvalidParameter

EXPIRY_WARNING = dt.timedelta(days=30)
CRL_WARNING = dt.timedelta(days=7)  # CRLs are re-signed often (berth pki revoke: 30 days by default)
_CERT_ATTR = "_berth_client_cert"  # set on the SSLObject: the DER of the client's first certificate


@dataclass(frozen=True, slots=True)
class Revocations:
    pem: str  # every CRL, as PEM, for OpenSSL
    serials: frozenset[tuple[bytes, int]]  # (issuer name DER, serial) of every revoked certificate
    count: int  # CRLs read


def load_crls(path: str) -> Revocations:
    """Every CRL in ``path``: PEM (one or more) or a single DER CRL. InvalidParameter says why not."""
    try:
        with open(path, "rb") as f:
            data = f.read(16 << 20)
    except OSError as exc:
        raise InvalidParameter(f"could not read the CRL file {path}: {exc.strerror}") from None
    crls: list[x509.CertificateRevocationList] = []
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            for block in data.split(b"-----END X509 CRL-----")[:-1]:
                start = block.find(b"-----BEGIN X509 CRL-----")
                crls.append(x509.load_pem_x509_crl(block[start:] + b"-----END X509 CRL-----\n"))
        else:
            crls.append(x509.load_der_x509_crl(data))
    except ValueError as exc:
        raise InvalidParameter(f"could not parse the CRL file {path}: {exc}") from None
    if not crls:
        raise InvalidParameter(f"the CRL file {path} holds no CRL")
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in crls)
    serials = frozenset((c.issuer.public_bytes(), r.serial_number) for c in crls for r in c)
    return Revocations(pem, serials, len(crls))


def apply_crls(ctx: ssl.SSLContext, revocations: Revocations) -> None:
    """OpenSSL reads CRLs from a PEM file only (``cadata`` takes certificates): a private one, gone at once."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(revocations.pem)
        f.flush()
        ctx.load_verify_locations(cafile=f.name)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def keep_client_certificates(ctx: ssl.SSLContext) -> None:
    """Record the client's certificate on its SSLObject as the handshake reads it. The callback runs
    for every TLS record (8 µs a request measured here): a connection leaves it with the handshake
    (see ``after_handshake``)."""
    def callback(conn: object, direction: str, version: object, content_type: object, msg_type: object,
                 data: bytes) -> None:
        if direction != "read" or msg_type != ssl._TLSMessageType.CERTIFICATE:  # type: ignore[attr-defined]
            return
        der = first_certificate(data, tls13=version == ssl.TLSVersion.TLSv1_3)
        if der is not None:
            try:
                setattr(conn, _CERT_ATTR, der)
            except AttributeError:
                pass

    try:
        ctx._msg_callback = callback  # type: ignore[attr-defined]
    except AttributeError:  # an interpreter without it: refusals are logged without the serial
        pass


def set_after_handshake(ctx: ssl.SSLContext, twin: ssl.SSLContext) -> None:
    """``twin``: the same settings without the message callback, for connections past their handshake."""
    ctx._berth_after_handshake = twin  # type: ignore[attr-defined]


def after_handshake(sslobj: ssl.SSLObject, ctx: ssl.SSLContext) -> None:
    """Move a connection whose handshake is done to the context without the message callback."""
    twin = getattr(ctx, "_berth_after_handshake", None)
    if twin is not None:
        sslobj.context = twin


def first_certificate(msg: bytes, tls13: bool) -> bytes | None:
    """The first certificate (DER) of a TLS Certificate handshake message (with its 4-byte header)."""
    pos = 4
    if tls13:
        if len(msg) < pos + 1:
            return None
        pos += 1 + msg[pos]  # certificate_request_context
    if len(msg) < pos + 6:
        return None
    pos += 3  # the list's length
    n = int.from_bytes(msg[pos:pos + 3], "big")
    pos += 3
    der = msg[pos:pos + n]
    return der if len(der) == n and n else None


def refused_certificate(sslobj: object) -> str:
    """'serial N (subject)' of the client certificate a handshake read, or ''."""
    der = getattr(sslobj, _CERT_ATTR, None)
    if not der:
        return ""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return ""
    return f"serial {cert.serial_number:x} ({cert.subject.rfc4514_string()})"


def crl_warnings(path: str, now: dt.datetime | None = None) -> list[str]:
    """A warning for each CRL in ``path`` past its next update, or within 7 days of it: OpenSSL then
    refuses every client certificate of that CA ("CRL has expired"), revoked or not."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        revocations = load_crls(path)
    except InvalidParameter:
        return []  # said at load
    out = []
    for pem in revocations.pem.split("-----END X509 CRL-----")[:-1]:
        crl = x509.load_pem_x509_crl((pem + "-----END X509 CRL-----\n").strip().encode())
        until = crl.next_update_utc
        if until is None:
            continue
        issuer = crl.issuer.rfc4514_string()
        if until <= now:
            out.append(f"WARNING: the CRL {path} of {issuer} was due for renewal on {until:%Y-%m-%d}: every client "
                       "certificate of that CA is refused until a new one is given (berth pki revoke signs one; "
                       "SIGHUP reads it)")
        elif until - now <= CRL_WARNING:
            out.append(f"WARNING: the CRL {path} of {issuer} is due for renewal on {until:%Y-%m-%d}, in "
                       f"{(until - now).days} days; after that every client certificate of that CA is refused "
                       "(berth pki revoke signs a new one)")
    return out


def expiry_warnings(paths: dict[str, str], now: dt.datetime | None = None) -> list[str]:
    """A warning for each certificate in the files (``what`` → path) that expires within 30 days or
    has expired; unreadable files are someone else's error."""
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for what, path in paths.items():
        try:
            with open(path, "rb") as f:
                certs = x509.load_pem_x509_certificates(f.read(4 << 20))
        except (OSError, ValueError):
            continue
        for cert in certs:
            left = cert.not_valid_after_utc - now
            name = cert.subject.rfc4514_string()
            if left <= dt.timedelta(0):
                out.append(f"WARNING: the {what} {path} ({name}) expired on {cert.not_valid_after_utc:%Y-%m-%d}")
            elif left <= EXPIRY_WARNING:
                out.append(f"WARNING: the {what} {path} ({name}) expires on {cert.not_valid_after_utc:%Y-%m-%d}, "
                           f"in {left.days} days")
    return out
