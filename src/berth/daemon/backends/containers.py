"""The container routes' backends: thin adapters from the api's Protocols (wire dicts) to the
container package and to the lifecycle that spans the domains.

- ``ContainerAPI``: create, start, stop, wait, list, inspect, logs, attach, pause, rename, update,
  stats, prune (``api.backends.ContainerBackend``);
- ``ContainerFacts``: what authorization and the other backends ask about containers.

A container's files (cp, export, diff, commit) are in ``containerfiles.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

from berth.api import streams
from berth.container import mounts as cmounts
from berth.container import names, stats, views
from berth.container import state as transitions
from berth.container.config import check_host_config
from berth.container.model import Container
from berth.daemon.backends.lifecycle import Lifecycle
from berth.errors import Conflict, InvalidParameter, NotFound, NotModified, NotSupported
from berth.linux import safetree

UPDATABLE = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus", "PidsLimit",
             "RestartPolicy")


def _has_label(labels: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)


class ContainerFacts:
    """Containers as other parts of the daemon see them: authorization, images, /info, /system/df."""

    def __init__(self, life: Lifecycle) -> None:
        self.life = life
        self.registry = life.registry

    def labels_of(self, name: str) -> tuple[str, dict[str, str]] | None:
        """(ID, labels) of the container ``name`` names, None when there is none (for authorization)."""
        ctr = self.registry.find(name)
        return None if ctr is None else (ctr.id, ctr.labels)

    def create_body_of(self, name: str) -> dict[str, Any] | None:
        """The container's configuration as a create body (Config with HostConfig), None when there is
        no such container: what a start asks for, decided again at the start (for authorization)."""
        ctr = self.registry.find(name)
        return None if ctr is None else {**ctr.config, "Image": ctr.image, "HostConfig": dict(ctr.host_config)}

    def host_binds(self, name: str) -> list[str]:
        """The host paths the container ``name`` binds (what --volumes-from it would share)."""
        ctr = self.registry.get(name)
        hc = {k: v for k, v in ctr.host_config.items() if k in ("Binds", "Mounts")}
        return [m["source"] for m in cmounts.mounts(hc, create=False) if m["type"] == "bind"]

    def images_in_use(self) -> set[str]:
        return self.registry.rows.image_ids()

    def counts(self) -> dict[str, int]:
        states = [c.state.status for c in self.registry.all()]
        return {"Containers": len(states), "ContainersRunning": states.count("running"),
                "ContainersPaused": states.count("paused"),
                "ContainersStopped": len(states) - states.count("running") - states.count("paused")}

    def df(self) -> dict[str, Any]:
        """The containers' and volumes' parts of /system/df."""
        ctrs = []
        for c in self.registry.all():
            s = summary(self.life, c)
            s["SizeRw"] = safetree.tree_size(self.registry.layout.dir(c.id, "upper"))
            ctrs.append(s)
        vols = []
        for v in self.life.volumes.all():
            view = v.view()
            view["UsageData"] = {"Size": self.life.volumes.size(v.name), "RefCount": len(self.life.volumes.users(v.name))}
            vols.append(view)
        return {"Containers": ctrs, "Volumes": vols}


def summary(life: Lifecycle, ctr: Container) -> dict[str, Any]:
    ports, networks = life.networks.summary(ctr)
    return views.summary(ctr, ports, networks)


class ContainerAPI:
    def __init__(self, life: Lifecycle) -> None:
        self.life = life
        self.registry = life.registry
        self.runtimes = life.runtimes

    def container_create(self, body: dict[str, Any], name: str, api_version: str) -> dict[str, Any]:
        return self.life.create(body, name)

    async def container_start(self, name: str) -> None:
        await self.life.start(name)

    async def container_stop(self, name: str, timeout: int | None, signal: str) -> None:
        await self.life.stop(name, timeout, signal)

    async def container_kill(self, name: str, signal: str) -> None:
        await self.life.kill(name, signal)

    async def container_restart(self, name: str, timeout: int | None, signal: str) -> None:
        with contextlib.suppress(NotModified):
            await self.life.stop(name, timeout, signal)
        await self.life.start(name)
        self.registry.event("restart", self.registry.get(name))

    async def container_remove(self, name: str, force: bool, volumes: bool) -> None:
        await self.life.remove(name, force, volumes)

    async def container_wait(self, name: str, condition: str) -> asyncio.Future[int]:
        try:
            return self.registry.register_wait(name, condition)[1]
        except NotFound:
            code = self.life.monitor.removed_exit(name, condition)  # a --rm container that just removed itself
            if code is None:
                raise
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            fut.set_result(code)
            return fut

    def container_remove_link(self, parent: str, alias: str) -> None:
        """``docker rm --link PARENT/ALIAS``: the legacy link goes, both containers stay."""
        ctr = self.registry.get(parent)
        links = list(ctr.host_config.get("Links") or [])
        keep = [lk for lk in links if (str(lk).partition(":")[2].rsplit("/", 1)[-1]
                                       or str(lk).partition(":")[0].strip("/")) != alias]
        if keep == links:
            raise NotFound(f"No such container: {parent}/{alias}")
        self.registry.rows.set_host_config(ctr.id, {**ctr.host_config, "Links": keep or None})

    def container_list(self, all_: bool, limit: int | None, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        ctrs = self.registry.all()
        if not all_ and not filters.get("status") and (limit is None or limit <= 0):
            ctrs = [c for c in ctrs if c.running]
        if "status" in filters:
            ctrs = [c for c in ctrs if c.state.status in filters["status"]]
        if "name" in filters:
            ctrs = [c for c in ctrs if any(re.search(p, c.name) for p in filters["name"])]
        if "id" in filters:
            ctrs = [c for c in ctrs if any(c.id.startswith(p) for p in filters["id"])]
        if "label" in filters:
            ctrs = [c for c in ctrs if all(_has_label(c.labels, w) for w in filters["label"])]
        if "exited" in filters:
            ctrs = [c for c in ctrs if c.state.status == "exited" and str(c.state.exit_code) in filters["exited"]]
        if "ancestor" in filters:
            wanted = set()
            for a in filters["ancestor"]:
                with contextlib.suppress(NotFound, InvalidParameter):
                    wanted.add(self.life.images.resolve(a))
            ctrs = [c for c in ctrs if c.image_id in wanted]
        if "network" in filters:
            ctrs = [c for c in ctrs if self.life.networks.on_network(
                c.id, c.host_config.get("NetworkMode") or "", filters["network"])]
        if "volume" in filters:
            want = filters["volume"]
            ctrs = [c for c in ctrs if any(n in want or d in want for n, d, _ in self.registry.volumes_of(c.id))
                    or any((m.get("Source") in want or m.get("Target") in want)
                           for m in c.host_config.get("Mounts") or [])
                    or any(b.split(":")[0] in want or (b.split(":") + [""])[1] in want
                           for b in c.host_config.get("Binds") or [])]
        for key in ("before", "since"):
            for value in filters.get(key, []):
                pivot = self.registry.get(value)
                ctrs = [c for c in ctrs if (c.created < pivot.created if key == "before" else c.created > pivot.created)]
        if limit is not None and limit > 0:
            ctrs = ctrs[:limit]
        return [summary(self.life, c) for c in ctrs]

    def container_inspect(self, name: str) -> dict[str, Any]:
        ctr = self.registry.get(name)
        vols = [(n, d, ro, self.life.volumes.get(n).mountpoint) for n, d, ro in self.registry.volumes_of(ctr.id)]
        return views.inspect(ctr, self.registry.layout, self.life.lowers_of(ctr.image_id), vols,
                             self.life.networks.settings(ctr))

    async def container_pause(self, name: str) -> None:
        ctr = self.registry.get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        if ctr.state.paused:
            raise Conflict(f"Container {ctr.id} is already paused")
        await asyncio.to_thread(self.runtimes[ctr.runtime].pause, ctr.id)
        transitions.paused(ctr.state)
        self.registry.save_state(ctr)
        self.registry.event("pause", ctr)

    async def container_unpause(self, name: str) -> None:
        ctr = self.registry.get(name)
        if not ctr.state.paused:
            raise Conflict(f"Container {ctr.id} is not paused")
        await asyncio.to_thread(self.runtimes[ctr.runtime].resume, ctr.id)
        transitions.unpaused(ctr.state)
        self.registry.save_state(ctr)
        self.registry.event("unpause", ctr)

    def container_rename(self, name: str, new_name: str) -> None:
        ctr = self.registry.get(name)
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        self.registry.rows.rename(ctr.id, names.check(new_name))
        self.registry.event("rename", self.registry.get(ctr.id), oldName="/" + ctr.name)

    def container_top(self, name: str, ps_args: str) -> dict[str, Any]:
        ctr = self.registry.get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        return stats.top(ctr.id, ps_args)

    async def container_update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ctr = self.registry.get(name)
        changes = {k: v for k, v in body.items() if k in UPDATABLE and v not in (None, 0, "") or k == "RestartPolicy"
                   and v}
        unknown = [k for k, v in body.items() if k not in UPDATABLE and v not in (None, 0, "", [], {})]
        if unknown:
            raise NotSupported(f"updating {', '.join(sorted(unknown))} is not supported by berth yet")
        hc = {**ctr.host_config, **changes}
        check_host_config(hc)
        res = cmounts.resources(hc, memsw=self.life.memsw)
        if ctr.running and res:
            path = os.path.join(self.registry.layout.paths(ctr.id).run_dir, "update.json")
            with open(path, "w") as f:
                json.dump(res, f)
            await asyncio.to_thread(self.runtimes[ctr.runtime].update, ctr.id, path)
        self.registry.rows.set_host_config(ctr.id, hc)
        self.registry.event("update", ctr)
        return {"Warnings": []}

    async def container_stats(self, name: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        """One sample (with the previous one a second earlier, unless ``one_shot``), or one a second."""
        ctr = self.registry.get(name)
        if not ctr.running:
            yield stats.empty(ctr.id, ctr.name)
            return
        pid = 0 if (ctr.host_config.get("NetworkMode") or "") == "host" else ctr.state.pid  # whose netns is read
        pre = stats.sample(ctr.id, ctr.name, self.life.cgroup_v2, pid)
        if not stream and not one_shot:
            await asyncio.sleep(1)  # as dockerd: precpu_stats from a second before, for CPU percentages
        elif one_shot:
            cur = pre
            cur["precpu_stats"], cur["preread"] = {"cpu_usage": {"total_usage": 0}}, "0001-01-01T00:00:00Z"
            yield cur
            return
        while True:
            cur = stats.sample(ctr.id, ctr.name, self.life.cgroup_v2, pid)
            cur["precpu_stats"], cur["preread"] = pre["cpu_stats"], pre["read"]
            yield cur
            if not stream or not self.registry.is_running(ctr.id):
                return
            pre = cur
            await asyncio.sleep(1)

    def container_resize(self, name: str, height: int, width: int) -> None:
        """Resize the container's terminal: conmon's ctl FIFO takes "1 HEIGHT WIDTH"."""
        ctr = self.registry.get(name)
        if not ctr.running:
            raise Conflict(f"Container {ctr.id} is not running")
        if not ctr.config.get("Tty"):
            return
        fd = os.open(os.path.join(self.registry.layout.paths(ctr.id).bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"1 {height} {width}\n".encode())
        finally:
            os.close(fd)

    async def container_stdin(self, name: str, source: Any) -> None:
        """Copy the hijacked stream's bytes to the container's stdin until the client half-closes,
        then close the container's stdin (conmon does on our half-close)."""
        sock = await self.life.stdin_socket(name)
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        try:
            while data := await source.read(8192):  # one SEQPACKET message at most: conmon reads 8 KiB
                for i in range(0, len(data), 8192):
                    await loop.sock_sendall(sock, data[i:i + 8192])
            sock.shutdown(socket.SHUT_WR)
            await asyncio.sleep(0)
        except OSError:
            pass
        finally:
            sock.close()

    async def containers_prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        deleted = []
        reclaimed = 0
        until = float(filters["until"][-1]) if filters.get("until") else None
        for c in self.registry.all():
            if until is not None and views.unix_time(c.created) >= until:
                continue
            if not all(_has_label(c.labels, lb) for lb in filters.get("label", [])):
                continue
            if any(_has_label(c.labels, lb) for lb in filters.get("label!", [])):
                continue
            if not c.running and not c.state.restarting:
                size = await asyncio.to_thread(safetree.tree_size, self.registry.layout.dir(c.id, "upper"))
                await self.life.remove(c.id, force=False, volumes=False)
                deleted.append(c.id)
                reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def container_output(self, name: str, *, stdout: bool, stderr: bool, since: float,
                               until: float | None, tail: int | None, follow: bool, timestamps: bool,
                               from_start: bool) -> AsyncIterator[bytes]:
        ctr = self.registry.get(name)
        tty = bool(ctr.config.get("Tty"))
        async for line in self.life.logs.output(ctr, stdout=stdout, stderr=stderr, since=since, until=until,
                                                tail=tail, follow=follow, from_start=from_start):
            if line is None:
                yield b""  # checked: the caller may answer now
                continue
            data = line.time.encode() + b" " + line.data if timestamps else line.data
            yield streams.encode(line.stream, data, tty)
