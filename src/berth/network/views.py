"""How networks and a container's networking show in the API: the network list's filters, the
Containers of a network's inspect, and a container's NetworkSettings (inspect) and Ports (list)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from berth.errors import InvalidParameter
from berth.network.catalog import Catalog
from berth.network.model import Members, Network, mode_of
from berth.store.networks import PortRows

_TOP_LEVEL = ("EndpointID", "Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
              "IPv6Gateway", "MacAddress")


class NetworkViews:
    def __init__(self, catalog: Catalog, port_rows: PortRows, members: Members,
                 netns_path: Callable[[str], str]) -> None:
        self.catalog = catalog
        self.port_rows = port_rows
        self.members = members
        self.netns_path = netns_path

    def containers(self, net: Network) -> dict[str, Any]:
        """The Containers of a network's inspect: those with an endpoint on it now."""
        out = {}
        for cid, _req, st in self.catalog.endpoints(net.id):
            if st is None:
                continue
            out[cid] = {"Name": self.members.ref(cid)[1], "EndpointID": st["EndpointID"],
                        "MacAddress": st.get("MacAddress", ""),
                        "IPv4Address": f"{st['IPAddress']}/{st['IPPrefixLen']}" if st.get("IPAddress") else "",
                        "IPv6Address": (f"{st['GlobalIPv6Address']}/{st['GlobalIPv6PrefixLen']}"
                                        if st.get("GlobalIPv6Address") else "")}
        return out

    def matches(self, net: Network, f: dict[str, list[str]]) -> bool:
        """The network list's filters (driver, id, name, scope, type, label, dangling)."""
        if "driver" in f and net.driver not in f["driver"]:
            return False
        if "id" in f and not any(net.id.startswith(v) for v in f["id"]):
            return False
        if "name" in f and not any(v in net.name for v in f["name"]):
            return False
        if "scope" in f and "local" not in f["scope"]:
            return False
        if "type" in f:
            kind = "builtin" if net.predefined else "custom"
            for v in f["type"]:
                if v not in ("builtin", "custom"):
                    raise InvalidParameter(f"invalid filter: 'type'='{v}'")
            if kind not in f["type"]:
                return False
        if "label" in f:
            for lbl in f["label"]:
                k, eq, v = lbl.partition("=")
                if k not in net.labels or (eq and net.labels[k] != v):
                    return False
        if "dangling" in f:
            want = f["dangling"][-1].lower() in ("true", "1")
            dangling = not net.predefined and not self.catalog.endpoints(net.id)
            if dangling != want:
                return False
        return True

    def settings(self, cid: str, hc: dict[str, Any], exposed: dict[str, Any] | None, running: bool) -> dict[str, Any]:
        """A container's NetworkSettings: each network's endpoint (what it asked for, and what it got
        while it runs), its published ports; the default bridge's endpoint also at the top level."""
        nets: dict[str, Any] = {}
        first: dict[str, Any] | None = None
        mode = mode_of(hc)
        if mode in ("host", "none"):
            net = self.catalog.find(mode)
            nets[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                          "NetworkID": net.id if net else "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                          "DNSNames": None}
        for net, req, st in self.catalog.attachments(cid):
            st = st if running and st else {}
            view = {"IPAMConfig": req.get("IPAMConfig"), "Links": req.get("Links"), "Aliases": req.get("Aliases"),
                    "MacAddress": st.get("MacAddress") or req.get("MacAddress") or "",
                    "DriverOpts": req.get("DriverOpts"), "NetworkID": net.id, "EndpointID": st.get("EndpointID", ""),
                    "Gateway": st.get("Gateway", ""), "IPAddress": st.get("IPAddress", ""),
                    "IPPrefixLen": st.get("IPPrefixLen", 0), "IPv6Gateway": st.get("IPv6Gateway", ""),
                    "GlobalIPv6Address": st.get("GlobalIPv6Address", ""),
                    "GlobalIPv6PrefixLen": st.get("GlobalIPv6PrefixLen", 0), "DNSNames": None}
            if not net.predefined and st:
                view["DNSNames"] = [self.members.ref(cid)[1], *(req.get("Aliases") or []), cid[:12]]
            nets[net.name] = view
            if first is None and net.name == "bridge":
                first = view
        ports: dict[str, Any] = {p: None for p in (exposed or {})}
        if running:
            for proto, hip, hport, cport in self.port_rows.of(cid):
                ports.setdefault(f"{cport}/{proto}", None)
                ports[f"{cport}/{proto}"] = (ports[f"{cport}/{proto}"] or []) + [{"HostIp": hip, "HostPort": str(hport)}]
        sandbox = running and os.path.exists(self.netns_path(cid))
        out = {"Bridge": "", "SandboxID": cid if sandbox else "", "SandboxKey": self.netns_path(cid) if sandbox else "",
               "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
               "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "",
               "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0,
               "IPv6Gateway": "", "MacAddress": "", "Networks": nets}
        if first is not None:
            for k in _TOP_LEVEL:
                out[k] = first[k]
        return out

    def summary(self, cid: str, hc: dict[str, Any], running: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(Ports, NetworkSettings.Networks) for the container list."""
        ports = [{"IP": hip, "PrivatePort": cport, "PublicPort": hport, "Type": proto}
                 for proto, hip, hport, cport in (self.port_rows.of(cid) if running else [])]
        return ports, self.settings(cid, hc, None, running)["Networks"]

    def network_names(self, cid: str) -> list[str]:
        return [n.name for n, _r, _s in self.catalog.attachments(cid)]
