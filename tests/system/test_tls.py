"""Mutual TLS with the real docker CLI: who gets in and who does not, and with which message.

Certificates come from three independent sources: ``berth pki``, the seeds' openssl commands, and
the test library's own ``odd_cert`` (expired, wrong usage)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.lib.ca import SeedCA, odd_cert
from tests.lib.clis import base_env, berth, docker
from tests.lib.daemon import Berthd, free_port, public_tmpdir


def pki(*args: str) -> None:
    r = berth("pki", *args)
    assert r.returncode == 0, r.stderr


@dataclass
class TLSDaemon:
    d: Berthd
    port: int
    root: str

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def env(self, cert_dir: str, verify: bool = True) -> dict[str, str]:
        extra = {"DOCKER_HOST": self.host, "DOCKER_CERT_PATH": cert_dir}
        if verify:
            extra["DOCKER_TLS_VERIFY"] = "1"
        return base_env(**extra)


def start_tls(make_berthd, server_dir: str, verify: bool = True) -> TLSDaemon:  # type: ignore[no-untyped-def]
    port = free_port()
    d = make_berthd()
    d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
    d.args = ["--tlsverify" if verify else "--tls", "--tlscacert", f"{server_dir}/ca.pem",
              "--tlscert", f"{server_dir}/cert.pem", "--tlskey", f"{server_dir}/key.pem"]
    d.start(wait_for=[port])
    return TLSDaemon(d, port, server_dir)


@pytest.fixture
def pki_dirs() -> Iterator[str]:
    root = public_tmpdir("berth-pki-")
    pki("init", "--dir", f"{root}/ca")
    pki("server", "--dir", f"{root}/ca", "--cn", "localhost", "--san", "DNS:localhost", "--san", "IP:127.0.0.1",
        "--out", f"{root}/server")
    pki("client", "--dir", f"{root}/ca", "--cn", "node1", "--org", "ops", "--out", f"{root}/client")
    pki("init", "--dir", f"{root}/otherca")
    pki("client", "--dir", f"{root}/otherca", "--cn", "mallory", "--out", f"{root}/foreign")
    odd_cert(f"{root}/ca", f"{root}/expired", "old", expired=True)
    # a client certificate from another CA, in a directory that trusts the daemon's real CA
    os.makedirs(f"{root}/foreign-client")
    for src, name in ((f"{root}/ca/ca.pem", "ca.pem"), (f"{root}/foreign/cert.pem", "cert.pem"),
                      (f"{root}/foreign/key.pem", "key.pem")):
        with open(src, "rb") as f, open(f"{root}/foreign-client/{name}", "wb") as g:
            g.write(f.read())
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def test_mutual_tls_matrix_with_docker_cli(make_berthd, pki_dirs):
    t = start_tls(make_berthd, f"{pki_dirs}/server")
    ok = docker("version", "--format", "{{.Server.APIVersion}}", env=t.env(f"{pki_dirs}/client"))
    assert ok.returncode == 0 and ok.stdout.strip() == "1.47", ok.stderr
    # the same with berth, and the caller's identity is the certificate's subject
    r = berth("-D", "version", env=t.env(f"{pki_dirs}/client"))
    assert r.returncode == 0, r.stderr
    refused = {
        "no client certificate": f"{pki_dirs}/noclient",
        "a certificate from another CA": f"{pki_dirs}/foreign-client",
        "a server-only certificate": f"{pki_dirs}/server",
        "an expired certificate": f"{pki_dirs}/expired",
    }
    os.makedirs(f"{pki_dirs}/noclient", exist_ok=True)
    with open(f"{pki_dirs}/ca/ca.pem") as src, open(f"{pki_dirs}/noclient/ca.pem", "w") as dst:
        dst.write(src.read())
    for what, cert_dir in refused.items():
        r = docker("version", env=t.env(cert_dir))
        assert r.returncode != 0, f"{what} was accepted"
        assert "Server:" not in r.stdout, what
        r = berth("version", env=t.env(cert_dir))
        assert r.returncode == 1, what
        assert "refused the TLS connection" in r.stderr, (what, r.stderr)
    assert "certificate" in t.d.log()  # the daemon logged why


def test_identity_of_tls_and_unix_callers_is_logged(make_berthd, pki_dirs):
    t = start_tls(make_berthd, f"{pki_dirs}/server")
    t.d.stop()
    t.d.args.append("--debug")
    t.d.start(wait_for=[t.port])
    assert docker("info", env=t.env(f"{pki_dirs}/client")).returncode == 0
    assert docker("-H", t.d.url, "info").returncode == 0
    deadline = time.monotonic() + 10  # the line is logged just after the answer is written: it may trail it
    while "unix:root(0) GET /info" not in t.d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = t.d.log()
    assert "tls:CN=node1,O=ops GET /info" in log
    assert "unix:root(0) GET /info" in log


def test_plain_http_to_tls_port_gets_docker_hint(make_berthd, pki_dirs):
    t = start_tls(make_berthd, f"{pki_dirs}/server")
    r = docker("-H", t.host, "version")
    assert r.returncode != 0
    assert "Are you trying to connect to a TLS-enabled daemon without TLS?" in r.stderr
    r = berth("-H", t.host, "version")
    assert "Are you trying to connect to a TLS-enabled daemon without TLS?" in r.stderr


def test_tls_to_a_plain_port_says_so(make_berthd, pki_dirs):
    port = free_port()
    d = make_berthd()
    d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
    d.start(wait_for=[port])
    r = berth("version", env=base_env(DOCKER_HOST=f"tcp://127.0.0.1:{port}", DOCKER_TLS_VERIFY="1",
                                      DOCKER_CERT_PATH=f"{pki_dirs}/client"))
    assert r.returncode == 1 and "does not speak TLS" in r.stderr


def test_server_cert_checked_by_the_client(make_berthd, pki_dirs):
    t = start_tls(make_berthd, f"{pki_dirs}/server")
    # a client that trusts another CA refuses the daemon
    r = berth("version", env=base_env(DOCKER_HOST=t.host, DOCKER_TLS_VERIFY="1",
                                      DOCKER_CERT_PATH=f"{pki_dirs}/foreign"))
    assert r.returncode == 1 and "server's certificate is not trusted" in r.stderr
    # the name must match a SAN: 127.0.0.1 is in it, "localhost" is in it
    r = docker("-H", f"tcp://localhost:{t.port}", "version", env=t.env(f"{pki_dirs}/client"))
    assert r.returncode == 0, r.stderr


def test_tls_without_verify_serves_clients_without_certificates(make_berthd, pki_dirs):
    t = start_tls(make_berthd, f"{pki_dirs}/server", verify=False)
    only_ca = f"{pki_dirs}/only-ca"
    os.makedirs(only_ca)
    with open(f"{pki_dirs}/ca/ca.pem") as src, open(f"{only_ca}/ca.pem", "w") as dst:
        dst.write(src.read())
    r = docker("--tls", "-H", t.host, "version", "--format", "{{.Server.Version}}",
               env=base_env(DOCKER_CERT_PATH=only_ca))
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0", r.stderr
    r = berth("--tls", "-H", t.host, "version", "--format", "{{.Server.Version}}",
              env=base_env(DOCKER_CERT_PATH=only_ca))
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0", r.stderr


def test_seeds_openssl_certificates_work_both_ways(make_berthd, tmp_path):
    """The seeds' exact openssl flow (RSA, extfile.cnf) for the daemon and the client."""
    ca = SeedCA(str(tmp_path / "seed"))
    scert, skey = ca.issue("daemon", "localhost", "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
                                                  "extendedKeyUsage = serverAuth\n")
    ccert, ckey = ca.issue("client", "node1", "extendedKeyUsage = clientAuth\n")
    server_dir = ca.as_docker_dir("server", scert, skey)
    client_dir = ca.as_docker_dir("client", ccert, ckey)
    t = start_tls(make_berthd, server_dir)
    for tool in (docker, berth):
        r = tool("version", env=t.env(client_dir))
        assert r.returncode == 0, (tool.__name__, r.stderr)


def test_berth_pki_certificates_with_rsa(make_berthd, tmp_path):
    root = str(tmp_path)
    pki("init", "--dir", f"{root}/ca", "--rsa", "2048")
    pki("server", "--dir", f"{root}/ca", "--cn", "localhost", "--san", "IP:127.0.0.1", "--rsa", "2048",
        "--out", f"{root}/s")
    pki("client", "--dir", f"{root}/ca", "--cn", "c", "--rsa", "2048", "--out", f"{root}/c")
    t = start_tls(make_berthd, f"{root}/s")
    assert docker("version", env=t.env(f"{root}/c")).returncode == 0


def test_run_interactive_over_mutual_tls(make_berthd, pki_dirs):
    """The docker CLI half-closes with close_notify when stdin ends; the output must still arrive."""
    from tests.lib import rawhttp
    from tests.lib.images import busybox_rootfs_tar

    t = start_tls(make_berthd, f"{pki_dirs}/server")
    assert rawhttp.request(t.d.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    data = "".join(f"line {i}\n" for i in range(5000))
    r = docker("run", "-i", "--rm", "bb", "cat", env=t.env(f"{pki_dirs}/client"), input=data)
    assert r.returncode == 0 and r.stdout == data, r.stderr


def test_only_ecdhe_aead_suites_and_no_renegotiation(make_berthd, pki_dirs):
    """Go's TLS 1.2 set, as dockerd: a client offering only RSA key exchange or CBC suites gets no
    handshake; TLS 1.1 neither; a client asking to renegotiate is refused."""
    import shutil
    import subprocess
    import time

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    t = start_tls(make_berthd, f"{pki_dirs}/server")
    client = f"{pki_dirs}/client"

    def s_client(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{t.port}", "-CAfile",
                               f"{client}/ca.pem", "-cert", f"{client}/cert.pem", "-key", f"{client}/key.pem",
                               *args], input=stdin, capture_output=True, text=True, timeout=30)

    ok = s_client("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in ok.stdout, ok.stdout[-500:]
    for cipher in ("ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-SHA384"):
        r = s_client("-tls1_2", "-cipher", cipher)
        assert "Cipher is (NONE)" in r.stdout or r.returncode != 0, (cipher, r.stdout[-300:])
    r = s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Cipher is (NONE)" in r.stdout or r.returncode != 0
    # "R" on s_client's stdin asks to renegotiate; the server must refuse ("no renegotiation")
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{t.port}", "-tls1_2", "-CAfile",
                          f"{client}/ca.pem", "-cert", f"{client}/cert.pem", "-key", f"{client}/key.pem"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdin is not None and p.stdout is not None
        deadline = time.monotonic() + 20
        seen = ""
        while "Verify return code" not in seen and time.monotonic() < deadline:
            seen += p.stdout.readline()
        p.stdin.write("R\n")
        p.stdin.flush()
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out[-500:]


def test_a_build_context_over_tls_and_over_the_unix_socket_hashes_alike(make_berthd, pki_dirs, tmp_path):
    """Over TLS the event loop reads a build context; over the unix socket the hashing thread reads
    it from the socket itself (rawbody). The second build, the same context by the other way, is
    all from the cache: the same image. (FROM scratch, as the test found: a COPY onto no layers needs
    an empty lower directory for its overlay, and the cache has to look among images of no parent.)"""
    t = start_tls(make_berthd, f"{pki_dirs}/server")
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\nLABEL built=twice\n")
    (ctx / "blob").write_bytes(os.urandom(5 << 20))  # many reads, many 32 KiB chunks
    for i in range(50):
        (ctx / "src" / f"f{i}").write_text(f"file {i}\n" * (i + 1))
    env = {**t.env(f"{pki_dirs}/client"), "DOCKER_BUILDKIT": "0"}
    over_tls = docker("build", "-q", str(ctx), env=env, timeout=120)
    assert over_tls.returncode == 0 and over_tls.stdout.startswith("sha256:"), over_tls.stderr
    unix_env = {**base_env(), "DOCKER_BUILDKIT": "0"}
    over_unix = docker("-H", t.d.url, "build", str(ctx), env=unix_env, timeout=120)
    assert over_unix.returncode == 0, over_unix.stderr
    assert over_unix.stdout.count("Using cache") == 2, over_unix.stdout  # COPY and LABEL
    assert f"Successfully built {over_tls.stdout.strip()[7:19]}" in over_unix.stdout, over_unix.stdout
