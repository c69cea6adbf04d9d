"""A registry over TLS on an address that is not loopback (a veth the test makes; loopback registries
are insecure by default, as dockerd's 127.0.0.0/8): its CA found in certs.d, refused without it,
accepted as an insecure registry, and mutual TLS with a client certificate from certs.d."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.clis import berth, docker_at
from tests.lib.daemon import public_tmpdir
from tests.lib.machinehost import LINK_PREFIX, _reserve
from tests.lib.registry import Registry, start_registry
from tests.registry.test_pull import _archive


def _pki(*args: str) -> None:
    r = berth("pki", *args)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def tls_registry(cleanup: Cleanup) -> tuple[Registry, str, str]:
    """A TLS registry on an address of a veth made here; (registry, pki dir, address)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a veth for a non-loopback address)")
    ip, _peer = _reserve(cleanup)
    link = cleanup.link(f"{LINK_PREFIX}{secrets.token_hex(2)}r")
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", link + "p"], check=True)
    subprocess.run(["ip", "addr", "add", f"{ip}/30", "dev", link], check=True)
    subprocess.run(["ip", "link", "set", link, "up"], check=True)
    pki = cleanup.path(public_tmpdir("berth-regpki-"))
    _pki("init", "--dir", f"{pki}/ca")
    _pki("server", "--dir", f"{pki}/ca", "--cn", ip, "--san", f"IP:{ip}", "--out", f"{pki}/server")
    _pki("client", "--dir", f"{pki}/ca", "--cn", "puller", "--out", f"{pki}/client")
    tls = (f"  tls:\n    certificate: {pki}/server/cert.pem\n    key: {pki}/server/key.pem\n"
           f"    clientcas:\n      - {pki}/ca/ca.pem\n")
    reg = start_registry(cleanup, extra="", bind=ip, http_extra=tls)
    return reg, pki, ip


def _certs_d(cleanup: Cleanup, host: str, files: dict[str, str]) -> str:
    base = cleanup.path(public_tmpdir("berth-certsd-"))
    os.makedirs(f"{base}/{host}")
    for name, src in files.items():
        with open(src, "rb") as f, open(f"{base}/{host}/{name}", "wb") as out:
            out.write(f.read())
    return base


def test_certs_d_gives_the_ca_and_the_client_certificate(make_berthd, tls_registry, cleanup) -> None:  # type: ignore[no-untyped-def]
    reg, pki, _ip = tls_registry
    # skopeo pushes with the same material
    from tests.lib.registry import skopeo

    path = f"{reg.root}/app.tar"
    with open(path, "wb") as f:
        f.write(_archive("app:1"))
    skopeo("copy", "--quiet", "--dest-cert-dir", _skopeo_dir(cleanup, pki), f"docker-archive:{path}",
           f"docker://{reg.host}/app:1")
    name = f"{reg.host}/app:1"
    full = _certs_d(cleanup, reg.host, {"ca.crt": f"{pki}/ca/ca.pem", "client.cert": f"{pki}/client/cert.pem",
                                        "client.key": f"{pki}/client/key.pem"})
    here = {"NO_PROXY": f"127.0.0.1,localhost,{_ip}", "no_proxy": f"127.0.0.1,localhost,{_ip}"}
    d = make_berthd(env=here)
    d.args = ["--registry-certs-dir", full]
    d.start()
    r = docker_at(d, "pull", name, timeout=60)
    assert r.returncode == 0 and "Pull complete" in r.stdout, r.stderr

    no_ca = make_berthd(env=here)
    no_ca.args = ["--registry-certs-dir", _certs_d(cleanup, "elsewhere", {})]
    no_ca.start()
    r = docker_at(no_ca, "pull", name, timeout=60)
    assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr

    only_ca = make_berthd(env=here)  # the CA but no client certificate: the registry wants one
    only_ca.args = ["--registry-certs-dir", _certs_d(cleanup, reg.host, {"ca.crt": f"{pki}/ca/ca.pem"})]
    only_ca.start()
    r = docker_at(only_ca, "pull", name, timeout=60)
    assert r.returncode != 0 and ("certificate" in r.stderr or "handshake" in r.stderr), r.stderr


def _skopeo_dir(cleanup: Cleanup, pki: str) -> str:
    d = cleanup.path(public_tmpdir("berth-skopeo-certs-"))
    for name, src in (("ca.crt", f"{pki}/ca/ca.pem"), ("client.cert", f"{pki}/client/cert.pem"),
                      ("client.key", f"{pki}/client/key.pem")):
        with open(src, "rb") as f, open(f"{d}/{name}", "wb") as out:
            out.write(f.read())
    return d
