"""A container's state machine, without processes: every transition of the table, the flags Docker
shows beside the status, the refusal of impossible ones, the restart policy and its back-off, the
healthcheck's rules."""

from __future__ import annotations

import pytest

from berth.container import state as t
from berth.container.health import record_probe
from berth.container.model import ZERO_TIME, Container, Health, State
from berth.container.monitor import restart_delay, should_restart

DO = {
    t.Event.STARTED: lambda st: t.started(st, 42, "2026-11-30T00:00:00Z"),
    t.Event.START_FAILED: lambda st: t.start_failed(st, 127, "not found"),
    t.Event.EXITED: lambda st: t.exited(st, 3, "2026-11-30T00:00:01Z", oom=False),
    t.Event.EXITED_TO_RESTART: lambda st: t.exited(st, 3, "2026-11-30T00:00:01Z", oom=False, restart=True),
    t.Event.RESTART_SCHEDULED: t.restart_scheduled,
    t.Event.RESTART_CANCELLED: t.restart_cancelled,
    t.Event.PAUSED: t.paused,
    t.Event.UNPAUSED: t.unpaused,
}


@pytest.mark.parametrize("status", sorted(t.TRANSITIONS))
@pytest.mark.parametrize("event", list(t.Event), ids=lambda e: e.name)
def test_every_event_from_every_status_follows_the_table(status: str, event: t.Event) -> None:
    st = State(status=status)
    st.running, st.paused, st.restarting = t.FLAGS[status]
    target = t.TRANSITIONS[status].get(event)
    if target is None:
        before = st.view()
        with pytest.raises(t.InvalidTransition):
            DO[event](st)
        assert st.view() == before  # refused before anything changed
        return
    DO[event](st)
    assert st.status == target
    assert (st.running, st.paused, st.restarting) == t.FLAGS[target]


def test_a_start_clears_the_last_run_and_an_exit_records_it() -> None:
    st = State(status="exited", exit_code=1, error="boom", oom_killed=True, finished_at="2026-01-01T00:00:00Z")
    t.started(st, 7, "2026-11-30T10:00:00Z")
    assert (st.pid, st.exit_code, st.error, st.oom_killed, st.finished_at) == (7, 0, "", False, ZERO_TIME)
    t.exited(st, 137, "2026-11-30T10:00:05Z", oom=True, error="berthd lost track of this container")
    v = st.view()
    assert (v["Status"], v["Running"], v["Pid"], v["ExitCode"], v["OOMKilled"], v["FinishedAt"], v["StartedAt"]) == (
        "exited", False, 0, 137, True, "2026-11-30T10:00:05Z", "2026-11-30T10:00:00Z")


def test_a_failed_start_keeps_a_created_container_created_and_ends_a_restart() -> None:
    st = State()
    t.start_failed(st, 127, "exec: not found")
    assert (st.status, st.exit_code, st.error) == ("created", 127, "exec: not found")
    st = State(status="restarting", restarting=True)
    t.start_failed(st, 128, "no")
    assert (st.status, st.restarting) == ("exited", False)


def test_the_state_view_is_dockers_and_has_no_private_keys() -> None:
    st = State(health=Health("healthy", 0, [{"ExitCode": 0}]))
    view = st.view()
    assert list(view) == ["Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
                          "Error", "StartedAt", "FinishedAt", "Health"]
    assert not [k for k in view if k.startswith("_")]
    assert State.from_view(view) == st


def _ctr(policy: str, retries: int = 0, count: int = 0, stopped: bool = False, rm: bool = False) -> Container:
    hc = {"RestartPolicy": {"Name": policy, "MaximumRetryCount": retries}, "AutoRemove": rm}
    return Container("c" * 64, "c", "busybox", "sha256:x", "", {}, hc, State(), "crun", count, stopped)


@pytest.mark.parametrize(("ctr", "code", "restarts"), [
    (_ctr("no"), 1, False), (_ctr("always"), 0, True), (_ctr("always", stopped=True), 0, False),
    (_ctr("unless-stopped"), 0, True), (_ctr("unless-stopped", stopped=True), 1, False),
    (_ctr("on-failure"), 0, False), (_ctr("on-failure"), 1, True),
    (_ctr("on-failure", retries=2, count=1), 1, True), (_ctr("on-failure", retries=2, count=2), 1, False),
    (_ctr("always", rm=True), 1, False),
])
def test_the_restart_policy(ctr: Container, code: int, restarts: bool) -> None:
    assert should_restart(ctr, code) is restarts


def test_the_restart_back_off_doubles_from_100_ms_up_to_a_minute() -> None:
    assert [restart_delay(n) for n in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert restart_delay(9) == 51.2 and restart_delay(10) == 60.0 and restart_delay(40) == 60.0


def test_health_counts_failures_after_the_start_period_and_keeps_five_probes() -> None:
    h = Health()
    record_probe(h, {"ExitCode": 1}, retries=2, in_start_period=True)
    assert (h.status, h.failing_streak) == ("starting", 0)  # a failure in the start period does not count
    record_probe(h, {"ExitCode": 1}, retries=2, in_start_period=False)
    record_probe(h, {"ExitCode": 1}, retries=2, in_start_period=False)
    assert (h.status, h.failing_streak) == ("unhealthy", 2)
    record_probe(h, {"ExitCode": 0}, retries=2, in_start_period=False)
    assert (h.status, h.failing_streak) == ("healthy", 0)
    record_probe(h, {"ExitCode": 1}, retries=2, in_start_period=True)  # once healthy, the start period is over
    assert h.failing_streak == 1 and len(h.log) == 5
    for _ in range(3):
        record_probe(h, {"ExitCode": 0}, retries=2, in_start_period=False)
    assert len(h.log) == 5
