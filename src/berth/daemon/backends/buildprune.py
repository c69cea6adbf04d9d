"""The build cache as ``docker system df`` and ``docker builder prune`` see it: the images build steps
made that carry no tag (``image.buildcache``). They survive ``image prune``; ``builder prune``
removes them, least recently used first."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable
from typing import Any

from berth.errors import BerthError, InvalidParameter, NotFound
from berth.image.store import ImageStore


def _time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entries(store: ImageStore, in_use: set[str]) -> list[dict[str, Any]]:
    """``/system/df``'s BuildCache: one entry per untagged build-step image, oldest use first."""
    out = []
    for e in store.build_cache.entries():
        try:
            rec = store.get(e.image_id)
            cfg = store.config(e.image_id)
        except (NotFound, OSError, ValueError):
            continue
        if rec.tags or rec.digests:
            continue
        history = cfg.get("history") or [{}]
        rows = store.layer_rows(rec.layers)
        size = 0 if history[-1].get("empty_layer") or not rows else int(rows[-1]["size"])
        out.append({"ID": e.image_id.split(":", 1)[1], "Parent": rec.parent or "", "Type": "regular",
                    "Description": str(history[-1].get("created_by", "")), "InUse": e.image_id in in_use,
                    "Shared": False, "Size": size, "CreatedAt": rec.created, "LastUsedAt": _time(e.last_used),
                    "UsageCount": e.usage})
    return out


def chains(store: ImageStore, names: list[str]) -> set[str]:
    """cachefrom: the images named (those that exist) and their ancestors: the only cache then."""
    out: set[str] = set()
    for name in names:
        try:
            image_id: str | None = store.resolve(name)
        except (NotFound, InvalidParameter):
            continue
        while image_id and image_id not in out:
            out.add(image_id)
            image_id = store.get(image_id).parent
    return out


class BuildCacheService:
    def __init__(self, store: ImageStore, in_use: Callable[[], set[str]], files_cache: str = "") -> None:
        self.store, self.in_use, self.files_cache = store, in_use, files_cache

    def _prune_files(self) -> int:
        """Empty the small-files cache of build contexts; the bytes only it held."""
        freed = 0
        if not self.files_cache or not os.path.isdir(self.files_cache):
            return 0
        for e in os.scandir(self.files_cache):
            st = e.stat(follow_symlinks=False)
            if st.st_nlink == 1:
                freed += st.st_size
            os.unlink(e.path)
        return freed

    def _prune(self, until: float | None, keep_storage: int) -> dict[str, Any]:
        with self.store.lock:
            cache = entries(self.store, self.in_use())
            total = sum(c["Size"] for c in cache)
            deleted, reclaimed = [], 0
            for c in cache:  # least recently used first
                if c["InUse"]:
                    continue
                if until is not None and c["LastUsedAt"] > _time(until):
                    continue
                if keep_storage and total <= keep_storage:
                    break
                image_id = "sha256:" + c["ID"]
                try:
                    gone = self.store.delete(image_id, force=True, noprune=False)
                except BerthError:
                    continue
                deleted.append(c["ID"])
                if any("Deleted" in g and g["Deleted"] != image_id for g in gone):  # its layer went with it
                    reclaimed += c["Size"]
                total -= c["Size"]
            if until is None and not keep_storage:
                reclaimed += self._prune_files()
            return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    async def build_prune(self, until: float | None, keep_storage: int) -> dict[str, Any]:
        return await asyncio.to_thread(self._prune, until, keep_storage)
