"""The nft script, rendered from typed values only: golden files for each option combination
(``UPDATE_GOLDEN=1 pytest`` rewrites them after a deliberate change; review the diff), and the
injection that once reached ``nft -f`` through an image's ExposedPorts, refused at every boundary."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from berth import netvalues as ports
from berth.errors import InvalidParameter
from berth.network.firewall import BridgeRules, PortRule, Ruleset, render

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "nft"

CASES = {
    "default-bridge": Ruleset([BridgeRules.parse("berth0", ["172.17.0.0/16"])]),
    "published-ports": Ruleset([BridgeRules.parse("berth0", ["172.17.0.0/16"])],
                               [PortRule.parse("tcp", "127.0.0.1", 8080, "172.17.0.2", 80, "berth0"),
                                PortRule.parse("udp", "0.0.0.0", 53, "172.17.0.2", 53, "berth0"),
                                PortRule.parse("sctp", "10.1.2.3", 9000, "172.17.0.3", 9000, "berth0")]),
    "internal-no-icc-no-masq": Ruleset([BridgeRules.parse("berth0", ["172.17.0.0/16"]),
                                        BridgeRules.parse("br-a", ["10.0.2.0/24"], masquerade=False, icc=False,
                                                          internal=True)]),
    "dual-stack-guard-forward": Ruleset([BridgeRules.parse("br-6", ["10.9.0.0/24", "fd00:9::/64"])],
                                        [PortRule.parse("tcp", "::", 8443, "fd00:9::2", 443, "br-6"),
                                         PortRule.parse("tcp", "", 8080, "10.9.0.2", 80, "br-6")],
                                        guard_forward=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("family", ["ip", "ip6"])
def test_ruleset_matches_golden_file(name: str, family: str) -> None:
    got = render(CASES[name], family)
    path = GOLDEN / f"{name}.{family}.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(got)
    assert got == path.read_text(), f"{path} differs (UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_nft_accepts_the_golden_rulesets(name: str) -> None:
    """``nft -c`` (check only) in a new, empty network namespace: the host's ruleset is never touched."""
    nft = shutil.which("nft")
    if nft is None or os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root, nft and unshare")
    script = render(CASES[name], "ip") + render(CASES[name], "ip6")
    r = subprocess.run(["unshare", "--net", nft, "-c", "-f", "-"], input=script, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr


def test_every_table_is_berths_and_loopback_is_guarded() -> None:
    for rs in CASES.values():
        for family in ("ip", "ip6"):
            script = render(rs, family)
            tables = {tuple(line.replace("delete ", "").split()[1:3]) for line in script.splitlines()
                      if line.lstrip().startswith(("table ", "delete table "))}
            assert tables == {(family, "berth")}
    script = render(CASES["default-bridge"], "ip")
    assert 'iifname != "lo" ip daddr 127.0.0.0/8 drop' in script
    assert 'oifname "berth0" iifname != "berth0" ct state new ct status & dnat == 0 drop' in script
    assert render(Ruleset(), "ip") == "table ip berth\ndelete table ip berth\n"


@pytest.mark.parametrize("key", ["80/tcp\nflush ruleset", "80/tcp;flush ruleset", "80/icmp", "0/tcp", "65536",
                                 "80/TCP ", "-1/udp", "８０/tcp", "1e3/tcp", ""])
def test_bad_port_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidParameter):
        ports.parse_port_key(key)


def test_port_keys_parse_to_typed_values() -> None:
    assert ports.parse_port_key("80") == ports.PortKey(80, "tcp")
    assert ports.parse_port_key("53/UDP") == ports.PortKey(53, "udp")
    assert str(ports.parse_port_key("9/sctp")) == "9/sctp"


def test_rules_refuse_untyped_values() -> None:
    with pytest.raises(InvalidParameter):
        PortRule.parse("tcp\nflush ruleset", "", 80, "10.0.0.2", 80, "berth0")
    with pytest.raises(InvalidParameter):
        PortRule.parse("tcp", "", 80, "10.0.0.2", 80, 'berth0" accept; flush ruleset; "')
    with pytest.raises(ValueError):
        PortRule.parse("tcp", "127.0.0.1 accept", 80, "10.0.0.2", 80, "berth0")
    with pytest.raises(TypeError):
        PortRule("tcp", None, 80, "10.0.0.2", 80, "berth0")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        BridgeRules("br x", (ipaddress.ip_network("10.0.0.0/24"),))
    with pytest.raises(TypeError):
        BridgeRules("brx", ("10.0.0.0/24 accept",))  # type: ignore[arg-type]
    for bad in ("", "a" * 16, "a/b", "a b", 'a"', "..", "a\n"):
        with pytest.raises(InvalidParameter):
            ports.parse_ifname(bad)
    # an IPv6 scope is free text that ipaddress keeps and prints back: refused everywhere
    with pytest.raises(InvalidParameter):
        ports.parse_ip("fe80::1%x\n}\nflush ruleset")
    with pytest.raises(ValueError):
        PortRule.parse("tcp", "fe80::1%eth0", 80, "fd00::2", 80, "berth0")
    with pytest.raises(TypeError):
        PortRule.parse("tcp", "::1", 80, "10.0.0.2", 80, "berth0")  # a DNAT cannot cross families
