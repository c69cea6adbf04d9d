import pytest

from berth.cli.contexts import Context, ContextStore
from berth.cli.hosts import ConnectionOptions, normalize_host, resolve
from berth.errors import InvalidParameter


@pytest.mark.parametrize("text, tls, want", [
    ("", False, "unix:///var/run/docker.sock"),
    ("unix:///x.sock", False, "unix:///x.sock"),
    ("tcp://node3", False, "tcp://node3:2375"),
    ("tcp://node3", True, "tcp://node3:2376"),
    ("node3:4000", False, "tcp://node3:4000"),
    ("ssh://luc@192.168.33.10", False, "ssh://luc@192.168.33.10"),
])
def test_normalize(text, tls, want):
    assert normalize_host(text, tls) == want


def test_precedence(tmp_path):
    env = {"DOCKER_CONFIG": str(tmp_path)}
    store = ContextStore(env)
    store.create(Context("remote", "tcp://10.0.0.12:2375"))
    store.create(Context("other", "unix:///other.sock"))
    store.set_current("remote")
    o = ConnectionOptions
    assert resolve(o([]), env).host == "tcp://10.0.0.12:2375"  # current context
    assert resolve(o([]), {**env, "DOCKER_CONTEXT": "other"}).host == "unix:///other.sock"
    assert resolve(o([]), {**env, "DOCKER_CONTEXT": "other", "DOCKER_HOST": "unix:///env.sock"}).host \
        == "unix:///env.sock"  # DOCKER_HOST beats DOCKER_CONTEXT and the current context
    assert resolve(o(["unix:///flag.sock"]), {**env, "DOCKER_HOST": "unix:///env.sock"}).host == "unix:///flag.sock"
    assert resolve(o([], context="other"), {**env, "DOCKER_HOST": "unix:///env.sock"}).host == "unix:///other.sock"
    with pytest.raises(InvalidParameter, match="either specify --host or --context"):
        resolve(o(["unix:///a"], context="other"), env)


def test_tls_from_environment(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    env = {"DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_HOST": "tcp://node3", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(tmp_path)}
    ep = resolve(ConnectionOptions([]), env)
    assert ep.host == "tcp://node3:2376"
    assert ep.tls is not None and ep.tls.verify and ep.tls.ca == str(tmp_path / "ca.pem")
    assert ep.tls.cert == str(tmp_path / "cert.pem") and ep.tls.key == str(tmp_path / "key.pem")
    # --tls without verify: encrypted, server not verified
    ep = resolve(ConnectionOptions([], tls=True), {"DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_HOST": "h:1",
                                                   "DOCKER_CERT_PATH": str(tmp_path)})
    assert ep.tls is not None and not ep.tls.verify


def test_verify_without_ca_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidParameter, match="no CA certificate"):
        resolve(ConnectionOptions([], tlsverify=True), {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CERT_PATH": str(tmp_path)})
