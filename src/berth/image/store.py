"""Images: configs by digest, tags and digests in SQLite, layers in the LayerStore.

An image's ID is the sha256 of its config bytes, stored exactly as received, so IDs match Docker's.
Every change is one transaction; files (layers, configs) are put in place, synced, *before* the
transaction that makes them reachable, and removed *after* the one that makes them unreachable, so
a crash leaves at worst unreferenced files, which ``sweep`` removes at start.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from berth.errors import Conflict, InvalidParameter, NotFound
from berth.image import reference
from berth.image.buildcache import BuildCache
from berth.image.distmeta import DistributionMetadata
from berth.image.layers import Extracted, LayerStore, chain_ids
from berth.linux.files import write_atomic
from berth.store.db import Database


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


@dataclass(slots=True)
class ImageRecord:
    id: str
    created: str
    size: int
    added: float
    parent: str | None
    layers: list[str] = field(default_factory=list)  # chain IDs, bottom first
    tags: list[str] = field(default_factory=list)  # full references
    digests: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewLayer:
    """A layer for ``ImageStore.add``: freshly extracted, or already in the store (extracted=None)."""

    diff_id: str
    extracted: Extracted | None


def parse_config(data: bytes) -> dict[str, Any]:
    try:
        cfg = json.loads(data)
    except ValueError as exc:
        raise InvalidParameter(f"invalid image config: {exc}") from None
    if not isinstance(cfg, dict):
        raise InvalidParameter("invalid image config: not a JSON object")
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidParameter("invalid image config: rootfs.type must be \"layers\" with a diff_ids list")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not d.startswith("sha256:") or len(d) != 71:
            raise InvalidParameter(f"invalid image config: bad diff ID {d!r}")
    return cfg


def _only_its_digests(tag_ref: str, others: list[str]) -> bool:
    """dockerd's rule: removing a tag whose repository's digest references are all the image has left
    removes those too (a pulled image goes with ``docker rmi name:tag``)."""
    ref = reference.parse(tag_ref)
    if not ref.tag or not others:
        return False
    for other in others:
        o = reference.parse(other)
        if o.tag or not o.digest or o.name != ref.name:
            return False
    return True


class ImageStore:
    def __init__(self, root: str, db: Database) -> None:
        self.root = root
        self.db = db
        self.layers = LayerStore(root)
        self.meta = DistributionMetadata(db)
        self.build_cache = BuildCache(db)
        self.configs = os.path.join(root, "configs")
        os.makedirs(self.configs, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()  # one mutation of images/layers at a time

    # ---- start-up ---------------------------------------------------------------------------
    def sweep(self) -> list[str]:
        """Remove what a crash left: staging, unreferenced layers and configs."""
        with self.db.read() as c:
            chains = {r[0] for r in c.execute("SELECT chain_id FROM layers")}
            ids = {r[0].split(":", 1)[1] for r in c.execute("SELECT id FROM images")}
        removed = self.layers.sweep(chains)
        for name in os.listdir(self.configs):
            if name not in ids:
                os.unlink(os.path.join(self.configs, name))
                removed.append(f"configs/{name}")
        return removed

    # ---- reading ------------------------------------------------------------------------------
    def config_bytes(self, image_id: str) -> bytes:
        with open(os.path.join(self.configs, image_id.split(":", 1)[1]), "rb") as f:
            return f.read()

    def config(self, image_id: str) -> dict[str, Any]:
        return json.loads(self.config_bytes(image_id))

    def resolve(self, name: str) -> str:
        """The ID of the image ``name`` names: a full or short ID, a tag, or a digest reference.
        Raises NotFound ("No such image: NAME") or InvalidParameter for an ambiguous prefix."""
        hexid = reference.looks_like_id(name)
        with self.db.read() as c:
            if hexid and len(hexid) == 64:
                row = c.execute("SELECT id FROM images WHERE id = ?", ("sha256:" + hexid,)).fetchone()
                if row:
                    return str(row[0])
            try:
                ref = reference.parse(name)
            except InvalidParameter:
                ref = None
            if ref is not None:
                row = c.execute("SELECT image_id FROM refs WHERE ref = ?", (str(ref),)).fetchone()
                if row:
                    return str(row[0])
                if ref.digest:  # name@digest also matches when stored under another tag of that name
                    row = c.execute("SELECT image_id FROM refs WHERE ref = ?", (f"{ref.name}@{ref.digest}",)).fetchone()
                    if row:
                        return str(row[0])
            if hexid and not name.startswith("sha256:") or hexid and len(hexid) < 64:
                rows = c.execute("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hexid}%",)).fetchall()
                if len(rows) == 1:
                    return str(rows[0][0])
                if len(rows) > 1:
                    raise InvalidParameter(f"multiple IDs found with provided prefix: {hexid}")
        raise NotFound(f"No such image: {name}")

    def get(self, image_id: str) -> ImageRecord:
        with self.db.read() as c:
            row = c.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
            if row is None:
                raise NotFound(f"No such image: {image_id}")
            return self._record(c, row)

    def _record(self, c: Any, row: Any) -> ImageRecord:
        rec = ImageRecord(row["id"], row["created"], row["size"], row["added"], row["parent"])
        rec.layers = [r[0] for r in c.execute(
            "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY position", (rec.id,))]
        for r in c.execute("SELECT ref, kind FROM refs WHERE image_id = ? ORDER BY added, ref", (rec.id,)):
            (rec.tags if r["kind"] == "tag" else rec.digests).append(r["ref"])
        return rec

    def count(self) -> int:
        with self.db.read() as c:
            return int(c.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def all(self) -> list[ImageRecord]:
        with self.db.read() as c:
            return [self._record(c, row) for row in c.execute("SELECT * FROM images ORDER BY added DESC")]

    def has_children(self, image_id: str) -> bool:
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM images WHERE parent = ? LIMIT 1", (image_id,)).fetchone() is not None

    def cached_child(self, parent: str, container_config: dict[str, Any], among: set[str] | None = None) -> str | None:
        """A build step's image already made: a child of ``parent`` ("": of scratch) made with the same
        container config (the classic builder's cache), the newest, one of ``among`` when given; None
        when there is none."""
        volatile = ("Image", "Hostname")

        def key(cc: Any) -> str:
            return json.dumps({k: v for k, v in (cc or {}).items() if k not in volatile}, sort_keys=True)

        want = key(container_config)
        with self.db.read() as c:
            if parent:
                rows = c.execute("SELECT id FROM images WHERE parent = ? ORDER BY added DESC", (parent,)).fetchall()
            else:  # the children of scratch: images of no parent
                rows = c.execute("SELECT id FROM images WHERE parent IS NULL OR parent = '' ORDER BY added DESC").fetchall()
        for (image_id,) in rows:
            if among is not None and image_id not in among:
                continue
            try:
                cfg = self.config(image_id)
            except (OSError, ValueError):
                continue
            if key(cfg.get("container_config")) == want:
                return str(image_id)
        return None

    def layer_rows(self, chain: list[str]) -> list[Any]:
        with self.db.read() as c:
            return [c.execute("SELECT * FROM layers WHERE chain_id = ?", (ch,)).fetchone() for ch in chain]

    def has_layer(self, chain_id: str) -> bool:
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM layers WHERE chain_id = ?", (chain_id,)).fetchone() is not None

    # ---- writing -------------------------------------------------------------------------------
    def add(self, config: bytes, layers: list[NewLayer], tags: list[str],
            parent: str | None = None) -> tuple[str, list[str]]:
        """Register an image from its config bytes and its layers (bottom first), then point ``tags``
        at it; ``parent``: the image it was committed from. Returns (image ID, tags moved away from
        another image). All or nothing."""
        cfg = parse_config(config)
        diff_ids = cfg["rootfs"]["diff_ids"]
        if [layer.diff_id for layer in layers] != diff_ids:
            for i, (got, want) in enumerate(zip([layer.diff_id for layer in layers], diff_ids, strict=False)):
                if got != want:
                    raise InvalidParameter(f"layer {i + 1} has digest {got}, but the image config expects {want}")
            raise InvalidParameter(f"the image config lists {len(diff_ids)} layers, the archive has {len(layers)}")
        refs = [reference.parse(t) for t in tags]
        image_id = digest_of(config)
        chains = chain_ids(diff_ids)
        with self.lock:
            cfg_path = os.path.join(self.configs, image_id.split(":", 1)[1])
            if not os.path.exists(cfg_path):
                write_atomic(cfg_path, config)
            sizes: list[tuple[int, int] | None] = []  # (files size, tar size) of layers new to the store
            for layer, chain in zip(layers, chains, strict=True):
                if layer.extracted is not None and not self.has_layer(chain):
                    self.layers.commit(layer.extracted, chain)
                    sizes.append((layer.extracted.size, layer.extracted.tar_size))
                else:
                    if layer.extracted is not None:
                        self.layers.discard(layer.extracted.staging)
                    sizes.append(None)
            moved: list[str] = []
            now = time.time()
            with self.db.transaction() as c:
                for i, (layer, chain) in enumerate(zip(layers, chains, strict=True)):
                    sz = sizes[i]
                    if sz is not None:
                        c.execute("INSERT OR IGNORE INTO layers VALUES (?, ?, ?, ?, ?, ?)",
                                  (chain, layer.diff_id, chains[i - 1] if i else None, sz[0], sz[1], now))
                    elif c.execute("SELECT 1 FROM layers WHERE chain_id = ?", (chain,)).fetchone() is None:
                        raise InvalidParameter(f"layer {layer.diff_id} is neither in the archive nor in the store")
                total = sum(r[0] for r in (c.execute("SELECT size FROM layers WHERE chain_id = ?", (ch,)).fetchone()
                                           for ch in chains))
                c.execute("INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?)",
                          (image_id, str(cfg.get("created") or ""), total, now, parent))
                c.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
                c.executemany("INSERT INTO image_layers VALUES (?, ?, ?)",
                              [(image_id, i, ch) for i, ch in enumerate(chains)])
                for ref in refs:
                    old = c.execute("SELECT image_id FROM refs WHERE ref = ?", (str(ref),)).fetchone()
                    if old and old[0] != image_id:
                        moved.append(str(ref))
                    c.execute("INSERT OR REPLACE INTO refs VALUES (?, ?, ?, ?)",
                              (str(ref), image_id, "digest" if ref.digest and not ref.tag else "tag", now))
        return image_id, moved

    def tag(self, image_id: str, ref_text: str) -> reference.Reference:
        ref = reference.parse(ref_text)
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        with self.db.transaction() as c:
            c.execute("INSERT OR REPLACE INTO refs VALUES (?, ?, 'tag', ?)", (str(ref), image_id, time.time()))
        return ref

    def delete(self, name: str, force: bool, noprune: bool, in_use: bool = False) -> list[dict[str, str]]:
        """dockerd's rules: a tag with other references left is only untagged; the last reference, or
        an ID, deletes the image (an ID with several tags needs ``force``). Layers go with the last
        image using them. ``in_use`` (a container was made from it; the caller forces): every reference
        goes, the image stays, dangling, for the containers whose root it is."""
        with self.lock:
            image_id = self.resolve(name)
            rec = self.get(image_id)
            refs = rec.tags + rec.digests
            by_ref = None
            try:
                parsed = reference.parse(name)
                if str(parsed) in refs:
                    by_ref = str(parsed)
            except InvalidParameter:
                pass
            out: list[dict[str, str]] = []
            if by_ref is not None and _only_its_digests(by_ref, [r for r in refs if r != by_ref]):
                refs = [by_ref, *[r for r in refs if r != by_ref]]  # the tag was the last name: all go
            elif by_ref is not None and len(refs) > 1:  # forced or not, as dockerd: the other names stay
                with self.db.transaction() as c:
                    c.execute("DELETE FROM refs WHERE ref = ?", (by_ref,))
                return [{"Untagged": reference.parse(by_ref).familiar}]
            if by_ref is None and len(rec.tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {short(image_id)} (must be forced) - image is "
                               "referenced in multiple repositories")
            if in_use:
                with self.db.transaction() as c:
                    c.execute("DELETE FROM refs WHERE image_id = ?", (image_id,))
                return [{"Untagged": reference.parse(r).familiar} for r in refs]
            with self.db.transaction() as c:
                for r in refs:
                    out.append({"Untagged": reference.parse(r).familiar})
                c.execute("DELETE FROM refs WHERE image_id = ?", (image_id,))
                c.execute("DELETE FROM images WHERE id = ?", (image_id,))
                # this image's layers, top first (as dockerd reports them), that no other image uses
                doomed = [ch for ch in reversed(rec.layers) if c.execute(
                    "SELECT 1 FROM image_layers WHERE chain_id = ?", (ch,)).fetchone() is None]
                c.executemany("DELETE FROM layers WHERE chain_id = ?", [(d,) for d in doomed])
            out.append({"Deleted": image_id})
            for d in doomed:
                self.layers.remove(d)
                out.append({"Deleted": d})
            try:
                os.unlink(os.path.join(self.configs, image_id.split(":", 1)[1]))
            except FileNotFoundError:
                pass
            return out
