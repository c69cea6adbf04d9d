"""Exits and what follows them: the restart policy with its back-off, the release of what a stopped
container held, reconciliation after berthd was down, and log rotation.

conmon writes ``<exit dir>/<id>`` when a container ends; an inotify watch on that directory calls
``exited``, which waits for conmon to drain the output, records the code, wakes the waiters, releases
the runtime container, the rootfs mount and the network, emits "die", and then removes a ``--rm``
container or schedules a restart. ``reconcile_exits`` does the same at start for containers that
ended while berthd was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable

from berth.container import logdrivers
from berth.container import logs as clogs
from berth.container import state as transitions
from berth.container.health import HealthChecks
from berth.container.model import Container, now
from berth.container.networking import Networking
from berth.container.registry import Registry
from berth.container.rootfs import Rootfs
from berth.container.runtime import OCIRuntime, pid_alive, read_exit_code, wait_pid_gone
from berth.errors import BerthError, System
from berth.linux.inotify import DirWatch
from berth.linux.mount import is_mounted, umount

log = logging.getLogger("berth.containers")
REMOVED_EXITS_KEPT = 256  # exit codes of --rm containers kept for a late wait
REMOVED_EXITS_FOR = 10.0  # seconds
RESTART_FIRST_DELAY = 0.1  # seconds; doubled with each restart
RESTART_MAX_DELAY = 60.0
CONMON_DRAIN_WAIT = 5.0  # seconds an exit waits for conmon to have written the last output


def restart_delay(count: int) -> float:
    """The back-off before restart number ``count + 1``: 100 ms, doubling, at most a minute (dockerd's)."""
    return min(RESTART_FIRST_DELAY * (2 ** count), RESTART_MAX_DELAY)


def should_restart(ctr: Container, code: int) -> bool:
    """Whether the restart policy brings the container back after it exited with ``code``."""
    name, limit = ctr.restart_policy
    if ctr.manually_stopped or name == "no" or ctr.auto_remove:
        return False
    if name == "on-failure":
        return code != 0 and (limit == 0 or ctr.restart_count < limit)
    return True


def read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


class Monitor:
    def __init__(self, registry: Registry, runtimes: dict[str, OCIRuntime], rootfs: Rootfs, networks: Networking,
                 health: HealthChecks, start: Callable[[str], Awaitable[None]],
                 remove: Callable[[str], Awaitable[None]], cgroup_v2: bool) -> None:
        """``start(id)``: start again, keeping the restart count; ``remove(id)``: ``rm -f`` of a ``--rm``
        container; ``cgroup_v2``: where the memory cgroup's OOM count is read."""
        self.registry = registry
        self.layout = registry.layout
        self.runtimes = runtimes
        self.rootfs = rootfs
        self.networks = networks
        self.health = health
        self._start = start
        self._remove = remove
        self._pending: dict[str, asyncio.TimerHandle] = {}  # restarts waiting for their back-off
        self._removed_exits: dict[str, tuple[str, int, float]] = {}  # --rm containers: ID → (name, code, when)
        self._watch: DirWatch | None = None
        self._rotator: asyncio.Task[None] | None = None
        self.cgroup_v2 = cgroup_v2

    def watch(self) -> None:
        loop = asyncio.get_running_loop()
        self._rotator = loop.create_task(self._rotate_logs())
        self._watch = DirWatch(self.layout.exit_dir)
        loop.add_reader(self._watch.fileno(), self._on_exit_files)

    def _on_exit_files(self) -> None:
        assert self._watch is not None
        for cid in self._watch.read():
            code = read_exit_code(self.layout.exit_dir, cid)
            if code is not None:
                asyncio.get_running_loop().create_task(self.exited(cid, code))

    # ---- exits -------------------------------------------------------------------------------------
    async def exited(self, cid: str, code: int, lost: bool = False) -> None:
        if self.registry.find(cid) is None:
            return
        async with self.registry.lock(cid):
            ctr = self.registry.get(cid)
            if not ctr.running:  # recorded already (or, for a lost one, restarted and stopped since)
                return
            # conmon exits once it has drained the container's output: wait for it, so that the
            # log is complete when anyone learns that the container stopped.
            conmon_pid = read_int(os.path.join(self.layout.paths(cid).run_dir, "conmon.pid"))
            if conmon_pid:
                await asyncio.to_thread(wait_pid_gone, conmon_pid, CONMON_DRAIN_WAIT)
            self.health.stop(cid)
            oom = await asyncio.to_thread(self._oom_killed, ctr)  # before the runtime deletes the cgroup
            restart = should_restart(ctr, code)
            transitions.exited(ctr.state, code, now(), oom=oom, restart=restart,
                               error="berthd lost track of this container" if lost else "")
            self.registry.save_state(ctr)
            self.registry.wake(cid, code, ("next-exit", "not-running"))  # clients learn of the exit now...
            self.registry.changed(cid).set()
            if not ctr.auto_remove:  # (--rm: the removal releases, after its "destroy")
                await asyncio.to_thread(self.release, ctr)  # ...and the runtime's leftovers go meanwhile
        self.registry.event("die", ctr, exitCode=str(code))
        if ctr.auto_remove:
            self._removed_exits[cid] = (ctr.name, code, time.monotonic())
            while len(self._removed_exits) > REMOVED_EXITS_KEPT:
                del self._removed_exits[next(iter(self._removed_exits))]
            await self._remove(cid)
        elif restart:
            again = self.registry.find(cid)
            if again is not None and again.state.restarting:
                self._schedule_restart(again)

    def removed_exit(self, name: str, condition: str) -> int | None:
        """The exit code of a ``--rm`` container that has just removed itself, for a wait that comes
        late (docker-py waits only after its log stream ended; dockerd's slower removal leaves that wait
        time to arrive); None when there is none."""
        now_ = time.monotonic()
        for cid, (cname, code, when) in self._removed_exits.items():
            if now_ - when < REMOVED_EXITS_FOR and condition in ("", "not-running", "removed") and (
                    name in (cid, cname, "/" + cname) or len(name) >= 12 and cid.startswith(name)):
                return code
        return None

    def _oom_killed(self, ctr: Container) -> bool:
        """Whether the kernel's OOM killer struck in the container's memory cgroup."""
        path = (f"/sys/fs/cgroup/berth/{ctr.id}/memory.events" if self.cgroup_v2
                else f"/sys/fs/cgroup/memory/berth/{ctr.id}/memory.oom_control")
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        except (OSError, ValueError):
            pass
        return False

    def holds_resources(self, ctr: Container) -> bool:
        """Whether a runtime container or the rootfs mount is still there (cheap checks, no subprocess)."""
        runtime = self.runtimes.get(ctr.runtime)
        return (runtime is not None and os.path.isdir(os.path.join(runtime.root, ctr.id))) or \
            is_mounted(self.layout.rootfs(ctr.id)) or self.networks.holds(ctr.id)

    def release(self, ctr: Container) -> None:
        """What a stopped container held: the runtime's container, the mounts, the network."""
        try:
            self.runtimes[ctr.runtime].delete(ctr.id, True)
        except System as exc:
            log.warning("%s", exc.message)
        self.rootfs.release(ctr)
        try:
            self.networks.teardown(ctr.id)
        except BerthError as exc:
            log.warning("releasing the network of %s: %s", ctr.short_id, exc.message)

    def remove_files(self, cid: str) -> None:
        """A removed container's directories and exit file."""
        shutil.rmtree(self.layout.paths(cid).bundle, ignore_errors=True)
        shutil.rmtree(self.layout.dir(cid), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.layout.exit_file(cid))

    def sweep(self) -> list[str]:
        """Remove what an interrupted create or remove left: runtime state, directories and exit files
        without a row."""
        known = self.registry.rows.ids()
        removed = []
        for runtime in self.runtimes.values():  # runtime state of containers whose row is gone
            if not os.path.isdir(runtime.root):
                continue
            for name in os.listdir(runtime.root):
                if len(name) == 64 and name not in known:
                    with contextlib.suppress(BerthError):
                        runtime.delete(name, True)
                    removed.append(f"{runtime.name} state of {name[:12]}")
        for base in (self.layout.root, self.layout.run_root):
            for name in os.listdir(base):
                if name in known:
                    continue
                for mounted in ("rootfs", "shm"):
                    umount(os.path.join(base, name, mounted), detach=True)
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
                removed.append(f"containers/{name}")
        for name in os.listdir(self.layout.exit_dir):
            if name not in known:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.layout.exit_dir, name))
        return removed

    # ---- the restart policy --------------------------------------------------------------------------
    def _schedule_restart(self, ctr: Container) -> None:
        delay = restart_delay(ctr.restart_count)
        transitions.restart_scheduled(ctr.state)
        ctr.restart_count += 1
        self.registry.save_state(ctr)

        def fire() -> None:
            self._pending.pop(ctr.id, None)
            asyncio.ensure_future(self._restart_now(ctr.id))

        self._pending[ctr.id] = asyncio.get_running_loop().call_later(delay, fire)

    async def _restart_now(self, cid: str) -> None:
        try:
            ctr = self.registry.get(cid)
            if not ctr.state.restarting:
                return
            await self._start(cid)  # "restarting" until it runs again
        except BerthError as exc:
            log.warning("restarting container %s failed: %s", cid[:12], exc.message)

    def cancel_restart(self, cid: str) -> bool:
        """Drop a restart waiting for its back-off; whether there was one."""
        pending = self._pending.pop(cid, None)
        if pending is not None:
            pending.cancel()
        return pending is not None

    def mark_manual_stop(self, cid: str) -> None:
        """stop or kill: the restart policy no longer applies (until the next start); a restart waiting
        for its back-off is cancelled (the container is read afresh: it may have exited meanwhile)."""
        ctr = self.registry.get(cid)
        ctr.manually_stopped = True
        if self.cancel_restart(ctr.id):
            transitions.restart_cancelled(ctr.state)
        self.registry.save_state(ctr)

    # ---- after berthd was down -----------------------------------------------------------------------
    async def reconcile_exits(self) -> None:
        """Containers that ended while berthd was down are marked exited; what an interrupted start left
        (runtime state, mount, network) goes."""
        for ctr in self.registry.all():
            if not ctr.running:
                continue
            code = read_exit_code(self.layout.exit_dir, ctr.id)
            conmon_pid = read_int(os.path.join(self.layout.paths(ctr.id).run_dir, "conmon.pid"))
            try:
                if code is not None:
                    await self.exited(ctr.id, code)
                elif not (conmon_pid and pid_alive(conmon_pid)):
                    await self.exited(ctr.id, 255, lost=True)
                else:
                    log.info("container %s (%s) is still running under conmon %d", ctr.short_id, ctr.name,
                             conmon_pid)
            except BerthError as exc:  # one container's trouble does not keep berthd from starting
                log.error("container %s: recording its exit failed: %s", ctr.short_id, exc.message)
        for ctr in self.registry.all():  # a start that berthd did not finish: what the runtime made goes
            if not ctr.running and await asyncio.to_thread(self.holds_resources, ctr):
                log.warning("container %s (%s): removing what an interrupted start left (runtime state, mount, "
                            "network)", ctr.short_id, ctr.name)
                await asyncio.to_thread(self.release, ctr)

    async def restart_after_reconcile(self) -> None:
        """Containers whose policy says they run ("always", or "unless-stopped" not stopped by hand)."""
        for ctr in self.registry.all():
            policy, _ = ctr.restart_policy
            if not ctr.running and (policy == "always" or policy == "unless-stopped" and not ctr.manually_stopped):
                log.info("restarting container %s (%s): restart policy %s", ctr.short_id, ctr.name, policy)
                try:
                    await self._start(ctr.id)
                except BerthError as exc:
                    log.warning("restarting container %s failed: %s", ctr.short_id, exc.message)

    # ---- log rotation --------------------------------------------------------------------------------
    async def _rotate_logs(self) -> None:
        """Once a second: rotate the logs of running containers that passed their max-size, and have
        conmon reopen its log file (its ctl FIFO message 2)."""
        while True:
            await asyncio.sleep(1)
            for ctr in self.registry.all():
                if not ctr.running:
                    continue
                lc = logdrivers.parse(ctr.host_config.get("LogConfig"))
                size, files = lc.file_limits()
                p = self.layout.paths(ctr.id)
                try:
                    if not size or os.path.getsize(p.log_path) < size:
                        continue
                    await asyncio.to_thread(clogs.rotate, p.log_path, files, lc.compress)
                    fd = os.open(os.path.join(p.bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        os.write(fd, b"2\n")
                    finally:
                        os.close(fd)
                except OSError as exc:
                    log.warning("rotating the log of %s: %s", ctr.short_id, exc)
