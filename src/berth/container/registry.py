"""The containers berthd knows, for every part of the container package: typed containers from the
store, where each one's files are, one lock per container, the waiters for its exit, and its events.

Paths: ``<data-root>/containers/<id>`` holds what outlives a run (the upper and work directories,
the log, /etc files, the tmpfs of ``--ipc shareable``); ``<exec-root>/containers/<id>`` is the
runtime bundle (config.json, the rootfs mount point, conmon's files); ``<exec-root>/exits/<id>``
is the exit code conmon writes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from berth.container.model import Container
from berth.container.runtime import Paths
from berth.errors import InvalidParameter, NotFound
from berth.store.containers import ContainerRows

Emit = Callable[[str, str, str, dict[str, str]], None]  # (type, action, actor ID, attributes)
WAIT_CONDITIONS = ("not-running", "next-exit", "removed", "")


class Layout:
    def __init__(self, data_root: str, exec_root: str) -> None:
        self.root = os.path.join(data_root, "containers")
        self.run_root = os.path.join(exec_root, "containers")
        self.exit_dir = os.path.join(exec_root, "exits")

    def dir(self, cid: str, *parts: str) -> str:
        """A path in the container's own directory under the data root (berth's files, not the container's)."""
        return os.path.join(self.root, cid, *parts)

    def paths(self, cid: str) -> Paths:
        run = os.path.join(self.run_root, cid)
        return Paths(bundle=run, run_dir=os.path.join(run, "run"), exit_dir=self.exit_dir,
                     log_path=self.dir(cid, f"{cid}-json.log"))

    def rootfs(self, cid: str) -> str:
        return os.path.join(self.run_root, cid, "rootfs")

    def shm(self, cid: str) -> str:
        return self.dir(cid, "shm")

    def exit_file(self, cid: str) -> str:
        return os.path.join(self.exit_dir, cid)


class Registry:
    def __init__(self, rows: ContainerRows, layout: Layout, emit: Emit) -> None:
        self.rows = rows
        self.layout = layout
        self._emit = emit
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, list[tuple[str, asyncio.Future[int]]]] = {}
        self._changed: dict[str, asyncio.Event] = {}  # set when a container stops: log followers finish at once

    # ---- records ---------------------------------------------------------------------------------
    def get(self, name_or_id: str) -> Container:
        row = self.rows.find(name_or_id.lstrip("/"))
        if row is None:
            raise NotFound(f"No such container: {name_or_id}")
        return Container.from_row(row)

    def find(self, name_or_id: str) -> Container | None:
        try:
            return self.get(name_or_id)
        except NotFound:
            return None

    def all(self) -> list[Container]:
        return [Container.from_row(r) for r in self.rows.all()]

    def exists(self, cid: str) -> bool:
        return self.rows.exists(cid)

    def is_running(self, cid: str) -> bool:
        ctr = self.find(cid)
        return ctr is not None and ctr.running

    def status_of(self, cid: str) -> str | None:
        """The container's status, None when it is gone."""
        ctr = self.find(cid)
        return ctr.state.status if ctr is not None else None

    def save_state(self, ctr: Container) -> None:
        self.rows.save_state(ctr.id, ctr.state.view(), ctr.restart_count, ctr.manually_stopped)

    def volumes_of(self, cid: str) -> list[tuple[str, str, bool]]:
        return self.rows.volumes_of(cid)

    # ---- coordination ----------------------------------------------------------------------------
    def lock(self, cid: str) -> asyncio.Lock:
        """Held while a container's state changes (start, exit, remove): one change at a time."""
        return self._locks.setdefault(cid, asyncio.Lock())

    def changed(self, cid: str) -> asyncio.Event:
        return self._changed.setdefault(cid, asyncio.Event())

    def register_wait(self, name: str, condition: str) -> tuple[Container, asyncio.Future[int]]:
        """Register a waiter now (before the container may exit); await the future for the exit code."""
        if condition not in WAIT_CONDITIONS:
            raise InvalidParameter(f"invalid condition: {condition!r}")
        ctr = self.get(name)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        cond = condition or "not-running"
        if cond == "not-running" and not ctr.running:
            fut.set_result(ctr.state.exit_code)
        else:
            self._waiters.setdefault(ctr.id, []).append((cond, fut))
        return ctr, fut

    def wake(self, cid: str, code: int, conditions: tuple[str, ...]) -> None:
        keep = []
        for cond, fut in self._waiters.get(cid, []):
            if cond in conditions and not fut.done():
                fut.set_result(code)
            elif not fut.done():
                keep.append((cond, fut))
        self._waiters[cid] = keep

    def forget(self, cid: str) -> None:
        """The container is removed: its lock goes, and log followers learn it at once."""
        self._locks.pop(cid, None)
        self._waiters.pop(cid, None)
        self._changed.pop(cid, asyncio.Event()).set()

    def event(self, action: str, ctr: Container, **extra: str) -> None:
        # labels first: an image's label named "name" or "image" cannot disguise the event (as dockerd)
        self._emit("container", action, ctr.id, {**ctr.labels, "name": ctr.name, "image": ctr.image, **extra})

    def emit(self, type_: str, action: str, actor: str, attrs: dict[str, str]) -> None:
        self._emit(type_, action, actor, attrs)
