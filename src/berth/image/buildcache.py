"""Which images are build steps' (the build cache), when each was last used and how often: such an
image stays, untagged, through ``image prune``, until ``builder prune`` removes it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from berth.store.db import Database


@dataclass(frozen=True)
class Entry:
    image_id: str
    last_used: float
    usage: int


class BuildCache:
    def __init__(self, db: Database) -> None:
        self.db = db

    def mark(self, image_id: str) -> None:
        with self.db.transaction() as c:
            c.execute("INSERT INTO build_cache (image_id, last_used, usage) VALUES (?, ?, 1) "
                      "ON CONFLICT (image_id) DO UPDATE SET last_used = excluded.last_used, usage = usage + 1",
                      (image_id, time.time()))

    def ids(self) -> set[str]:
        with self.db.read() as c:
            return {r[0] for r in c.execute("SELECT image_id FROM build_cache")}

    def entries(self) -> list[Entry]:
        with self.db.read() as c:
            return [Entry(r[0], r[1], r[2]) for r in
                    c.execute("SELECT image_id, last_used, usage FROM build_cache ORDER BY last_used")]
