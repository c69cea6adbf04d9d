"""The ``volumes`` table (and who uses a volume: ``container_volumes``): every SQL statement about
volumes. A name that is taken is a ``Conflict`` here, from SQLite's own constraint."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from berth.errors import Conflict
from berth.store.db import Database


@dataclass(frozen=True)
class VolumeRow:
    name: str
    driver: str
    created: str
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    needs_copy: bool  # until the first container copied the image's content in


def _row(r: sqlite3.Row) -> VolumeRow:
    return VolumeRow(r["name"], r["driver"], r["created"], json.loads(r["labels"]), json.loads(r["options"]),
                     bool(r["anonymous"]), bool(r["needs_copy"]))


class VolumeRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def find(self, name: str) -> VolumeRow | None:
        with self.db.read() as c:
            r = c.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return _row(r) if r is not None else None

    def all(self) -> list[VolumeRow]:
        with self.db.read() as c:
            return [_row(r) for r in c.execute("SELECT * FROM volumes ORDER BY created")]

    def users(self, name: str) -> list[str]:
        """IDs of the containers that use the volume."""
        with self.db.read() as c:
            return [r[0] for r in c.execute("SELECT DISTINCT container_id FROM container_volumes WHERE name = ?",
                                            (name,))]

    def insert(self, row: VolumeRow) -> None:
        try:
            with self.db.transaction() as c:
                c.execute("INSERT INTO volumes VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (row.name, row.driver, row.created, json.dumps(row.labels), json.dumps(row.options),
                           int(row.anonymous), int(row.needs_copy)))
        except sqlite3.IntegrityError:
            raise Conflict(f"volume {row.name} already exists") from None

    def delete(self, name: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def copied(self, name: str) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE volumes SET needs_copy = 0 WHERE name = ?", (name,))
