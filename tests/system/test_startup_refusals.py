"""berthd refuses to start, with a clear message and exit code 1, on bad configuration."""

from __future__ import annotations

import os

import pytest


@pytest.mark.parametrize("config, args, message", [
    ({"hosts": ["tcp://127.0.0.1:2376"]}, [],
     "the following directives are specified both as a flag and in the configuration file: hosts: "
     "(from flag: [unix://{sock}], from file: [tcp://127.0.0.1:2376])"),
    ({"tls-verify": True}, [], "the following directives don't match any configuration option: tls-verify"),
    ({"storage-driver": "vfs"}, [], "dockerd options that berth does not support yet: storage-driver"),
    ({"bip": "10.1.0.1/24"}, ["--bip", "10.2.0.1/24"], "bip: (from flag: 10.2.0.1/24, from file: 10.1.0.1/24)"),
    ({"debug": "true"}, [], 'debug must be a boolean, got "true"'),
    ({}, ["-H", "tcp://0.0.0.0:2375"], "refusing to listen on tcp://0.0.0.0:2375 without TLS"),
    ({}, ["-H", "bogus://x"], "invalid bind address format: bogus://x"),
    ({}, ["--log-level", "loud"], "unable to parse logging level: loud"),
])
def test_refusals(make_berthd, config, args, message):
    d = make_berthd(config=config)
    d.args = args
    rc, out = d.run_to_exit()
    assert rc == 1
    assert message.format(sock=d.sock) in out
    assert "Traceback" not in out
    assert not os.path.exists(d.sock)  # nothing half-started


def test_no_tls_advice_names_berth_pki(make_berthd):
    d = make_berthd()
    d.args = ["-H", "tcp://0.0.0.0:2375"]
    rc, out = d.run_to_exit()
    assert "berth pki init" in out and "--tls=false" in out


def test_second_listener_failing_closes_the_first(make_berthd):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        d = make_berthd()
        d.hosts = [f"unix://{d.sock}", f"tcp://127.0.0.1:{port}"]
        rc, out = d.run_to_exit()
        assert rc == 1 and f"cannot listen on tcp://127.0.0.1:{port}" in out
        assert not os.path.exists(d.sock) and not os.path.exists(d.pidfile)
    finally:
        busy.close()


def test_validate_flag(make_berthd):
    d = make_berthd(config={"debug": True})
    d.args = ["--validate"]
    rc, out = d.run_to_exit()
    assert rc == 0 and "configuration OK" in out
