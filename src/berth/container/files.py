"""A container's files seen from the host: what ``docker diff`` lists, what ``docker commit`` takes,
what ``docker export`` and ``docker cp`` read and write. Every path inside the container is
resolved through ``linux/safepath`` (never joined and opened); the upper directory and the image's
layers are walked by descriptor."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from berth.container import archive as carchive
from berth.container import mounts as cmounts
from berth.container.model import Container
from berth.container.rootfs import Rootfs
from berth.errors import Conflict, InvalidParameter
from berth.linux import safepath, safetree
from berth.linux.mount import is_mounted

log = logging.getLogger("berth.containers")


class Files:
    def __init__(self, rootfs: Rootfs) -> None:
        self.rootfs = rootfs
        self.layout = rootfs.layout

    def writable(self, ctr: Container) -> Callable[[str], None]:
        """A check for ``archive.extract``: may the logical path (resolved inside the container) be
        written? A read-only volume or bind, or a read-only rootfs outside any mount, may not."""
        table = sorted(self.rootfs.mount_table(ctr), key=lambda m: -len(m[0]))
        readonly_rootfs = bool(ctr.host_config.get("ReadonlyRootfs"))

        def check(logical: str) -> None:
            for dst, _src, ro in table:
                if safepath.is_within(logical, dst):
                    if ro:
                        raise Conflict("mounted volume is marked read-only")
                    return
            if readonly_rootfs:
                raise Conflict("container rootfs is marked read-only")

        return check

    def changes(self, ctr: Container) -> list[dict[str, Any]]:
        """Kind 0: modified, 1: added, 2: deleted — from the container's upper layer, walked by
        descriptor; a path is looked up in the image's layers without following any symlink."""
        upper = self.layout.dir(ctr.id, "upper")
        lowers = self.rootfs.lowers_of(ctr.image_id)
        hidden = self.runtime_paths(ctr)  # mount points the runtime made: not changes (as dockerd)
        holders: set[str] = set()  # directories above a hidden path
        dirs: set[str] = set()
        out = []
        lower_fds = [os.open(low, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for low in lowers]
        ufd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for rel_path, _parent, _name, st in safetree.walk(ufd):
                rel = "/" + rel_path
                if rel in hidden or any(rel.startswith(h + "/") for h in hidden if h in ("/dev", "/proc", "/sys")):
                    holders.update(rel[:i] for i in range(1, len(rel)) if rel[i] == "/")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    dirs.add(rel)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    kind = 2
                elif any(safetree.exists_beneath(low, rel_path) for low in lower_fds):
                    kind = 0
                else:
                    kind = 1
                out.append({"Path": rel, "Kind": kind})
        finally:
            for fd in (ufd, *lower_fds):
                os.close(fd)
        # a directory copied up only to hold the runtime's mount points (/etc for /etc/hosts) is no change
        shown = {str(c["Path"]) for c in out}
        out = [c for c in out if not (c["Kind"] == 0 and c["Path"] in holders and c["Path"] in dirs and not any(
            p.startswith(c["Path"] + "/") for p in shown))]
        return sorted(out, key=lambda c: c["Path"])

    def runtime_paths(self, ctr: Container) -> set[str]:
        """Mount points the runtime made in the container's upper layer: not the container's changes."""
        hidden = {"/dev", "/proc", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/sbin/docker-init"}
        hidden.update(d for _, d, _ in self.rootfs.registry.volumes_of(ctr.id))
        hidden.update(m["destination"] for m in cmounts.mounts({k: v for k, v in ctr.host_config.items()
                                                                 if k in ("Mounts", "Tmpfs")}, create=False))
        return hidden

    @contextlib.contextmanager
    def export_root(self, ctr: Container) -> Iterator[safepath.Root]:
        """What ``docker export`` reads: the container's overlay, without its volumes and binds."""
        rootfs = self.layout.rootfs(ctr.id)
        if ctr.running and is_mounted(rootfs):
            with safepath.Root.at(rootfs) as root:
                yield root
        else:
            with self.rootfs.root_for(ctr, with_mounts=False) as root:
                yield root

    def release_upper(self, ctr: Container) -> str:
        """The upper directory of a container that is about to be removed and will never run again,
        made fit to become a layer as it is (build steps): the runtime's mount points and device
        nodes taken out (what ``commit_layer`` leaves out of its tar). Its path."""
        hidden = self.runtime_paths(ctr)
        upper = self.layout.dir(ctr.id, "upper")
        ufd = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        doomed: list[str] = []
        try:
            for rel, _parent, _name, st in safetree.walk(ufd):
                path = "/" + rel
                if any(path == d or path.startswith(d + "/") for d in doomed):
                    continue
                top = path in hidden or any(path.startswith(h + "/") for h in hidden if h in ("/dev", "/proc", "/sys"))
                if _name.startswith(".wh.") and not top:
                    raise InvalidParameter(f"the step made {path}: a name starting with .wh. cannot be in an image "
                                           "layer (it means a deleted file there)")
                device = (stat.S_ISCHR(st.st_mode) and st.st_rdev != 0) or stat.S_ISBLK(st.st_mode)
                if top or device:
                    doomed.append(path)
        finally:
            os.close(ufd)
        for path in doomed:  # berth's own directory, nothing runs there: by path, never following a link
            target = upper + path
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
        return upper

    def commit_layer(self, ctr: Container, out: BinaryIO) -> None:
        """The container's changes (its upper directory, without the runtime's mount points) as a
        layer tar written to ``out``."""
        hidden = self.runtime_paths(ctr)

        def is_hidden(path: str) -> bool:
            return path in hidden or any(path.startswith(h + "/") for h in hidden if h in ("/dev", "/proc", "/sys"))

        ufd = os.open(self.layout.dir(ctr.id, "upper"), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for chunk in carchive.layer_stream(ufd, is_hidden, ctr.idmap, lambda p: log.warning(
                    "commit of %s: device node %s left out", ctr.short_id, p)):
                out.write(chunk)
        finally:
            os.close(ufd)
