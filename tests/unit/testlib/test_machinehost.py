"""The test host's ``destroy`` with real mount namespaces: it kills the host's processes and nobody
else's, even when another namespace is made after the host's last process died. The kernel hands a
freed namespace's number to the next one at once; a scan by number then killed a container that
another test worker's crun was creating ("read from the init process")."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.lib.machinehost import TestHost, destroy, hold_mntns
from tests.lib.wait import until


def _in_own_mntns(procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "60"])
    procs.append(proc)
    mine = os.readlink("/proc/self/ns/mnt")
    until(lambda: os.readlink(f"/proc/{proc.pid}/ns/mnt") != mine, "unshare made its mount namespace")
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's processes, killed at its end."""
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare --mount)")
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_destroy_kills_every_process_of_the_hosts_mount_namespace(procs: list[subprocess.Popen[bytes]]) -> None:
    first = _in_own_mntns(procs)
    host = TestHost("t", "", "", "", "", "", first.pid, *hold_mntns(first.pid))
    second = subprocess.Popen(["nsenter", f"--mount=/proc/{first.pid}/ns/mnt", "sleep", "60"])
    procs.append(second)
    until(lambda: os.readlink(f"/proc/{second.pid}/ns/mnt") == host.mntns, "nsenter joined the host")
    destroy(host)
    assert first.wait(timeout=10) == -9 and second.wait(timeout=10) == -9
    assert host.mntns_fd == -1


def test_destroy_spares_a_namespace_made_after_the_hosts_last_process_died(procs: list[subprocess.Popen[bytes]]) -> None:
    gone = _in_own_mntns(procs)
    host = TestHost("t", "", "", "", "", "", gone.pid, *hold_mntns(gone.pid))
    gone.kill()
    gone.wait()
    victim = _in_own_mntns(procs)  # made now, it gets the host's number unless that is still held
    destroy(host)
    assert victim.poll() is None, "destroy killed a process of another mount namespace"
    destroy(host)  # a second call: nothing held, nothing done
    assert victim.poll() is None
