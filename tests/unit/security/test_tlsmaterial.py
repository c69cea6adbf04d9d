"""CRL files (several CAs', PEM or DER), berth pki's CRL keeping what it revoked, expiry warnings."""

from __future__ import annotations

import datetime as dt

import pytest

from berth.errors import InvalidParameter
from berth.security import pki, tlsmaterial
from tests.lib.ca import make_crl, odd_cert


def test_crls_of_several_cas_in_one_file_and_der(tmp_path):
    a = pki.init_ca(str(tmp_path / "a"))
    pki.init_ca(str(tmp_path / "b"))
    both = tmp_path / "both.pem"
    both.write_bytes(make_crl(str(tmp_path / "a"), [5, 7]) + make_crl(str(tmp_path / "b"), [9]))
    rev = tlsmaterial.load_crls(str(both))
    assert rev.count == 2 and (a.cert.subject.public_bytes(), 7) in rev.serials and len(rev.serials) == 3
    der = tmp_path / "a.der"
    der.write_bytes(make_crl(str(tmp_path / "a"), [5], der=True))
    assert tlsmaterial.load_crls(str(der)).count == 1
    (tmp_path / "junk").write_bytes(b"\x00junk")
    with pytest.raises(InvalidParameter, match="could not parse the CRL file"):
        tlsmaterial.load_crls(str(tmp_path / "junk"))
    with pytest.raises(InvalidParameter, match="could not read the CRL file"):
        tlsmaterial.load_crls(str(tmp_path / "missing"))


def test_pki_revoke_keeps_what_it_revoked_and_refuses_a_foreign_crl(tmp_path):
    ca = pki.init_ca(str(tmp_path / "ca"))
    path = pki.revoke(ca, str(tmp_path / "ca"), [0x10])
    pki.revoke(ca, str(tmp_path / "ca"), [0x20, 0x10])
    serials = {s for _issuer, s in tlsmaterial.load_crls(path).serials}
    assert serials == {0x10, 0x20}
    other = pki.init_ca(str(tmp_path / "other"))
    with pytest.raises(InvalidParameter, match="not signed by the CA"):
        pki.revoke(other, str(tmp_path / "ca"), [1])
    assert pki.serial_of("ab:cd") == 0xABCD


def test_expiry_warnings(tmp_path):
    pki.init_ca(str(tmp_path / "ca"))
    odd_cert(str(tmp_path / "ca"), str(tmp_path / "soon"), "soon", eku="server", days=5)
    odd_cert(str(tmp_path / "ca"), str(tmp_path / "old"), "old", expired=True)
    out = tlsmaterial.expiry_warnings({"server certificate": str(tmp_path / "soon" / "cert.pem"),
                                       "client": str(tmp_path / "old" / "cert.pem"),
                                       "CA certificate": str(tmp_path / "ca" / "ca.pem"), "gone": "/nonexistent"})
    assert len(out) == 2 and "expires on" in out[0] and "in 4 days" in out[0] and "expired on" in out[1]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=729)
    assert any("CA certificate" in w for w in tlsmaterial.expiry_warnings(
        {"CA certificate": str(tmp_path / "ca" / "ca.pem")}, now=later))


def test_first_certificate_of_tls12_and_tls13_messages():
    der = b"\x30\x03\x02\x01\x05"
    tls12 = b"\x0b\x00\x00\x0d" + b"\x00\x00\x08" + b"\x00\x00\x05" + der
    tls13 = b"\x0b\x00\x00\x10" + b"\x00" + b"\x00\x00\x0a" + b"\x00\x00\x05" + der + b"\x00\x00"
    assert tlsmaterial.first_certificate(tls12, tls13=False) == der
    assert tlsmaterial.first_certificate(tls13, tls13=True) == der
    assert tlsmaterial.first_certificate(b"\x0b\x00\x00\x01\x00", tls13=True) is None


def test_crl_warnings_before_and_after_the_next_update(tmp_path):
    from tests.lib.ca import make_crl

    pki.init_ca(str(tmp_path / "ca"), cn="crl CA")
    (tmp_path / "old.pem").write_bytes(make_crl(str(tmp_path / "ca"), [3], expired=True))
    out = tlsmaterial.crl_warnings(str(tmp_path / "old.pem"))
    assert len(out) == 1 and "CN=crl CA was due for renewal on" in out[0] and "every client certificate" in out[0]
    path = pki.revoke(pki.CA.load(str(tmp_path / "ca")), str(tmp_path / "ca"), [3])  # 30 days: no warning yet
    assert tlsmaterial.crl_warnings(path) == []
    soon = tlsmaterial.crl_warnings(path, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=25))
    assert len(soon) == 1 and "is due for renewal on" in soon[0] and "in 4 days" in soon[0]
    assert tlsmaterial.crl_warnings(str(tmp_path / "missing.pem")) == []
