"""The network model and the shapes the Engine API gives it; what the network needs to know of a
container (``Member``, ``Members``: the container package answers through an adapter, never
imported here), and what berthd's network options say (``NetSettings``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from berth.errors import NotFound
from berth.network import ipam
from berth.network.ipam import Pool
from berth.store.networks import NetworkRow

PREDEFINED = ("bridge", "host", "none")
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MASQ_OPT = "com.docker.network.bridge.enable_ip_masquerade"
ICC_OPT = "com.docker.network.bridge.enable_icc"
HOST_BINDING_OPT = "com.docker.network.bridge.host_binding_ipv4"
MTU_OPT = "com.docker.network.driver.mtu"
DEFAULT_BRIDGE_OPT = "com.docker.network.bridge.default_bridge"


def now() -> str:
    """The time as Docker writes it (RFC 3339, nanoseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def opt_bool(options: dict[str, str], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None or value == "":
        return default
    return str(value).strip().lower() in ("1", "t", "true", "yes", "on")


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created: str
    internal: bool = False
    attachable: bool = False
    ipv6: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    pools: list[Pool] = field(default_factory=list)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    device: str = ""  # bridge name, or the parent link of macvlan/ipvlan
    made_device: bool = False  # berth created ``device`` (and removes it with the network)
    user_subnets: bool = False  # the subnets were asked for (static addresses allowed)
    fixed: list[str] = field(default_factory=list)  # fixed-cidr(-v6): where automatic addresses come from

    @property
    def predefined(self) -> bool:
        return self.name in PREDEFINED

    def row(self) -> NetworkRow:
        return NetworkRow(self.id, self.name, self.driver, self.created, {
            "internal": self.internal, "attachable": self.attachable, "ipv6": self.ipv6, "options": self.options,
            "labels": self.labels, "pools": [p.view() for p in self.pools], "ipam_driver": self.ipam_driver,
            "ipam_options": self.ipam_options, "device": self.device, "made_device": self.made_device,
            "user_subnets": self.user_subnets, "fixed": self.fixed})

    @classmethod
    def from_row(cls, r: NetworkRow) -> Network:
        d = r.data
        return cls(r.id, r.name, r.driver, r.created, d["internal"], d["attachable"], d["ipv6"],
                   d["options"], d["labels"], [Pool.from_view(p) for p in d["pools"]], d["ipam_driver"],
                   d["ipam_options"], d["device"], d["made_device"], d["user_subnets"], d.get("fixed") or [])

    def view(self, containers: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local", "Driver": self.driver,
            "EnableIPv4": True, "EnableIPv6": self.ipv6,
            "IPAM": {"Driver": self.ipam_driver, "Options": self.ipam_options or None,
                     "Config": [p.view() for p in self.pools]},
            "Internal": self.internal, "Attachable": self.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers if containers is not None else {},
            "Options": self.options, "Labels": self.labels,
        }


@dataclass
class NetSettings:
    """What berthd's network options say (dockerd's flags of the same names). The daemon's
    configuration inherits these fields; ``daemon/setup.py`` takes them from it."""

    bridge: str = "berth0"  # "none": no default bridge network
    bip: str = ""
    fixed_cidr: str = ""
    fixed_cidr_v6: str = ""
    ipv6: bool = False
    iptables: bool = True
    ip_masq: bool = True
    ip_forward: bool = True
    icc: bool = True
    mtu: int = 0
    default_bind_ip: str = "0.0.0.0"
    address_pools: list[tuple[str, int]] = field(default_factory=lambda: list(ipam.DEFAULT_POOLS))
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)


@dataclass
class Member:
    """What the network needs to know of a container."""

    id: str
    name: str
    hostname: str
    domainname: str
    host_config: dict[str, Any]
    exposed: dict[str, Any]
    mac: str = ""

    @property
    def mode(self) -> str:
        return mode_of(self.host_config)


@dataclass
class Setup:
    netns: str | None  # the namespace file for the runtime; None: host, or a new empty one (none)
    hosts: str
    resolv: str


def mode_of(hc: dict[str, Any]) -> str:
    """A container's NetworkMode ("default" when it has none)."""
    return hc.get("NetworkMode") or "default"


class Members(Protocol):
    """What the network asks of containers; ``daemon/backends/links.py`` answers from the container
    registry."""

    def ref(self, name: str) -> tuple[str, str]:
        """(ID, name) of the container ``name`` names; NotFound."""
        ...

    def member(self, cid: str) -> Member:
        ...

    def is_running(self, cid: str) -> bool:
        ...

    def pid(self, cid: str) -> int:
        """A running container's init process."""
        ...

    def etc_files(self, cid: str) -> tuple[str, str]:
        """Its /etc/hosts and /etc/resolv.conf, as berth wrote them."""
        ...


class _NoMembers:
    """For ``berthd --cleanup-network``, which touches no container."""

    def ref(self, name: str) -> tuple[str, str]:
        raise NotFound(f"No such container: {name}")

    def member(self, cid: str) -> Member:
        raise NotFound(f"No such container: {cid}")

    def is_running(self, cid: str) -> bool:
        return False

    def pid(self, cid: str) -> int:
        return 0

    def etc_files(self, cid: str) -> tuple[str, str]:
        return "", ""


NO_MEMBERS: Members = _NoMembers()
