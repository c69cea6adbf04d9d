"""Test images made here, from Debian's busybox-static: nothing comes from the internet."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def busybox_rootfs_tar(extra: dict[str, bytes] | None = None) -> bytes:
    """A root filesystem tar: /bin/busybox with a few applet links, /etc files, /tmp."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755 if d != "tmp" else 0o1777, 1_700_000_000
            tf.addfile(info)
        tf.add(BUSYBOX, "bin/busybox")
        for applet in ("sh", "ls", "cat", "echo", "rm", "mkdir", "touch", "true"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "busybox", 1_700_000_000
            tf.addfile(info)
        files = {"etc/greeting": b"hello\n", "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"}
        files.update(extra or {})
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
