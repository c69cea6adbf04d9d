"""Healthchecks: a probe every Interval while the container runs, run through the runtime's exec;
the State's Health follows dockerd's rules (StartPeriod, Retries, the last five probes, 4 KiB of
output each)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from typing import Any

from berth.container.model import HEALTH_LOG_KEPT, Container, Health, now
from berth.container.registry import Registry
from berth.container.runtime import OCIRuntime
from berth.errors import NotFound

log = logging.getLogger("berth.containers")
HEALTH_OUTPUT_MAX = 4096  # bytes of a healthcheck's output kept in State.Health.Log (dockerd's maxOutputLen)
_NS = 1e-9


def record_probe(health: Health, entry: dict[str, Any], retries: int, in_start_period: bool) -> None:
    """One probe's result into ``health``: healthy at once on success; a failure counts once the
    start period is over (or the container was healthy before), unhealthy after ``retries``."""
    before = health.status
    health.log = health.log[-(HEALTH_LOG_KEPT - 1):] + [entry]
    if entry["ExitCode"] == 0:
        health.status, health.failing_streak = "healthy", 0
    elif not in_start_period or before != "starting":
        health.failing_streak += 1
        if health.failing_streak >= retries:
            health.status = "unhealthy"


class HealthChecks:
    def __init__(self, registry: Registry, runtimes: dict[str, OCIRuntime]) -> None:
        self.registry = registry
        self.runtimes = runtimes
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, ctr: Container) -> None:
        test = (ctr.config.get("Healthcheck") or {}).get("Test") or []
        if not test or test[0] == "NONE":
            return
        ctr = self.registry.get(ctr.id)
        ctr.state.health = Health()
        self.registry.save_state(ctr)
        self.stop(ctr.id)
        self._tasks[ctr.id] = asyncio.get_running_loop().create_task(self._loop(ctr.id))

    def stop(self, cid: str) -> None:
        task = self._tasks.pop(cid, None)
        if task is not None:
            task.cancel()

    async def _loop(self, cid: str) -> None:
        h = self.registry.get(cid).config["Healthcheck"]
        interval = (h.get("Interval") or 30_000_000_000) * _NS
        timeout = (h.get("Timeout") or 30_000_000_000) * _NS
        retries = h.get("Retries") or 3
        start_period = (h.get("StartPeriod") or 0) * _NS
        test = h["Test"]
        args = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
        started = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            begin = now()
            code, output = await self.probe(cid, args, timeout)
            try:
                ctr = self.registry.get(cid)
            except NotFound:
                return
            if not ctr.running:
                return
            health = ctr.state.health or Health()
            before = health.status
            record_probe(health, {"Start": begin, "End": now(), "ExitCode": code, "Output": output}, retries,
                         time.monotonic() - started < start_period)
            ctr.state.health = health
            self.registry.save_state(ctr)
            if health.status != before:
                self.registry.event(f"health_status: {health.status}", ctr)

    async def probe(self, cid: str, args: list[str], timeout: float) -> tuple[int, str]:
        """Run one healthcheck command in the container: (exit code, first 4 KiB of its output)."""
        ctr = self.registry.get(cid)
        p = self.registry.layout.paths(cid)
        with open(os.path.join(p.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        process.update(args=args, terminal=False)
        path = os.path.join(p.run_dir, f"health-{secrets.token_hex(4)}.json")
        with open(path, "w") as f:
            json.dump(process, f)
        proc = await asyncio.create_subprocess_exec(*self.runtimes[ctr.runtime].exec_argv(ctr.id, path),
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)

        async def collect() -> bytes:
            """The first 4 KiB of the output (as dockerd keeps); the rest is read and dropped, so a
            probe that prints without end costs no memory."""
            assert proc.stdout is not None
            kept = bytearray()
            while chunk := await proc.stdout.read(65536):
                if len(kept) < HEALTH_OUTPUT_MAX:
                    kept += chunk[:HEALTH_OUTPUT_MAX - len(kept)]
            await proc.wait()
            return bytes(kept)

        try:
            out = await asyncio.wait_for(collect(), timeout)
            code = proc.returncode if proc.returncode is not None else -1
            text = out.decode(errors="replace")
        except TimeoutError:
            proc.kill()
            await proc.wait()
            code, text = -1, f"Health check exceeded timeout ({timeout:g}s)"
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return code, text
