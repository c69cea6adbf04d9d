"""A container as berth holds it: its configuration as the client and the image gave it, and a typed
State. Docker's State document is what ``State.view()`` makes; what berth keeps besides it (the
restart count, a manual stop, the userns-remap ids) are fields of the container, not keys hidden in
that document."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from berth.linux.idmap import IDMap
from berth.store.containers import ContainerRow

ZERO_TIME = "0001-01-01T00:00:00Z"
HEALTH_LOG_KEPT = 5  # probes shown in State.Health.Log, as dockerd keeps


def now() -> str:
    """The time as Docker writes it (RFC 3339, nanoseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class Health:
    status: str = "starting"  # starting | healthy | unhealthy
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # {Start, End, ExitCode, Output}

    def view(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": list(self.log)}

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> Health:
        return cls(str(v.get("Status") or "starting"), int(v.get("FailingStreak") or 0), list(v.get("Log") or []))


@dataclass
class State:
    """Docker's container State. ``status`` changes only through ``container.state`` transitions."""

    status: str = "created"  # created | running | paused | restarting | exited
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    health: Health | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Status": self.status, "Running": self.running, "Paused": self.paused, "Restarting": self.restarting,
            "OOMKilled": self.oom_killed, "Dead": self.dead, "Pid": self.pid, "ExitCode": self.exit_code,
            "Error": self.error, "StartedAt": self.started_at, "FinishedAt": self.finished_at}
        if self.health is not None:
            out["Health"] = self.health.view()
        return out

    @classmethod
    def from_view(cls, v: dict[str, Any]) -> State:
        health = v.get("Health")
        return cls(str(v.get("Status") or "created"), bool(v.get("Running")), bool(v.get("Paused")),
                   bool(v.get("Restarting")), bool(v.get("OOMKilled")), bool(v.get("Dead")), int(v.get("Pid") or 0),
                   int(v.get("ExitCode") or 0), str(v.get("Error") or ""), str(v.get("StartedAt") or ZERO_TIME),
                   str(v.get("FinishedAt") or ZERO_TIME), Health.from_view(health) if health else None)


@dataclass
class Container:
    id: str
    name: str  # without the leading slash
    image: str  # as the client named it
    image_id: str
    created: str
    config: dict[str, Any]  # Config, the image's defaults applied
    host_config: dict[str, Any]
    state: State
    runtime: str
    restart_count: int = 0
    manually_stopped: bool = False  # stop, kill or a cancelled restart: "unless-stopped" stays down
    idmap: IDMap | None = None  # userns-remap: the ids its root maps to

    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    @property
    def command(self) -> list[str]:
        return [*(self.config.get("Entrypoint") or []), *(self.config.get("Cmd") or [])]

    @property
    def restart_policy(self) -> tuple[str, int]:
        """(name, maximum retry count)."""
        policy = self.host_config.get("RestartPolicy") or {}
        return policy.get("Name") or "no", int(policy.get("MaximumRetryCount") or 0)

    @property
    def auto_remove(self) -> bool:
        return bool(self.host_config.get("AutoRemove"))

    @classmethod
    def from_row(cls, r: ContainerRow) -> Container:
        return cls(r.id, r.name, r.image, r.image_id, r.created, r.config, r.host_config, State.from_view(r.state),
                   r.runtime, r.restart_count, r.manually_stopped, IDMap(*r.idmap) if r.idmap else None)

    def row(self, volumes: list[tuple[str, str, bool]] | None = None) -> ContainerRow:
        idmap = (self.idmap.uid, self.idmap.gid, self.idmap.size) if self.idmap else None
        return ContainerRow(self.id, self.name, self.image, self.image_id, self.created, self.config,
                            self.host_config, self.state.view(), self.runtime, self.restart_count,
                            self.manually_stopped, idmap, list(volumes or []))
