"""A container's output after conmon wrote it: read back (``docker logs``, ``-f`` until the container
stopped and its log is drained), and shipped to syslog or journald by a shipper per container.

The json-file log (``<id>-json.log``, rotated by the monitor) is always written; with the syslog and
journald drivers a shipper follows it and sends each line on, so the log survives berthd's own
restarts the same way for every driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from types import MappingProxyType

from berth.container import logdrivers, logship
from berth.container import logs as clogs
from berth.container.model import Container
from berth.container.registry import Registry
from berth.errors import InvalidParameter

_LIVE = ("created", "running", "paused")
_POLL = 0.02  # seconds between reads of a followed log (an exit wakes the follower at once)


def log_config(ctr: Container) -> logdrivers.LogConfig:
    return logdrivers.parse(ctr.host_config.get("LogConfig"))


class ContainerLogs:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._shippers: dict[str, asyncio.Task[tuple[str, int] | None]] = {}  # container ID → its shipper
        self._journal_marks: dict[str, tuple[str, int]] = {}  # container ID → last journald entry its shipper sent

    # ---- shipping ------------------------------------------------------------------------------------
    async def open_shipper(self, ctr: Container, offset: int | None) -> logship.Shipper | None:
        """For syslog and journald: a shipper connected to its target (System when it cannot be
        reached, as dockerd fails the start), reading the log file from ``offset`` (None: its end);
        None when the driver keeps its log here or a shipper runs already (a restart keeps it)."""
        lc = log_config(ctr)
        if not lc.shipped or (ctr.id in self._shippers and not self._shippers[ctr.id].done()):
            return None
        path = self.registry.layout.paths(ctr.id).log_path
        if offset is None:
            offset = os.path.getsize(path) if os.path.exists(path) else 0
        info = logdrivers.Info(ctr.id, ctr.name, ctr.image_id, ctr.image, MappingProxyType(ctr.labels),
                               tuple(ctr.config.get("Env") or ()))
        shipper = logship.Shipper(lc, info, path, offset)
        await asyncio.to_thread(shipper.open)
        return shipper

    def run_shipper(self, ctr: Container, shipper: logship.Shipper) -> None:
        def alive() -> bool:
            return self.registry.status_of(ctr.id) in ("running", "paused", "restarting")

        task = asyncio.get_running_loop().create_task(shipper.run(alive, lambda: self.registry.changed(ctr.id)))
        self._shippers[ctr.id] = task

        def done(t: asyncio.Task[tuple[str, int] | None]) -> None:
            if shipper.mark is not None:
                self._journal_marks[ctr.id] = shipper.mark
            if self._shippers.get(ctr.id) is t:
                del self._shippers[ctr.id]
        task.add_done_callback(done)

    def forget(self, cid: str) -> None:
        self._journal_marks.pop(cid, None)

    # ---- reading -------------------------------------------------------------------------------------
    async def follow(self, ctr: Container, stdout: bool, stderr: bool, since: float, until: float | None,
                     tail: int | None, follow: bool, from_start: bool = True) -> AsyncIterator[clogs.Line]:
        """Yield log Lines; with ``follow``, until the container stops and its log is drained."""
        reader = clogs.LogReader(self.registry.layout.paths(ctr.id).log_path)
        if not from_start:
            with contextlib.suppress(FileNotFoundError):
                reader.offset = os.path.getsize(reader.path)
        try:
            older: list[clogs.Line] = []
            if from_start:
                for path in clogs.rotated_files(reader.path):
                    older += clogs.read_rotated(path)
            for line in clogs.select(older + reader.read_new(), stdout, stderr, since, until, tail):
                yield line
            if not follow:
                return
            while True:
                status = self.registry.status_of(ctr.id)
                lines = reader.read_new()
                for line in clogs.select(lines, stdout, stderr, since, until, None):
                    yield line
                if until is not None and time.time() > until:
                    return
                # Done once the container has run and stopped (or is gone) and the log is drained;
                # a container not started yet (attach before start) is waited for.
                if not lines and status not in _LIVE:
                    lines = reader.read_new()
                    for line in clogs.select(lines, stdout, stderr, since, until, None):
                        yield line
                    return
                changed = self.registry.changed(ctr.id)
                changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), _POLL)  # new output is polled; an exit wakes us
        finally:
            reader.close()

    async def output(self, ctr: Container, *, stdout: bool, stderr: bool, since: float, until: float | None,
                     tail: int | None, follow: bool, from_start: bool) -> AsyncIterator[clogs.Line | None]:
        """The container's log lines for the API; the first item is None once the log driver is checked
        (so a follower can answer before any line is written)."""
        lc = log_config(ctr)
        if from_start and not lc.readable:
            raise InvalidParameter("configured logging driver does not support reading")
        yield None
        if from_start and lc.driver == "journald":
            async for line in logship.journal_lines(ctr.id, since, until, tail, follow, lambda: self._ended(ctr.id)):
                if stdout and line.stream == clogs.STDOUT or stderr and line.stream == clogs.STDERR:
                    yield line
            return
        async for line in self.follow(ctr, stdout, stderr, since, until, tail, follow, from_start):
            yield line

    async def _ended(self, cid: str) -> tuple[str, int] | None:
        """Once the container has stopped and its shipper has sent the rest of its file: the mark of
        the last journald entry sent (None when no shipper sent any)."""
        while self.registry.status_of(cid) in (*_LIVE, "restarting"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.registry.changed(cid).wait(), 0.25)
        task = self._shippers.get(cid)
        if task is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(task)
        return self._journal_marks.get(cid)
