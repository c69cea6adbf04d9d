"""The SQLite database: WAL mode, foreign keys on, numbered migrations, one writer at a time.

Connections are used from the event loop and from worker threads (extraction runs in threads), so
every use goes through ``read()`` or ``transaction()``, which hold one lock: SQLite serializes
writers anyway, and the lock keeps a transaction on one connection from interleaving with another.
A transaction opened inside another (one repository's write inside another's, as a container's
row and its network attachments are written together) is a savepoint of the outer one: both
commit, or neither.

The tables are read and written only by the repositories beside this module (``containers.py``,
``networks.py``) and by ``image/store.py``; a constraint that fails there becomes a ``Conflict``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from berth.errors import System

MIGRATIONS: list[str] = [
    # 1: images and layers
    """
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT,
        size INTEGER NOT NULL,       -- bytes of the extracted files
        tar_size INTEGER NOT NULL,   -- bytes of the uncompressed layer tar
        created REAL NOT NULL
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,          -- sha256:<hex of the config>
        created TEXT NOT NULL,        -- from the config, RFC 3339
        size INTEGER NOT NULL,        -- sum of its layers' sizes
        added REAL NOT NULL,          -- when this daemon got it
        parent TEXT
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        chain_id TEXT NOT NULL REFERENCES layers(chain_id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE refs (
        ref TEXT PRIMARY KEY,         -- docker.io/library/busybox:latest or name@sha256:...
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
        added REAL NOT NULL
    );
    CREATE INDEX refs_image ON refs(image_id);
    """,
    # 2: containers
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,    -- without the leading slash
        image TEXT NOT NULL,          -- as the client named it
        image_id TEXT NOT NULL REFERENCES images(id),
        created TEXT NOT NULL,        -- RFC 3339 with nanoseconds
        config TEXT NOT NULL,         -- JSON: Config (image defaults applied)
        host_config TEXT NOT NULL,    -- JSON: HostConfig
        state TEXT NOT NULL,          -- JSON: State
        runtime TEXT NOT NULL
    );
    CREATE INDEX containers_image ON containers(image_id);
    """,
    # 3: volumes, and which containers use them
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,
        labels TEXT NOT NULL,         -- JSON
        options TEXT NOT NULL,        -- JSON
        anonymous INTEGER NOT NULL,
        needs_copy INTEGER NOT NULL   -- 1 until the first container copied the image's content in
    );
    CREATE TABLE container_volumes (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        name TEXT NOT NULL REFERENCES volumes(name),
        destination TEXT NOT NULL,
        read_only INTEGER NOT NULL,
        PRIMARY KEY (container_id, destination)
    );
    CREATE INDEX container_volumes_name ON container_volumes(name);
    """,
    # 4: networks, the containers attached to them, addresses given out, published ports
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE attachments (
        container_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        request TEXT NOT NULL,
        state TEXT,
        PRIMARY KEY (container_id, network_id)
    );
    CREATE INDEX attachments_network ON attachments(network_id);
    CREATE TABLE ip_allocs (
        network_id TEXT NOT NULL,
        address TEXT NOT NULL,
        container_id TEXT NOT NULL,
        PRIMARY KEY (network_id, address)
    );
    CREATE TABLE port_maps (
        container_id TEXT NOT NULL,
        proto TEXT NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        container_ip TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        device TEXT NOT NULL,
        PRIMARY KEY (proto, host_ip, host_port)
    );
    """,
    # 5: what berth keeps of a container besides Docker's State: out of the State JSON, into columns
    """
    ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN manually_stopped INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN idmap TEXT;
    UPDATE containers SET
        restart_count = COALESCE(json_extract(state, '$._RestartCount'), 0),
        manually_stopped = COALESCE(json_extract(state, '$._ManuallyStopped'), 0),
        idmap = json_extract(state, '$._IDMap'),
        state = json_remove(state, '$._RestartCount', '$._ManuallyStopped', '$._IDMap');
    """,
    # 6: what registries hold: each layer's blob (by diff ID) in which repository, and the manifests
    # images were pulled with (pushed again byte for byte where their blobs are)
    """
    CREATE TABLE blob_digests (
        diff_id TEXT NOT NULL,
        digest TEXT NOT NULL,         -- the compressed blob's
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        registry TEXT NOT NULL,
        repo TEXT NOT NULL,
        PRIMARY KEY (diff_id, digest, registry, repo)
    );
    CREATE INDEX blob_digests_diff ON blob_digests(diff_id);
    CREATE TABLE image_manifests (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        registry TEXT NOT NULL,
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (image_id, registry, repo, digest)
    );
    """,
    # 7: the build cache: the images build steps made, kept (untagged) until builder prune
    """
    CREATE TABLE build_cache (
        image_id TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        last_used REAL NOT NULL,
        usage INTEGER NOT NULL DEFAULT 1
    );
    """,
]


class Database:
    def __init__(self, path: str) -> None:
        # 0600: the database holds every container's environment (secrets included)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.chmod(path + suffix, 0o600)
        except OSError as exc:
            raise System(f"cannot open the database {path}: {exc.strerror}", cause=exc) from None
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise System(f"cannot open the database {path}: {exc}", cause=exc) from None
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0  # transactions open (the outer one and its savepoints), under the lock
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            for n, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                # executescript() would COMMIT mid-transaction: run the statements one by one
                for stmt in filter(None, (s.strip() for s in sql.split(";"))):
                    c.execute(stmt)
                c.execute(f"PRAGMA user_version = {n}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception; inside another transaction (of
        this thread: the lock is held), a savepoint released or rolled back to the same way."""
        with self._lock:
            begin, commit, rollback = "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"
            if self._depth:
                sp = f"sp{self._depth}"
                begin, commit, rollback = f"SAVEPOINT {sp}", f"RELEASE {sp}", f"ROLLBACK TO {sp}; RELEASE {sp}"
            self._conn.execute(begin)
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                for stmt in rollback.split("; "):
                    self._conn.execute(stmt)
                raise
            else:
                self._conn.execute(commit)
            finally:
                self._depth -= 1

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
