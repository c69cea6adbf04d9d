import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from berth.errors import Conflict, InvalidParameter
from berth.security import pki


def load(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_ca_server_client_ekus_sans_and_modes(tmp_path):
    ca = pki.init_ca(str(tmp_path / "ca"))
    assert mode(tmp_path / "ca" / "ca-key.pem") == 0o400 and mode(tmp_path / "ca" / "ca.pem") == 0o444
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    pki.issue(ca, str(tmp_path / "srv"), "node3", server=True, sans=["DNS:node3", "IP:10.0.0.12"])
    srv = load(str(tmp_path / "srv" / "cert.pem"))
    assert list(srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node3"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.12"]
    assert isinstance(srv.public_key(), ec.EllipticCurvePublicKey)
    assert mode(tmp_path / "srv" / "key.pem") == 0o400 and mode(tmp_path / "srv" / "cert.pem") == 0o444
    pki.issue(ca, str(tmp_path / "cli"), "node1", server=False, key_spec=pki.KeySpec(2048), org="ops")
    cli = load(str(tmp_path / "cli" / "cert.pem"))
    assert list(cli.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert isinstance(cli.public_key(), rsa.RSAPublicKey)
    assert cli.issuer == ca.cert.subject
    assert open(tmp_path / "cli" / "ca.pem", "rb").read() == open(tmp_path / "ca" / "ca.pem", "rb").read()


def test_refuses_to_overwrite_without_force_and_leaves_nothing_partial(tmp_path):
    pki.init_ca(str(tmp_path))
    before = open(tmp_path / "ca.pem", "rb").read()
    with pytest.raises(Conflict, match="use --force"):
        pki.init_ca(str(tmp_path))
    assert open(tmp_path / "ca.pem", "rb").read() == before
    pki.init_ca(str(tmp_path), force=True)
    assert open(tmp_path / "ca.pem", "rb").read() != before
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


@pytest.mark.parametrize("san", ["IP:nope", "URI:x", "node3"])
def test_bad_san(tmp_path, san):
    ca = pki.init_ca(str(tmp_path / "ca"))
    with pytest.raises(InvalidParameter):
        pki.issue(ca, str(tmp_path / "s"), "n", server=True, sans=[san])
    assert not os.path.exists(tmp_path / "s" / "key.pem")


def test_env_lines():
    lines = pki.env_lines("tcp://node3:2376", "/certs")
    assert lines[:3] == ['export DOCKER_TLS_VERIFY="1"', 'export DOCKER_HOST="tcp://node3:2376"',
                         'export DOCKER_CERT_PATH="/certs"']
    assert pki.env_lines("tcp://n:2376", "/c", "fish")[0] == 'set -gx DOCKER_TLS_VERIFY "1";'
    assert pki.env_lines("tcp://n:2376", "/c", "powershell")[1] == '$Env:DOCKER_HOST = "tcp://n:2376"'
