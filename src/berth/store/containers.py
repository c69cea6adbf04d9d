"""The ``containers`` and ``container_volumes`` tables: every SQL statement about containers.

Rows come and go as ``ContainerRow``: plain values and the JSON documents decoded, no behaviour. The
container package turns them into its typed model. A name that is taken is a ``Conflict`` here,
with dockerd's words, from SQLite's own constraint (never from the text of an error).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from berth.errors import Conflict, InvalidParameter
from berth.store.db import Database

_COLUMNS = ("id, name, image, image_id, created, config, host_config, state, runtime, restart_count, "
            "manually_stopped, idmap")


@dataclass
class ContainerRow:
    id: str
    name: str
    image: str  # as the client named it
    image_id: str
    created: str  # RFC 3339 with nanoseconds
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: dict[str, Any]  # Docker's State, as inspect shows it
    runtime: str
    restart_count: int = 0
    manually_stopped: bool = False
    idmap: tuple[int, int, int] | None = None  # userns-remap: (uid, gid, size) the container was made with
    volumes: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, destination, read-only): at insert


def _row(r: sqlite3.Row) -> ContainerRow:
    idmap = json.loads(r["idmap"]) if r["idmap"] else None
    return ContainerRow(r["id"], r["name"], r["image"], r["image_id"], r["created"], json.loads(r["config"]),
                        json.loads(r["host_config"]), json.loads(r["state"]), r["runtime"], int(r["restart_count"]),
                        bool(r["manually_stopped"]), tuple(idmap) if idmap else None)


def _is_hex(text: str) -> bool:
    return len(text) <= 64 and all(c in "0123456789abcdef" for c in text)


def name_conflict(name: str, holder: str) -> Conflict:
    return Conflict(f'Conflict. The container name "/{name}" is already in use by container "{holder}". You '
                    "have to remove (or rename) that container to be able to reuse that name.")


class ContainerRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def transaction(self) -> Any:
        """Several writes as one: the container's row with its network attachments, or none of them."""
        return self.db.transaction()

    def find(self, key: str) -> ContainerRow | None:
        """The container whose ID or name is ``key``, or whose ID starts with it (hex only: never a
        LIKE pattern); InvalidParameter when the prefix is ambiguous."""
        with self.db.read() as c:
            r = c.execute(f"SELECT {_COLUMNS} FROM containers WHERE id = ? OR name = ?", (key, key)).fetchone()
            if r is None and key and _is_hex(key):
                rows = c.execute(f"SELECT {_COLUMNS} FROM containers WHERE id LIKE ?", (key + "%",)).fetchall()
                if len(rows) > 1:
                    raise InvalidParameter(f"multiple IDs found with provided prefix: {key}")
                r = rows[0] if rows else None
        return _row(r) if r is not None else None

    def all(self) -> list[ContainerRow]:
        """Newest first."""
        with self.db.read() as c:
            return [_row(r) for r in c.execute(f"SELECT {_COLUMNS} FROM containers ORDER BY created DESC")]

    def exists(self, cid: str) -> bool:
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM containers WHERE id = ?", (cid,)).fetchone() is not None

    def ids(self) -> set[str]:
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT id FROM containers")}

    def names(self) -> set[str]:
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT name FROM containers")}

    def image_ids(self) -> set[str]:
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT DISTINCT image_id FROM containers")}

    def _holder(self, name: str) -> str:
        with self.db.read() as c:
            r = c.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
        return r[0] if r else ""

    def insert(self, row: ContainerRow) -> None:
        """The container and its volumes. Called inside the caller's transaction when other rows (its
        network attachments) must be written with it."""
        try:
            with self.db.transaction() as c:
                c.execute(f"INSERT INTO containers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (row.id, row.name, row.image, row.image_id, row.created, json.dumps(row.config),
                           json.dumps(row.host_config), json.dumps(row.state), row.runtime, row.restart_count,
                           int(row.manually_stopped), json.dumps(list(row.idmap)) if row.idmap else None))
                c.executemany("INSERT INTO container_volumes VALUES (?, ?, ?, ?)",
                              [(row.id, n, d, int(ro)) for n, d, ro in row.volumes])
        except sqlite3.IntegrityError:
            holder = self._holder(row.name)
            if holder:
                raise name_conflict(row.name, holder) from None
            raise

    def save_state(self, cid: str, state: dict[str, Any], restart_count: int, manually_stopped: bool) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE containers SET state = ?, restart_count = ?, manually_stopped = ? WHERE id = ?",
                      (json.dumps(state), restart_count, int(manually_stopped), cid))

    def set_host_config(self, cid: str, host_config: dict[str, Any]) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE containers SET host_config = ? WHERE id = ?", (json.dumps(host_config), cid))

    def rename(self, cid: str, name: str) -> None:
        try:
            with self.db.transaction() as c:
                c.execute("UPDATE containers SET name = ? WHERE id = ?", (name, cid))
        except sqlite3.IntegrityError:
            raise name_conflict(name, self._holder(name)) from None

    def delete(self, cid: str) -> None:
        """The row, and its volumes' (by cascade). Inside the caller's transaction when its network
        attachments go with it."""
        with self.db.transaction() as c:
            c.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def volumes_of(self, cid: str) -> list[tuple[str, str, bool]]:
        """(volume name, destination, read-only), by destination."""
        with self.db.read() as c:
            return [(r[0], r[1], bool(r[2])) for r in c.execute(
                "SELECT name, destination, read_only FROM container_volumes WHERE container_id = ? "
                "ORDER BY destination", (cid,))]
