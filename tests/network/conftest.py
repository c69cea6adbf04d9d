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
    import subprocess

    for name in links() - before:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    left = links() - before
    assert not left, f"links left behind: {left}"
