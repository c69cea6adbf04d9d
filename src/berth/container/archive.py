"""docker cp: a path inside a container's root, resolved as the container would see it, tarred out or
extracted into, never leaving that root.

Symlinks met on the way are followed *inside* the root, as a chroot would (an absolute target starts
again at the root, ".." stops at the root); the last component is not followed, so copying a symlink
copies the link, as docker cp does. Extraction uses tarfile's "data" filter, which refuses members
that would land outside the destination (through "..", absolute paths or symlinks) and device files.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from berth.errors import InvalidParameter, NotFound

_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27


def resolve(root: str, path: str, follow_last: bool = False) -> str:
    """The host path of ``path`` inside ``root``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    hops = 0
    while parts:
        comp = parts.pop(0)
        if comp == "..":
            if current:
                current.pop()
            continue
        candidate = os.path.join(root, *current, comp)
        if os.path.islink(candidate) and (parts or follow_last):
            hops += 1
            if hops > 40:
                raise InvalidParameter(f"too many levels of symbolic links in {path!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current.append(comp)
    return os.path.join(root, *current)


def stat_header(host_path: str, name: str) -> str:
    """The X-Docker-Container-Path-Stat value: base64 JSON with Go's FileMode bits."""
    st = os.lstat(host_path)
    mode = stat.S_IMODE(st.st_mode)
    link = ""
    if stat.S_ISDIR(st.st_mode):
        mode |= _GO_DIR
    elif stat.S_ISLNK(st.st_mode):
        mode |= _GO_SYMLINK
        link = os.readlink(host_path)
    info = {"name": name, "size": st.st_size, "mode": mode,
            "mtime": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat().replace("+00:00", "Z"),
            "linkTarget": link}
    return base64.b64encode(json.dumps(info).encode()).decode()


def stat_path(root: str, path: str, container: str) -> tuple[str, str]:
    host = resolve(root, path)
    if not os.path.lexists(host):
        raise NotFound(f"Could not find the file {path} in container {container}")
    name = os.path.basename(path.rstrip("/")) or "/"
    return host, stat_header(host, name)


class _Sink:
    """A write-only file object that hands what tarfile writes to a generator."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def tar_stream(host_path: str, arcname: str, end: bool = True) -> Iterator[bytes]:
    """A tar of ``host_path`` (a file, link or directory tree) under ``arcname``, produced lazily.
    With ``end=False`` the end-of-archive blocks are left out, so that streams can be concatenated."""
    sink = _Sink()
    tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
    for dirpath, arc in _walk(host_path, arcname):
        tf.add(dirpath, arcname=arc, recursive=False)
        if sink.chunks:
            yield from sink.chunks
            sink.chunks.clear()
    if end:
        tf.close()
    else:
        tf.fileobj.close()  # flush the last record's data, without the end-of-archive marker
    yield from sink.chunks


def _walk(host_path: str, arcname: str) -> Iterator[tuple[str, str]]:
    yield host_path, arcname
    if os.path.isdir(host_path) and not os.path.islink(host_path):
        for entry in sorted(os.listdir(host_path)):
            yield from _walk(os.path.join(host_path, entry), f"{arcname}/{entry}")


def extract(src: BinaryIO, root: str, path: str, container: str, no_overwrite_dir_non_dir: bool) -> None:
    dest = resolve(root, path, follow_last=True)
    if not os.path.lexists(dest):
        raise NotFound(f"Could not find the file {path} in container {container}")
    if not os.path.isdir(dest):
        raise InvalidParameter(f"extraction point is not a directory: {path}")
    try:
        with tarfile.open(fileobj=src, mode="r|*") as tf:
            for member in tf:
                target = os.path.join(dest, member.name)
                if no_overwrite_dir_non_dir and os.path.lexists(target) and \
                        os.path.isdir(target) != member.isdir():
                    raise InvalidParameter(f"cannot overwrite {'directory' if os.path.isdir(target) else 'non-directory'}"
                                           f" {member.name!r} with {'directory' if member.isdir() else 'non-directory'}")
                tf.extract(member, dest, filter="data")
    except tarfile.FilterError as exc:
        raise InvalidParameter(f"refused to extract: {exc}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidParameter(f"invalid archive: {exc}") from None
