"""Published ports in the kernel (no proxy) and berth's own nft tables: written only when there is
something to write, never with ``iptables: false``, removed with the last bridge network and by
``--cleanup-network``."""

from __future__ import annotations

import subprocess

from tests.network.netenv import HTTPD, api, dk, free_port, http_get, links, nft_ruleset, ok, start


def test_publish_to_busybox_httpd_in_the_kernel(netenv):
    d = start(netenv)
    port = free_port()
    ok(d, "run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "-P", "--expose", "99", "bb", *HTTPD)
    assert http_get(f"http://127.0.0.1:{port}/") == "hello-from-httpd\n"
    lines = ok(d, "port", "web").splitlines()
    assert f"80/tcp -> 127.0.0.1:{port}" in lines
    ephemeral = [line for line in lines if line.startswith("99/tcp -> 0.0.0.0:")]
    assert ephemeral and int(ephemeral[0].rsplit(":", 1)[1]) > 1024
    ps = ok(d, "ps", "--format", "{{.Ports}}").strip()
    assert f"127.0.0.1:{port}->80/tcp" in ps and "->99/tcp" in ps
    # no userland proxy: nothing listens on the port, the kernel forwards it
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert listening.strip() == ""
    assert f"dport {port} dnat to" in nft_ruleset()
    # another container reaches it through the bridge's gateway (hairpin)
    gw = api(d).inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"]
    p2 = free_port()
    ok(d, "run", "-d", "--name", "web2", "-p", f"{p2}:80", "bb", *HTTPD)
    out = ok(d, "run", "--rm", "bb", "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {gw} {p2}")
    assert "hello-from-httpd" in out
    # the same host port again: refused, nothing left
    r = dk(d, "run", "-d", "--name", "clash", "-p", f"{p2}:80", "bb", "sleep", "5")
    assert r.returncode != 0 and "port is already allocated" in r.stderr
    assert "clash" not in ok(d, "ps", "--format", "{{.Names}}")
    ok(d, "rm", "-f", "web", "web2")
    assert f"dport {port} " not in nft_ruleset() and f"dport {p2} " not in nft_ruleset()
    for _ in range(2):  # a --rm container's host port is free as soon as its removal is answered
        ok(d, "run", "--rm", "-p", f"127.0.0.1:{port}:80", "bb", "true")


def test_iptables_false_leaves_the_ruleset_alone(netenv):
    before = nft_ruleset()
    d = start(netenv, config={"iptables": False})
    port = free_port()
    ok(d, "network", "create", "--subnet", "10.0.11.0/24", "quiet")
    ok(d, "run", "-d", "--name", "web", "--network", "quiet", "-p", f"127.0.0.1:{port}:80", "bb", *HTTPD)
    ok(d, "run", "--rm", "--network", "quiet", "bb", "busybox", "ping", "-c", "1", "-W", "3", "web")
    assert nft_ruleset() == before
    ok(d, "rm", "-f", "web")
    ok(d, "network", "rm", "quiet")
    assert nft_ruleset() == before


def test_the_table_goes_with_the_last_bridge_network(netenv):
    d = start(netenv, ["--bridge=none"])
    assert "table ip berth" not in nft_ruleset()  # no bridge network: nothing written
    ok(d, "network", "create", "--subnet", "10.0.23.0/24", "only")
    assert "table ip berth" in nft_ruleset()
    ok(d, "network", "rm", "only")
    assert "table ip berth" not in nft_ruleset()


def test_cleanup_network_removes_berths_tables_only(netenv):
    subprocess.run(["nft", "add", "table", "ip", "bystander"], check=True)
    try:
        d = start(netenv)
        ok(d, "network", "create", "--subnet", "10.0.12.0/24", "n")
        assert "table ip berth" in nft_ruleset()
        d.stop()
        r = subprocess.run([*d.argv(), "--cleanup-network"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "table ip berth" not in nft_ruleset() and "table ip bystander" in nft_ruleset()
        assert d.bridge not in links()
    finally:
        subprocess.run(["nft", "delete", "table", "ip", "bystander"], capture_output=True)
