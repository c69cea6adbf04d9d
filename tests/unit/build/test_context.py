"""The build context's unpacking on a real filesystem: zeros become holes (a sparse file in a context
costs no disk), names that climb out are refused, symlinks are kept and resolved inside only, an
archive the docker CLI cut short after its last entry is read."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from berth.build import context
from berth.errors import InvalidParameter
from berth.image.streams import Gunzip


class _Zeros:
    """A tar of one file of ``size`` zero bytes, produced as it is read (nothing held in memory)."""

    def __init__(self, size: int) -> None:
        info = tarfile.TarInfo("sparse.img")
        info.size = size
        self.parts = [io.BytesIO(info.tobuf(format=tarfile.PAX_FORMAT))]
        self.zeros_left = size + (-size % 512) + 1024

    def read(self, n: int = -1) -> bytes:
        if self.parts:
            out = self.parts[0].read(n)
            if out:
                return out
            self.parts.pop()
        n = min(n if n >= 0 else 1 << 20, self.zeros_left)
        self.zeros_left -= n
        return bytes(n)


def test_zeros_are_written_as_holes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    size = 256 << 20
    digests = context.unpack(context.open_context(_Zeros(size), Gunzip), str(tmp_path))  # type: ignore[arg-type]
    st = os.stat(tmp_path / "sparse.img")
    assert st.st_size == size and st.st_blocks * 512 < (1 << 20), st  # 256 MiB long, (almost) nothing on disk
    from berth.build import digest

    h = digest.hasher()
    for _ in range(256):
        h.update(bytes(1 << 20))
    assert digests["/sparse.img"] == h.hexdigest()


def test_hostile_names_links_and_a_cut_short_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tf.addfile(link)
        data = tarfile.TarInfo("out/passwd")  # through the link: lands in the context's own /etc
        data.size = 2
        tf.addfile(data, io.BytesIO(b"x\n"))
    dest = tmp_path / "a"
    dest.mkdir()
    context.unpack(io.BytesIO(buf.getvalue()), str(dest))  # type: ignore[arg-type]
    assert (dest / "etc" / "passwd").read_bytes() == b"x\n" and os.readlink(dest / "out") == "/etc"
    assert context.read_small(str(dest), "out/passwd") == b"x\n"  # resolved inside the context
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        evil = tarfile.TarInfo("a/../../x")
        tf.addfile(evil)
    with pytest.raises(InvalidParameter, match="'..' component"):
        context.unpack(io.BytesIO(buf.getvalue()), str(tmp_path / "a"))  # type: ignore[arg-type]
    raw = tarfile.TarInfo("f")
    raw.size = 3
    cut = raw.tobuf() + b"abc"  # no padding, no end blocks: what the docker CLI sends with -f -
    dest = tmp_path / "b"
    dest.mkdir()
    assert "/f" in context.unpack(io.BytesIO(cut), str(dest))  # type: ignore[arg-type]
    (tmp_path / "c").mkdir()
    with pytest.raises(InvalidParameter, match="truncated"):  # cut inside the data: refused
        context.unpack(io.BytesIO(raw.tobuf() + b"a"), str(tmp_path / "c"))  # type: ignore[arg-type]


def test_the_files_cache_is_trimmed_least_recently_used_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    cache = tmp_path / "files"
    cache.mkdir()
    for i in range(8):  # 8 entries of 1 MiB, made one after the other (their ctimes in that order)
        (cache / f"e{i}").write_bytes(bytes(1 << 20))
        time.sleep(0.01)
    os.link(cache / "e0", tmp_path / "used")  # e0 is linked again: the most recently used now
    os.unlink(tmp_path / "used")
    os.link(cache / "e1", tmp_path / "in-a-context")  # e1 is in a context right now
    assert context.trim_cache(str(cache), 10 << 20) == 0  # under the bound: nothing goes
    freed = context.trim_cache(str(cache), 6 << 20)  # over: down to 3/4 of it (4.5 MiB): the 4 oldest but e1 go
    assert freed == 4 << 20 and sorted(p.name for p in cache.iterdir()) == ["e0", "e1", "e6", "e7"]
