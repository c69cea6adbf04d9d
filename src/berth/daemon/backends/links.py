"""The link between the container and network domains, which never import each other: each states
what it needs as a narrow Protocol (``container.networking.Networking``, ``network.Members``), and
the two adapters here answer them, one from the network controller and one from the container
registry. ``daemon/server.py`` makes both and passes them in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from berth.container.model import Container
from berth.container.registry import Registry
from berth.linux.files import read_text
from berth.network.controller import NetworkController
from berth.network.model import Member, Setup


def member(ctr: Container) -> Member:
    """What the network needs to know of a container."""
    return Member(ctr.id, ctr.name, ctr.config.get("Hostname") or ctr.short_id, ctr.config.get("Domainname") or "",
                  ctr.host_config, ctr.config.get("ExposedPorts") or {}, ctr.config.get("MacAddress") or "")


class NetworkMembers:
    """``Members`` for the network controller: containers from the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def ref(self, name: str) -> tuple[str, str]:
        ctr = self.registry.get(name)
        return ctr.id, ctr.name

    def member(self, cid: str) -> Member:
        return member(self.registry.get(cid))

    def is_running(self, cid: str) -> bool:
        return self.registry.get(cid).running

    def pid(self, cid: str) -> int:
        return self.registry.get(cid).state.pid

    def etc_files(self, cid: str) -> tuple[str, str]:
        layout = self.registry.layout
        return read_text(layout.dir(cid, "hosts")), read_text(layout.dir(cid, "resolv.conf"))


class ContainerNetworks:
    """``Networking`` for the container package: the network controller, in the container's terms."""

    def __init__(self, controller: NetworkController) -> None:
        self.c = controller
        self.sandboxes = controller.sandboxes
        self.views = controller.views

    def plan(self, host_config: dict[str, Any], networking: dict[str, Any] | None) -> tuple[str, Any]:
        return self.c.plan(host_config, networking)

    def register(self, cid: str, plan: Any) -> None:
        self.c.register(cid, plan)

    def forget(self, cid: str) -> None:
        self.c.forget(cid)

    def setup(self, ctr: Container) -> Setup:
        return self.sandboxes.setup(member(ctr))

    def teardown(self, cid: str) -> None:
        self.sandboxes.teardown(cid)

    def holds(self, cid: str) -> bool:
        return self.sandboxes.holds(cid)

    async def start_dns(self, ctr: Container) -> None:
        await self.c.discovery.start(member(ctr))

    def bridge_address(self, cid: str) -> str:
        bridge = self.c.catalog.find("bridge")
        return self.sandboxes.address_of(cid, [bridge]) if bridge is not None else ""

    def summary(self, ctr: Container) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return self.views.summary(ctr.id, ctr.host_config, ctr.running)

    def settings(self, ctr: Container) -> dict[str, Any]:
        return self.views.settings(ctr.id, ctr.host_config, ctr.config.get("ExposedPorts"), ctr.running)

    def on_network(self, cid: str, mode: str, wanted: list[str]) -> bool:
        return any(n in wanted or any(f and self.c.get(n).id.startswith(f) for f in wanted)
                   for n in [*self.views.network_names(cid), mode] if n)

    def reconcile(self, running: Callable[[str], bool], live: list[Container]) -> None:
        self.sandboxes.reconcile(running, [member(c) for c in live])
