"""The volume backend: the local driver with events."""

from __future__ import annotations

from typing import Any

from berth.daemon.events import EventBus, make_event
from berth.errors import Conflict, NotFound
from berth.volume.local import LocalVolumes


class VolumeService:
    def __init__(self, volumes: LocalVolumes, bus: EventBus) -> None:
        self.volumes = volumes
        self.bus = bus

    def volume_create(self, name: str, driver: str, labels: dict[str, str], options: dict[str, str]) -> dict[str, Any]:
        vol, made = self.volumes.create(name, driver, labels, options)
        if made:
            self.bus.publish(make_event("volume", "create", vol.name, {"driver": "local"}))
        return vol.view()

    def volume_list(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        out = []
        for v in self.volumes.all():
            if "name" in filters and not any(f in v.name for f in filters["name"]):
                continue
            if "driver" in filters and v.driver not in filters["driver"]:
                continue
            if "dangling" in filters:
                dangling = filters["dangling"][-1].lower() in ("true", "1")
                if bool(self.volumes.users(v.name)) == dangling:
                    continue
            if "label" in filters and not all(
                    lbl.partition("=")[0] in v.labels and (not lbl.partition("=")[1]
                                                           or v.labels[lbl.partition("=")[0]] == lbl.partition("=")[2])
                    for lbl in filters["label"]):
                continue
            out.append(v.view())
        return {"Volumes": out, "Warnings": []}

    def volume_inspect(self, name: str) -> dict[str, Any]:
        return self.volumes.get(name).view()

    def volume_remove(self, name: str, force: bool) -> None:
        try:
            self.volumes.remove(name, force)
        except NotFound:
            if force:
                return
            raise
        self.bus.publish(make_event("volume", "destroy", name, {"driver": "local"}))

    def volumes_prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        everything = (filters.get("all") or ["false"])[-1].lower() in ("true", "1")
        deleted, reclaimed = [], 0
        for v in self.volumes.all():
            if (v.anonymous or everything) and not self.volumes.users(v.name):
                size = self.volumes.size(v.name)
                try:
                    self.volumes.remove(v.name)
                except Conflict:
                    continue
                deleted.append(v.name)
                reclaimed += size
                self.bus.publish(make_event("volume", "destroy", v.name, {"driver": "local"}))
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
