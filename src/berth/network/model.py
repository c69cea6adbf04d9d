"""The network model and the shapes the Engine API gives it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from berth.network.ipam import Pool

PREDEFINED = ("bridge", "host", "none")
BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
MASQ_OPT = "com.docker.network.bridge.enable_ip_masquerade"
ICC_OPT = "com.docker.network.bridge.enable_icc"
HOST_BINDING_OPT = "com.docker.network.bridge.host_binding_ipv4"
MTU_OPT = "com.docker.network.driver.mtu"
DEFAULT_BRIDGE_OPT = "com.docker.network.bridge.default_bridge"


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

    def data(self) -> str:
        return json.dumps({
            "internal": self.internal, "attachable": self.attachable, "ipv6": self.ipv6, "options": self.options,
            "labels": self.labels, "pools": [p.view() for p in self.pools], "ipam_driver": self.ipam_driver,
            "ipam_options": self.ipam_options, "device": self.device, "made_device": self.made_device,
            "user_subnets": self.user_subnets, "fixed": self.fixed})

    @classmethod
    def from_row(cls, r: Any) -> Network:
        d = json.loads(r["data"])
        return cls(r["id"], r["name"], r["driver"], r["created"], d["internal"], d["attachable"], d["ipv6"],
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
