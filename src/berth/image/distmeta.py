"""What berth knows of registries, kept with its images (dockerd's "distribution metadata"): the
compressed blob each layer was pulled or pushed as, in which repository of which registry, and the
manifests images were pulled with. Push uses it to skip blobs a registry has, to mount them from
another repository of the same registry, and to push a pulled image's manifest as it was (its digest
unchanged)."""

from __future__ import annotations

from dataclasses import dataclass

from berth.store.db import Database


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str
    media_type: str
    size: int
    registry: str
    repo: str


@dataclass(frozen=True, slots=True)
class PulledManifest:
    registry: str
    repo: str
    digest: str
    media_type: str
    body: bytes


class DistributionMetadata:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_blobs(self, blobs: list[tuple[str, Blob]]) -> None:
        """(diff ID, blob) pairs, in one transaction."""
        with self.db.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO blob_digests VALUES (?, ?, ?, ?, ?, ?)",
                          [(diff_id, b.digest, b.media_type, b.size, b.registry, b.repo) for diff_id, b in blobs])

    def blobs(self, diff_id: str, registry: str) -> list[Blob]:
        """Where the layer is known to be in ``registry``, the repositories' order kept stable."""
        with self.db.read() as c:
            rows = c.execute("SELECT digest, media_type, size, registry, repo FROM blob_digests WHERE diff_id = ? "
                             "AND registry = ? ORDER BY repo, digest", (diff_id, registry)).fetchall()
        return [Blob(*row) for row in rows]

    def forget_blob(self, diff_id: str, blob: Blob) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM blob_digests WHERE diff_id = ? AND digest = ? AND registry = ? AND repo = ?",
                      (diff_id, blob.digest, blob.registry, blob.repo))

    def add_manifest(self, image_id: str, m: PulledManifest) -> None:
        with self.db.transaction() as c:
            c.execute("INSERT OR IGNORE INTO image_manifests VALUES (?, ?, ?, ?, ?, ?)",
                      (image_id, m.registry, m.repo, m.digest, m.media_type, m.body))

    def manifests(self, image_id: str) -> list[PulledManifest]:
        with self.db.read() as c:
            rows = c.execute("SELECT registry, repo, digest, media_type, body FROM image_manifests WHERE image_id = ? "
                             "ORDER BY registry, repo", (image_id,)).fetchall()
        return [PulledManifest(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]
