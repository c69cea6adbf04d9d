import json

import pytest

from berth.daemon import config
from berth.daemon.hosts import parse_host
from berth.errors import InvalidParameter


def load(tmp_path, argv, file_cfg=None):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(file_cfg or {}))
    return config.load([*argv, "--config-file", str(path)], environ={})


@pytest.mark.parametrize("text, tls, want", [
    ("unix://", False, "unix:///var/run/docker.sock"),
    ("unix:///run/b.sock", False, "unix:///run/b.sock"),
    ("tcp://", False, "tcp://127.0.0.1:2375"),
    ("tcp://", True, "tcp://127.0.0.1:2376"),
    ("tcp://0.0.0.0", True, "tcp://0.0.0.0:2376"),
    ("127.0.0.1:4243", False, "tcp://127.0.0.1:4243"),
    ("tcp://[::1]:2375", False, "tcp://[::1]:2375"),
    ("fd://", False, "fd://"),
    ("fd://3", False, "fd://3"),
])
def test_parse_host(text, tls, want):
    assert str(parse_host(text, tls)) == want


@pytest.mark.parametrize("bad", ["", "udp://1.2.3.4:5", "tcp://host:port", "tcp://a:1/path", "fd://x",
                                 "unix://relative"])
def test_parse_host_rejects(bad):
    with pytest.raises(InvalidParameter):
        parse_host(bad, False)


def test_conflict_lists_every_key_in_dockerds_words(tmp_path):
    with pytest.raises(InvalidParameter) as e:
        load(tmp_path, ["-H", "unix:///a.sock", "--debug", "--tlsverify"],
             {"hosts": ["tcp://127.0.0.1:2376"], "debug": False, "tlsverify": True})
    msg = e.value.message
    assert "the following directives are specified both as a flag and in the configuration file: " in msg
    assert "hosts: (from flag: [unix:///a.sock], from file: [tcp://127.0.0.1:2376])" in msg
    assert "debug: (from flag: true, from file: false)" in msg
    assert "tlsverify: (from flag: true, from file: true)" in msg


def test_unknown_key(tmp_path):
    with pytest.raises(InvalidParameter, match="the following directives don't match any configuration option: "
                                                "nope, tls-verify"):
        load(tmp_path, [], {"tls-verify": True, "nope": 1})


def test_dockerd_key_not_yet_supported_is_named(tmp_path):
    with pytest.raises(InvalidParameter, match="does not support yet: seccomp-profile, storage-driver"):
        load(tmp_path, [], {"storage-driver": "vfs", "seccomp-profile": "/x.json"})


def test_network_keys_are_read_and_checked(tmp_path):
    cfg = load(tmp_path, ["--bip", "10.9.0.1/24"], {"iptables": False, "default-address-pools": [
        {"base": "10.50.0.0/16", "size": 24}], "dns": ["127.0.0.1"], "mtu": 1400})
    assert (cfg.bip, cfg.iptables, cfg.address_pools, cfg.dns, cfg.mtu) == (
        "10.9.0.1/24", False, [("10.50.0.0/16", 24)], ["127.0.0.1"], 1400)
    with pytest.raises(InvalidParameter, match="bip: \\(from flag: 10.9.0.1/24, from file: 10.8.0.1/24\\)"):
        load(tmp_path, ["--bip", "10.9.0.1/24"], {"bip": "10.8.0.1/24"})
    with pytest.raises(InvalidParameter, match="invalid bip"):
        load(tmp_path, ["--bip", "10.9.0.300/24"], {})
    with pytest.raises(InvalidParameter, match="size 8 does not fit"):
        load(tmp_path, [], {"default-address-pools": [{"base": "10.50.0.0/16", "size": 8}]})
    with pytest.raises(InvalidParameter, match="mtu must be an integer"):
        load(tmp_path, [], {"mtu": "big"})
    with pytest.raises(InvalidParameter, match="nope is not an ip address"):
        load(tmp_path, ["--dns", "nope"], {})


@pytest.mark.parametrize("cfg, fragment", [
    ({"debug": "yes"}, 'debug must be a boolean, got "yes"'),
    ({"hosts": "tcp://127.0.0.1:1"}, 'hosts must be a list of strings, got "tcp://127.0.0.1:1"'),
    ({"group": 5}, "group must be a string, got 5"),
    ({"log-level": "chatty"}, "unable to parse logging level: chatty"),
    ({"hosts": ["udp://x:1"]}, "invalid bind address format: udp://x:1"),
    ({"labels": ["novalue"]}, "invalid label 'novalue'"),
])
def test_bad_values_name_key_and_value(tmp_path, cfg, fragment):
    with pytest.raises(InvalidParameter) as e:
        load(tmp_path, [], cfg)
    assert fragment in e.value.message


def test_file_values_are_used_and_flags_fill_the_rest(tmp_path):
    cfg = load(tmp_path, ["--data-root", str(tmp_path / "d")], {"hosts": ["unix:///x.sock"], "debug": True,
                                                                "labels": ["a=b"]})
    assert [str(h) for h in cfg.hosts] == ["unix:///x.sock"]
    assert cfg.debug and cfg.log_level == "debug" and cfg.labels == ["a=b"]
    assert cfg.data_root == str(tmp_path / "d")


def test_plain_tcp_beyond_loopback_refused_unless_tls_false(tmp_path):
    with pytest.raises(InvalidParameter, match="berth pki init") as e:
        load(tmp_path, ["-H", "tcp://0.0.0.0:2375"])
    assert "--tls=false" in e.value.message
    cfg = load(tmp_path, ["-H", "tcp://0.0.0.0:2375", "--tls=false"])
    assert not cfg.tls
    load(tmp_path, ["-H", "tcp://127.0.0.1:2375"])  # loopback: allowed (with a warning at start)
    load(tmp_path, ["-H", "tcp://localhost:2375"])


def test_tlsverify_implies_tls_and_port_2376(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    cfg = load(tmp_path, ["--tlsverify", "-H", "tcp://0.0.0.0", "--tlscacert", str(tmp_path / "ca.pem"),
                          "--tlscert", str(tmp_path / "cert.pem"), "--tlskey", str(tmp_path / "key.pem")])
    assert cfg.tls and cfg.tlsverify and str(cfg.hosts[0]) == "tcp://0.0.0.0:2376"


def test_tls_files_must_exist(tmp_path):
    with pytest.raises(InvalidParameter, match="TLS is on but these files do not exist"):
        load(tmp_path, ["--tlsverify", "-H", "tcp://127.0.0.1:1", "--tlscert", "/nonexistent.pem"])


def test_explicit_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(InvalidParameter, match="does not exist"):
        config.load(["--config-file", str(tmp_path / "none.json")], environ={})
