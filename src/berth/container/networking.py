"""What the container package needs from networking, as a narrow Protocol. The container package
never imports the network package (nor the reverse): ``daemon/server.py`` passes in an adapter
(``daemon/backends/links.py``) that satisfies this by calling the network controller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from berth.container.model import Container


class NetSetup(Protocol):
    @property
    def netns(self) -> str | None:
        """The namespace file for the runtime; None: the host's, or a new empty one."""
        ...

    @property
    def hosts(self) -> str:
        ...

    @property
    def resolv(self) -> str:
        ...


class Networking(Protocol):
    def plan(self, host_config: dict[str, Any], networking: dict[str, Any] | None) -> tuple[str, Any]:
        """Check a create request's network settings: (NetworkMode as stored, an opaque plan)."""
        ...

    def register(self, cid: str, plan: Any) -> None:
        """Record the plan's attachments (inside the caller's transaction)."""
        ...

    def forget(self, cid: str) -> None:
        """The container's row goes (inside the caller's transaction): so do its attachments."""
        ...

    def setup(self, ctr: Container) -> NetSetup:
        """Before the runtime runs: the namespace, its links and addresses, published ports, /etc text."""
        ...

    def teardown(self, cid: str) -> None:
        """Release everything the container's network holds; safe when it holds nothing."""
        ...

    def holds(self, cid: str) -> bool:
        ...

    async def start_dns(self, ctr: Container) -> None:
        ...

    def bridge_address(self, cid: str) -> str:
        """The container's address on the default bridge (a legacy link's), "" when none."""
        ...

    def summary(self, ctr: Container) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(Ports, NetworkSettings.Networks) for the container list."""
        ...

    def settings(self, ctr: Container) -> dict[str, Any]:
        """NetworkSettings for inspect."""
        ...

    def on_network(self, cid: str, mode: str, wanted: list[str]) -> bool:
        """Whether the container is on one of the networks named (or ID-prefixed) in ``wanted``."""
        ...

    def reconcile(self, running: Callable[[str], bool], live: list[Container]) -> None:
        """At start: release what belongs to containers that are not running; re-reserve the ports of
        those that are."""
        ...
