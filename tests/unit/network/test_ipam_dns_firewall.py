"""Pure logic of networking: address management, the DNS wire format, the nft script."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from berth.errors import Forbidden, InvalidParameter
from berth.network import dns, ipam

N = ipaddress.ip_network
A = ipaddress.ip_address


def test_choose_subnet_skips_everything_the_host_and_berth_use():
    pools = [("10.201.0.0/16", 24)]
    assert ipam.choose_subnet(pools, []) == N("10.201.0.0/24")
    taken = [N("10.201.0.0/24"), N("10.201.1.128/25"), N("10.0.0.0/8")]
    assert ipam.choose_subnet(pools, taken) is None  # 10.0.0.0/8 covers the whole pool
    assert ipam.choose_subnet(pools, taken[:2]) == N("10.201.2.0/24")
    assert ipam.choose_subnet(ipam.DEFAULT_POOLS, [N("172.17.0.0/16")]) == N("172.18.0.0/16")
    assert ipam.choose_subnet([("fd00::/48", 64)], [], version=6) == N("fd00::/64")


def test_parse_pools_checks_as_dockerd():
    [p] = ipam.parse_pools([{"Subnet": "10.0.2.0/24", "IPRange": "10.0.2.128/25", "Gateway": "10.0.2.1",
                             "AuxiliaryAddresses": {"r": "10.0.2.2"}}])
    assert (p.subnet, p.ip_range, p.gateway, p.aux) == (N("10.0.2.0/24"), N("10.0.2.128/25"), A("10.0.2.1"),
                                                         {"r": A("10.0.2.2")})
    assert ipam.parse_pools([{"Subnet": "10.0.2.7/24"}])[0].subnet == N("10.0.2.0/24")
    for bad, words in [({"Subnet": "10.0.2.0/24", "Gateway": "10.0.3.1"}, "no matching subnet for gateway"),
                       ({"Subnet": "10.0.2.0/24", "IPRange": "10.0.3.0/25"}, "no matching subnet for range"),
                       ({"Subnet": "10.0.2.0"}, "invalid CIDR address"),
                       ({"Subnet": "banana/24"}, "invalid CIDR address"),
                       ({"Gateway": "10.0.0.1"}, "needs a subnet")]:
        with pytest.raises(InvalidParameter, match=words):
            ipam.parse_pools([bad])
    with pytest.raises(InvalidParameter, match="overlapping"):
        ipam.parse_pools([{"Subnet": "10.0.0.0/16"}, {"Subnet": "10.0.1.0/24"}])


def test_allocate_lowest_free_never_reserved_never_twice():
    pool = ipam.Pool(N("10.0.2.0/29"), gateway=A("10.0.2.1"), aux={"x": A("10.0.2.2")})
    used: set = set()
    got = []
    for _ in range(4):
        a = ipam.allocate(pool, used)
        used.add(a)
        got.append(str(a))
    assert got == ["10.0.2.3", "10.0.2.4", "10.0.2.5", "10.0.2.6"]  # not .0, .1 (gw), .2 (aux), .7 (broadcast)
    with pytest.raises(Forbidden, match="no available IPv4 addresses"):
        ipam.allocate(pool, used)
    with pytest.raises(Forbidden, match="already in use"):
        ipam.allocate(pool, set(), A("10.0.2.1"))
    with pytest.raises(InvalidParameter, match="does not belong"):
        ipam.allocate(pool, set(), A("10.0.3.5"))
    ranged = ipam.Pool(N("10.0.2.0/24"), ip_range=N("10.0.2.128/25"), gateway=A("10.0.2.1"))
    assert ipam.allocate(ranged, set()) == A("10.0.2.128")
    assert ipam.allocate(ranged, set(), A("10.0.2.10")) == A("10.0.2.10")  # static: anywhere in the subnet


def test_address_pools_from_flags_and_file():
    assert ipam.parse_address_pools(["base=10.50.0.0/16,size=24", {"base": "10.60.0.0/16", "size": 20}]) == [
        ("10.50.0.0/16", 24), ("10.60.0.0/16", 20)]
    with pytest.raises(InvalidParameter, match="does not fit"):
        ipam.parse_address_pools(["base=10.50.0.0/16,size=8"])
    with pytest.raises(InvalidParameter, match="needs base"):
        ipam.parse_address_pools(["size=24"])


def _query(name: str, qtype: int = dns.A, qid: int = 0x1234) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_dns_parse_and_answer():
    data = _query("Web.dnet")
    q = dns.parse(data)
    assert q is not None and (q.id, q.name, q.qtype) == (0x1234, "web.dnet", dns.A)
    reply = dns.answer(data, q, ["10.0.2.10", "fd00::2"])
    qid, flags, qd, an = struct.unpack_from("!HHHH", reply)
    assert (qid, flags & 0x8000, flags & 0xF, qd, an) == (0x1234, 0x8000, 0, 1, 1)  # only the A record
    assert reply.endswith(bytes([10, 0, 2, 10]))
    q6 = dns.parse(_query("web", dns.AAAA))
    assert q6 is not None
    assert dns.answer(_query("web", dns.AAAA), q6, ["10.0.2.10", "fd00::2"]).endswith(A("fd00::2").packed)
    empty = dns.answer(data, q, [], rcode=2)
    assert struct.unpack_from("!HH", empty)[1] & 0xF == 2
    for bad in (b"", b"\0" * 11, _query("x")[:-3], struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\0\0\1\0\1"):
        assert dns.parse(bad) is None  # short, truncated, or a response
