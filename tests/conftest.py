"""Session guards and isolation: every test gets its own HOME and DOCKER_CONFIG, so neither the
docker CLI nor berth reads or writes the real user's contexts and certificates."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lib import rawhttp
from tests.lib.cleanup import Cleanup
from tests.lib.daemon import Berthd
from tests.lib.images import busybox_rootfs_tar


def pytest_configure(config: pytest.Config) -> None:
    # Tests run the real thing: sockets owned by other users, sshd, groups. That needs root.
    if os.geteuid() != 0:
        config.issue_config_time_warning(pytest.PytestWarning("not root: tests marked needs_root will skip"), 2)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT", "DOCKER_API_VERSION",
                "DOCKER_TLS"):
        monkeypatch.delenv(var, raising=False)
    yield str(home)


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    c = Cleanup()
    try:
        yield c
    finally:
        c.run()


@pytest.fixture
def berthd(request: pytest.FixtureRequest) -> Iterator[Berthd]:
    """A running berthd on a private socket and data root, stopped and removed afterwards."""
    d = Berthd()
    try:
        d.start()
        yield d
    finally:
        retire(d, request)


@pytest.fixture
def bb(berthd: Berthd) -> Berthd:
    """``berthd`` with the image "bb" (Debian's busybox-static as a rootfs)."""
    r = rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest", body=busybox_rootfs_tar())
    assert r.status == 200, r.body
    return berthd


def retire(d: Berthd, request: pytest.FixtureRequest) -> None:
    """A test's daemon goes, its containers first; its log is printed when the test failed."""
    d.remove_containers()
    d.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n----- berthd log ({d.log_path}) -----\n{d.log()}")
    d.cleanup()


@pytest.fixture
def make_berthd(request: pytest.FixtureRequest) -> Iterator[type[Berthd]]:
    """A factory for daemons with custom flags/config; each one is stopped and removed afterwards."""
    made: list[Berthd] = []

    class Tracked(Berthd):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            made.append(self)

    try:
        yield Tracked
    finally:
        for d in made:
            retire(d, request)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


# Paths whose tests share one worker and run one after another, as one file's do: the network tests
# make berth's nft tables, whose names are fixed (``ip berth``, ``ip6 berth``); the sshd tests need
# sshd's privilege-separation directory /run/sshd, which each one makes and removes again.
SHARED_WORKER = {"tests/network/": "nft", "tests/system/test_ssh.py": "sshd", "tests/cli/test_machine.py": "sshd"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the groups of ``SHARED_WORKER`` spanning files. (xdist's own
    ``loadgroup`` marks items by rewriting their node IDs, which pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((group for prefix, group in SHARED_WORKER.items() if path.startswith(prefix)), path)

    return Scheduling(config, log)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """crun makes a shared parent cgroup "berth" in each hierarchy: remove it once it is empty (rmdir
    fails harmlessly while another test worker still has containers in it)."""
    root = "/sys/fs/cgroup"
    if not os.path.isdir(root):
        return
    for ctrl in os.listdir(root):
        for path in (os.path.join(root, ctrl, "berth"), os.path.join(root, "berth")):
            try:
                os.rmdir(path)
            except OSError:
                pass
