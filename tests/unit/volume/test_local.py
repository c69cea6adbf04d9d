"""The local volume driver on a real SQLite database and a directory under tmp."""

from __future__ import annotations

import os

import pytest

from berth.errors import Conflict, InvalidParameter, NotFound
from berth.store.containers import ContainerRow, ContainerRows
from berth.store.db import Database
from berth.volume.local import LocalVolumes


@pytest.fixture()
def db(tmp_path):  # type: ignore[no-untyped-def]
    d = Database(str(tmp_path / "berth.db"))
    yield d
    d.close()


def test_create_get_use_remove_and_sweep(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    vols = LocalVolumes(str(tmp_path / "volumes"), db)
    v, made = vols.create("data", labels={"a": "b"})
    assert made and os.path.isdir(v.mountpoint) and v.needs_copy and not v.anonymous
    assert vols.create("data") == (vols.get("data"), False)  # creating it again returns it, as dockerd
    anon, _ = vols.create()
    assert anon.anonymous and len(anon.name) == 64
    with pytest.raises(InvalidParameter):
        vols.create("../escape")
    with db.transaction() as c:
        c.execute("INSERT INTO images VALUES ('sha256:x', '', 0, 0, NULL)")
    ContainerRows(db).insert(ContainerRow("c" * 64, "user", "bb", "sha256:x", "", {}, {}, {}, "crun",
                                          volumes=[("data", "/d", False)]))
    with pytest.raises(Conflict, match=r"volume is in use - \[c{64}\]"):
        vols.remove("data")
    vols.copied("data")
    assert not vols.get("data").needs_copy
    vols.remove(anon.name)
    with pytest.raises(NotFound):
        vols.get(anon.name)
    os.makedirs(tmp_path / "volumes" / "stray" / "_data")
    assert vols.sweep() == ["volumes/stray"] and sorted(os.listdir(tmp_path / "volumes")) == ["data"]
