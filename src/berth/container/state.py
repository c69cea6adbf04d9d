"""Where a container's state changes: every transition, as data (in the manner of h11's ``_state.py``).

``TRANSITIONS[status][event]`` is the status an event leads to; an event that the table does not
allow from the current status is a bug in berth and raises ``InvalidTransition`` before anything
changes. The flags Docker shows beside the status (Running, Paused, Restarting) follow from it: a
paused container is still running, a restarting one is not. Each function below is one event with
the fields it sets; none does any I/O, so this module is tested without processes.
"""

from __future__ import annotations

import enum

from berth.container.model import ZERO_TIME, State
from berth.errors import System


class Event(enum.Enum):
    STARTED = "started"
    START_FAILED = "start failed"
    EXITED = "exited"
    EXITED_TO_RESTART = "exited, to be restarted"
    RESTART_SCHEDULED = "restart scheduled"
    RESTART_CANCELLED = "restart cancelled"
    PAUSED = "paused"
    UNPAUSED = "unpaused"


TRANSITIONS: dict[str, dict[Event, str]] = {
    "created": {Event.STARTED: "running", Event.START_FAILED: "created"},
    "exited": {Event.STARTED: "running", Event.START_FAILED: "exited"},
    "restarting": {Event.STARTED: "running", Event.START_FAILED: "exited", Event.RESTART_SCHEDULED: "restarting",
                   Event.RESTART_CANCELLED: "exited"},
    "running": {Event.EXITED: "exited", Event.EXITED_TO_RESTART: "restarting", Event.PAUSED: "paused"},
    "paused": {Event.EXITED: "exited", Event.EXITED_TO_RESTART: "restarting", Event.UNPAUSED: "running"},
}

# status → (Running, Paused, Restarting), as Docker shows them
FLAGS: dict[str, tuple[bool, bool, bool]] = {
    "created": (False, False, False), "exited": (False, False, False), "restarting": (False, False, True),
    "running": (True, False, False), "paused": (True, True, False),
}


class InvalidTransition(System):
    """A transition the table does not have: berth asked for something impossible (a bug)."""


def _move(st: State, event: Event) -> None:
    target = TRANSITIONS.get(st.status, {}).get(event)
    if target is None:
        raise InvalidTransition(f"container state: {event.value} is not possible from {st.status}")
    st.status = target
    st.running, st.paused, st.restarting = FLAGS[target]


def started(st: State, pid: int, at: str) -> None:
    _move(st, Event.STARTED)
    st.pid, st.exit_code, st.error, st.started_at, st.finished_at = pid, 0, "", at, ZERO_TIME
    st.oom_killed = st.dead = False


def start_failed(st: State, code: int, error: str) -> None:
    """As dockerd: the exit code (127 command not found, 126 cannot run, 128 otherwise) and the error
    are recorded; a container that was restarting is exited."""
    _move(st, Event.START_FAILED)
    st.exit_code, st.error = code, error


def exited(st: State, code: int, at: str, *, oom: bool, error: str = "", restart: bool = False) -> None:
    """The process ended (``error``: why berth could not see it end); ``restart``: the restart
    policy brings it back, so it is "restarting" from now on (``rm`` without ``-f`` refuses)."""
    _move(st, Event.EXITED_TO_RESTART if restart else Event.EXITED)
    st.pid, st.exit_code, st.oom_killed, st.finished_at, st.error = 0, code, oom, at, error


def restart_scheduled(st: State) -> None:
    _move(st, Event.RESTART_SCHEDULED)


def restart_cancelled(st: State) -> None:
    _move(st, Event.RESTART_CANCELLED)


def paused(st: State) -> None:
    _move(st, Event.PAUSED)


def unpaused(st: State) -> None:
    _move(st, Event.UNPAUSED)
