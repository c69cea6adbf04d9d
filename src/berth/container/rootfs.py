"""A container's root filesystem on the host: the overlay of its image's layers and its own upper
directory (through idmapped mounts for a userns-remapped container), the tmpfs of ``--ipc
shareable``, and — for reading a container's files — its root as the container sees it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from berth.container import mounts as cmounts
from berth.container.model import Container
from berth.container.registry import Registry
from berth.errors import Conflict
from berth.linux import safepath
from berth.linux.idmap import IDMap, UserNamespace, mount_overlay
from berth.linux.mount import MS_NODEV, MS_NOEXEC, MS_NOSUID, is_mounted, umount
from berth.linux.mount import mount as mount_fs


class Rootfs:
    def __init__(self, registry: Registry, lowers_of: Callable[[str], list[str]], volume_path: Callable[[str], str],
                 userns: UserNamespace | None) -> None:
        """``lowers_of(image_id)``: the image's layer directories, top first; ``volume_path(name)``:
        a volume's directory on the host."""
        self.registry = registry
        self.layout = registry.layout
        self.lowers_of = lowers_of
        self.volume_path = volume_path
        self.userns = userns
        self._users: dict[str, int] = {}  # readers of a stopped container's files (cp, export)
        self._users_lock = threading.Lock()

    def mount(self, ctr: Container, rootfs: str) -> IDMap | None:
        """Mount the container's overlay at ``rootfs``; a remapped container's layers through idmapped
        mounts. Returns the container's id mapping."""
        idmap = ctr.idmap
        if idmap is not None and (self.userns is None or self.userns.idmap != idmap):
            raise Conflict(f"container {ctr.short_id} was made with userns-remap ids {idmap.uid}:{idmap.gid}; "
                           "berthd now runs with " + (f"{self.userns.idmap.uid}:{self.userns.idmap.gid}"
                                                      if self.userns else "no userns-remap") + ": it cannot start")
        lowers = self.lowers_of(ctr.image_id)
        if not lowers:  # an image of no layers (FROM scratch, then COPY): overlayfs needs a lower directory
            empty = self.layout.dir(ctr.id, "empty")
            os.makedirs(empty, mode=0o755, exist_ok=True)
            lowers = [empty]
        mount_overlay(lowers, self.layout.dir(ctr.id, "upper"), self.layout.dir(ctr.id, "work"),
                      rootfs, self.userns if idmap is not None else None)
        return idmap

    def mount_for_start(self, ctr: Container) -> IDMap | None:
        """The rootfs in the bundle, mounted afresh (a mount an interrupted start left goes first)."""
        rootfs = self.layout.rootfs(ctr.id)
        os.makedirs(rootfs, mode=0o700, exist_ok=True)
        if is_mounted(rootfs):
            umount(rootfs)
        return self.mount(ctr, rootfs)

    @staticmethod
    def unmount(path: str) -> None:
        umount(path, True)

    def mount_shm(self, ctr: Container, idmap: IDMap | None) -> str:
        """The host-side tmpfs of an ``--ipc shareable`` container (under berth's own directory)."""
        shm = self.layout.shm(ctr.id)
        os.makedirs(shm, mode=0o700, exist_ok=True)
        if not is_mounted(shm):
            owner = f",uid={idmap.uid},gid={idmap.gid}" if idmap is not None else ""
            size = int(ctr.host_config.get("ShmSize") or 64 << 20)
            mount_fs("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={size}{owner}")
        return shm

    def release(self, ctr: Container) -> None:
        umount(self.layout.rootfs(ctr.id), detach=True)
        umount(self.layout.shm(ctr.id), detach=True)

    def mount_table(self, ctr: Container) -> list[tuple[str, str, bool]]:
        """(destination, host source, read-only) of the container's volumes and binds."""
        out = [(dst, self.volume_path(name), ro) for name, dst, ro in self.registry.volumes_of(ctr.id)]
        out += [(m["destination"], m["source"], "ro" in m["options"])
                for m in cmounts.mounts({k: v for k, v in ctr.host_config.items() if k in ("Binds", "Mounts")},
                                        create=False)
                if m["type"] == "bind"]
        return out

    @contextlib.contextmanager
    def root_for(self, ctr: Container, with_mounts: bool = True) -> Iterator[safepath.Root]:
        """The container's filesystem as the container sees it, as a ``safepath.Root``. Running: its
        own root (``/proc/PID/root``), where lookups cross its real mounts. Stopped: the rootfs (mounted
        for the occasion, shared by concurrent readers, gone with the last one), with its volumes and
        binds crossed into at their destinations."""
        pid = ctr.state.pid
        if ctr.running and pid and with_mounts:
            try:
                root = safepath.Root.of_process(pid, ctr.id, label=ctr.id)
            except OSError:  # it exited meanwhile (and that pid may be another process's now)
                raise Conflict(f"Container {ctr.id} is not running") from None
            try:
                yield root
            finally:
                root.close()
            return
        rootfs = self.layout.rootfs(ctr.id)
        with self._users_lock:
            users = self._users.get(ctr.id, 0)
            if users == 0:
                os.makedirs(rootfs, mode=0o700, exist_ok=True)
                if not is_mounted(rootfs):
                    self.mount(ctr, rootfs)
            self._users[ctr.id] = users + 1
        try:
            table = self.mount_table(ctr) if with_mounts else []
            with safepath.Root.at(rootfs, {dst: src for dst, src, _ in table}, ctr.id) as root:
                yield root
        finally:
            with self._users_lock:
                left = self._users.pop(ctr.id) - 1
                if left:
                    self._users[ctr.id] = left
                elif not self.registry.is_running(ctr.id):
                    umount(rootfs, detach=True)
