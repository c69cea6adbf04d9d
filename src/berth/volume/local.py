"""The local volume driver: ``<data-root>/volumes/<name>/_data``, metadata in SQLite (``store/volumes.py``).

A volume is registered only once its directory exists; removing one deletes the row first, then the
directory (a crash leaves at worst an unreferenced directory, which ``sweep`` removes at start).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from typing import Any

from berth.errors import Conflict, InvalidParameter, NotFound, NotSupported
from berth.linux.safetree import tree_size
from berth.store.db import Database
from berth.store.volumes import VolumeRow, VolumeRows

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")


@dataclass(frozen=True)
class Volume(VolumeRow):
    """A volume: its row, and where its files are on the host."""

    mountpoint: str = ""

    def view(self) -> dict[str, Any]:
        return {"Name": self.name, "Driver": self.driver, "Mountpoint": self.mountpoint, "CreatedAt": self.created,
                "Labels": self.labels or None, "Scope": "local", "Options": self.options or None}


class LocalVolumes:
    def __init__(self, root: str, db: Database) -> None:
        self.root = root
        self.rows = VolumeRows(db)
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)  # only root reaches a volume's files (a container may plant setuid ones)

    def _volume(self, r: VolumeRow) -> Volume:
        return Volume(**dataclasses.asdict(r), mountpoint=os.path.join(self.root, r.name, "_data"))

    def get(self, name: str) -> Volume:
        r = self.rows.find(name)
        if r is None:
            raise NotFound(f"get {name}: no such volume")
        return self._volume(r)

    def all(self) -> list[Volume]:
        return [self._volume(r) for r in self.rows.all()]

    def users(self, name: str) -> list[str]:
        return self.rows.users(name)

    def create(self, name: str = "", driver: str = "local", labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> tuple[Volume, bool]:
        """(volume, created): creating an existing volume returns it, as dockerd does."""
        if driver not in ("", "local"):  # dockerd looks for a plugin of that name: berth has none
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if options:
            raise NotSupported("local volume options (type, device, o) are not supported by berth yet")
        if not name:
            name, anonymous = secrets.token_hex(32), True
        if not NAME.match(name):
            raise InvalidParameter(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                                   "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed")
        try:
            return self.get(name), False
        except NotFound:
            pass
        data = os.path.join(self.root, name, "_data")
        os.makedirs(data, mode=0o755, exist_ok=True)
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            self.rows.insert(VolumeRow(name, "local", created, dict(labels or {}), dict(options or {}), anonymous, True))
        except Conflict:  # made meanwhile by another request: that one, as when it existed
            return self.get(name), False
        return self.get(name), True

    def remove(self, name: str, force: bool = False) -> None:
        v = self.get(name)
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self.rows.delete(v.name)
        shutil.rmtree(os.path.join(self.root, v.name), ignore_errors=True)

    def copied(self, name: str) -> None:
        self.rows.copied(name)

    def size(self, name: str) -> int:
        """Bytes in the volume, walked by descriptor (a container can swap a directory for a symlink
        to "/" while ``os.walk`` looks)."""
        return tree_size(os.path.join(self.root, name, "_data"))

    def sweep(self) -> list[str]:
        known = {v.name for v in self.all()}
        removed = []
        for name in os.listdir(self.root):
            if name not in known:
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
                removed.append(f"volumes/{name}")
        return removed
