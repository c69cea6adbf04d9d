"""The containers repository on a real SQLite database under tmp: rows in and out, names that are
taken, ID prefixes, savepoints inside a transaction, and the migration of older databases."""

from __future__ import annotations

import json
import sqlite3

import pytest

from berth.errors import Conflict, InvalidParameter
from berth.store import db as dbmod
from berth.store.containers import ContainerRow, ContainerRows
from berth.store.db import Database


def _image(db: Database, image_id: str = "sha256:" + "a" * 64) -> str:
    with db.transaction() as c:
        c.execute("INSERT INTO images VALUES (?, '2026-01-01T00:00:00Z', 0, 0, NULL)", (image_id,))
    return image_id


def _row(cid: str, name: str, image_id: str, **kw: object) -> ContainerRow:
    return ContainerRow(cid, name, "busybox", image_id, "2026-11-30T00:00:00.000000000Z", {"Cmd": ["true"]},
                        {"NetworkMode": "none"}, {"Status": "created"}, "crun", **kw)  # type: ignore[arg-type]


@pytest.fixture()
def db(tmp_path):  # type: ignore[no-untyped-def]
    d = Database(str(tmp_path / "berth.db"))
    yield d
    d.close()


def test_a_row_comes_back_as_it_went_in(db: Database) -> None:
    rows = ContainerRows(db)
    image = _image(db)
    cid = "ab" * 32
    with db.transaction() as c:
        c.execute("INSERT INTO volumes VALUES ('v1', 'local', '2026-01-01T00:00:00Z', '{}', '{}', 0, 1)")
    rows.insert(_row(cid, "web", image, restart_count=3, manually_stopped=True, idmap=(100000, 100000, 65536),
                     volumes=[("v1", "/data", True)]))
    got = rows.find("web")
    assert got is not None
    assert (got.id, got.restart_count, got.manually_stopped, got.idmap) == (cid, 3, True, (100000, 100000, 65536))
    assert got.state == {"Status": "created"} and got.config == {"Cmd": ["true"]}
    assert rows.volumes_of(cid) == [("v1", "/data", True)]
    rows.save_state(cid, {"Status": "exited", "ExitCode": 2}, 4, False)
    again = rows.find(cid[:5])
    assert again is not None and again.state["ExitCode"] == 2 and again.restart_count == 4
    rows.delete(cid)
    assert rows.find(cid) is None and rows.volumes_of(cid) == []  # the volumes' rows go by cascade


def test_a_name_taken_is_a_conflict_with_dockerds_words_and_nothing_is_written(db: Database) -> None:
    rows = ContainerRows(db)
    image = _image(db)
    rows.insert(_row("1" * 64, "web", image))
    with db.transaction() as c:
        c.execute("INSERT INTO volumes VALUES ('v', 'local', '2026-01-01T00:00:00Z', '{}', '{}', 0, 1)")
    with pytest.raises(Conflict) as exc:
        rows.insert(_row("2" * 64, "web", image, volumes=[("v", "/v", False)]))
    assert exc.value.message.startswith('Conflict. The container name "/web" is already in use by container "' + "1" * 64)
    assert rows.find("2" * 64) is None and rows.volumes_of("2" * 64) == []
    rows.insert(_row("3" * 64, "db", image))
    with pytest.raises(Conflict, match='"/db" is already in use by container "3333'):
        rows.rename("1" * 64, "db")
    assert rows.names() == {"web", "db"}


def test_an_ambiguous_id_prefix_is_refused_and_a_pattern_is_never_one(db: Database) -> None:
    rows = ContainerRows(db)
    image = _image(db)
    rows.insert(_row("ab" + "1" * 62, "one", image))
    rows.insert(_row("ab" + "2" * 62, "two", image))
    with pytest.raises(InvalidParameter, match="multiple IDs"):
        rows.find("ab")
    assert rows.find("a%") is None and rows.find("_b") is None


def test_a_transaction_inside_another_is_a_savepoint(db: Database) -> None:
    rows = ContainerRows(db)
    image = _image(db)
    with pytest.raises(RuntimeError):
        with db.transaction():
            rows.insert(_row("4" * 64, "inner", image))  # its own transaction: a savepoint of the outer one
            assert rows.find("inner") is not None
            raise RuntimeError("the outer transaction fails after the inner one succeeded")
    assert rows.find("inner") is None  # both rolled back
    with db.transaction():
        rows.insert(_row("5" * 64, "first", image))
        with pytest.raises(Conflict):
            with db.transaction():  # rolled back to its savepoint, whole: "second" goes with the failed insert
                rows.insert(_row("6" * 64, "second", image))
                rows.insert(_row("7" * 64, "first", image))
        rows.insert(_row("8" * 64, "third", image))  # the outer transaction goes on
    assert [rows.find(n) is not None for n in ("first", "second", "third")] == [True, False, True]


def test_an_older_database_keeps_its_containers_with_berths_keys_out_of_the_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for n, sql in enumerate(dbmod.MIGRATIONS[:4], start=1):  # a database as berth left it before migration 5
        for stmt in filter(None, (s.strip() for s in sql.split(";"))):
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {n}")
    image = "sha256:" + "b" * 64
    conn.execute("INSERT INTO images VALUES (?, '2026-01-01T00:00:00Z', 0, 0, NULL)", (image,))
    state = {"Status": "exited", "ExitCode": 1, "_RestartCount": 5, "_ManuallyStopped": True,
             "_IDMap": [100000, 100000, 65536]}
    conn.execute("INSERT INTO containers VALUES (?, 'old', 'busybox', ?, '2026-01-01T00:00:00Z', '{}', '{}', ?, 'crun')",
                 ("c" * 64, image, json.dumps(state)))
    conn.execute("INSERT INTO containers VALUES (?, 'plain', 'busybox', ?, '2026-01-02T00:00:00Z', '{}', '{}', ?, "
                 "'crun')", ("d" * 64, image, json.dumps({"Status": "created"})))
    conn.close()
    db = Database(path)
    try:
        rows = ContainerRows(db)
        old, plain = rows.find("old"), rows.find("plain")
        assert old is not None and plain is not None
        assert old.state == {"Status": "exited", "ExitCode": 1}
        assert (old.restart_count, old.manually_stopped, old.idmap) == (5, True, (100000, 100000, 65536))
        assert (plain.restart_count, plain.manually_stopped, plain.idmap) == (0, False, None)
    finally:
        db.close()
