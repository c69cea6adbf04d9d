"""The ``netenv`` fixture: what a network test makes on the host is removed afterwards, even when it
fails — its daemons (and their containers), berth's nft tables, every link that appeared meanwhile,
and whatever it registered with the ``cleanup`` it carries (namespaces, parents).

Every network test runs on one worker, one after another (``SHARED_WORKER`` in ``tests/conftest.py``):
berth's tables have fixed names (``ip berth``, ``ip6 berth``); the daemons of other test files run
with ``--bridge=none`` and write no table.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import retire
from tests.lib.cleanup import Cleanup
from tests.network.netenv import drop_tables, links


@pytest.fixture
def netenv(request: pytest.FixtureRequest, cleanup: Cleanup) -> Iterator[dict[str, object]]:
    before = links()
    env: dict[str, object] = {"cleanup": cleanup}
    cleanup.add("links made meanwhile", lambda: _remove_new_links(before))  # last: after the namespaces
    try:
        yield env
    finally:
        for d in env.get("daemons", []):  # type: ignore[attr-defined]
            retire(d, request)
        drop_tables()


def _remove_new_links(before: set[str]) -> None:
    """The links that appeared during the test, except those of tests running beside it (the machine
    tests' hosts, whose veths live as long as their module: deleting them cut those hosts off)."""
    import subprocess

    from tests.lib.machinehost import LINK_PREFIX

    def made() -> set[str]:
        return {n for n in links() - before if not n.startswith(LINK_PREFIX)}

    for name in made():
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    left = made()
    assert not left, f"links left behind: {left}"
