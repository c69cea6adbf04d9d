"""The safe-resolution module on a real filesystem under tmp: every escape a container's root can try
(absolute and relative symlinks, '..', FIFOs, huge files, swapped components), with openat2 and with
the component walk that stands in for it on older kernels."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import InvalidParameter, NotFound
from berth.linux import safepath, safetree


@pytest.fixture(params=["openat2", "walk"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "openat2" and not safepath.have_openat2():
        pytest.skip("this kernel has no openat2")
    safepath.force_walk(request.param == "walk")
    try:
        yield request.param
    finally:
        safepath.force_walk(False)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a container root with hostile links, and a directory standing for the host."""
    outside = tmp_path / "host"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "shadow").write_text("host secret\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.symlink("/", root / "x")  # x -> /  (inside the root: the root itself)
    os.symlink(str(outside), root / "abs")  # an absolute host path: inside the root it does not exist
    os.symlink("../../../../../../" + str(outside).lstrip("/"), root / "rel")  # climbs: stops at the root
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.mkfifo(root / "etc" / "group")
    return root, outside


def test_symlinks_resolve_inside_the_root(tree: tuple[Path, Path], mode: str) -> None:
    root, outside = tree
    with safepath.Root.at(str(root)) as r:
        assert safepath.read_file(r, "/x/etc/passwd").startswith(b"root:")
        for hostile in ("/abs/etc/shadow", "/rel/etc/shadow", "/../../../" + str(outside) + "/etc/shadow",
                        "/x/../../etc/shadow"):
            with pytest.raises(NotFound):
                safepath.read_file(r, hostile)
        assert r.resolve("/x/etc/passwd") == "/etc/passwd"
        assert r.resolve("/rel/etc") == str(outside) + "/etc"  # a path inside the root, which does not exist
        with pytest.raises(OSError):
            r.open("/loop1")


def test_reads_never_block_and_are_capped(tree: tuple[Path, Path], mode: str) -> None:
    root, _ = tree
    (root / "big").write_bytes(b"x" * 5000)
    with safepath.Root.at(str(root)) as r:
        started = time.monotonic()
        with pytest.raises(InvalidParameter, match="not a regular file"):
            safepath.read_file(r, "/etc/group")  # a FIFO: opening it to read would wait for a writer
        assert time.monotonic() - started < 5
        with pytest.raises(InvalidParameter, match="larger than"):
            safepath.read_file(r, "/big", limit=4096)
        with pytest.raises(InvalidParameter, match="not a regular file"):
            safepath.read_file(r, "/etc")


def test_mkdir_all_stays_inside(tree: tuple[Path, Path], mode: str) -> None:
    root, outside = tree
    with safepath.Root.at(str(root)) as r:
        for path in ("/abs/made", "/rel/made2", "/x/x/work/dir"):
            os.close(r.mkdir_all(path, 0o750))
    assert not (outside / "made").exists() and not (outside / "made2").exists()
    assert (root / str(outside).lstrip("/") / "made").is_dir()
    assert (root / str(outside).lstrip("/") / "made2").is_dir()
    assert stat.S_IMODE((root / "work" / "dir").stat().st_mode) == 0o750


def test_mounts_are_crossed_as_the_container_sees_them(tmp_path: Path, mode: str) -> None:
    root, vol = tmp_path / "root", tmp_path / "vol"
    (root / "data").mkdir(parents=True)
    vol.mkdir()
    (vol / "f").write_text("in the volume\n")
    os.symlink("/data", root / "link")
    with safepath.Root.at(str(root), mounts={"/data": str(vol)}) as r:
        assert safepath.read_file(r, "/link/f") == b"in the volume\n"
        assert safepath.read_file(r, "/data/../data/f") == b"in the volume\n"


def test_copy_tree_copies_links_as_links(tmp_path: Path) -> None:
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    (src / "d").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("no")
    (src / "d" / "f").write_text("data")
    os.chmod(src / "d" / "f", 0o640)
    os.symlink(str(outside), src / "d" / "out")
    os.mkfifo(src / "fifo")
    dst.mkdir()
    s = os.open(src, os.O_PATH | os.O_DIRECTORY)
    d = os.open(dst, os.O_PATH | os.O_DIRECTORY)
    try:
        safetree.copy_tree(s, d)
    finally:
        os.close(s)
        os.close(d)
    assert (dst / "d" / "f").read_text() == "data"
    assert stat.S_IMODE((dst / "d" / "f").stat().st_mode) == 0o640
    assert os.readlink(dst / "d" / "out") == str(outside)
    assert stat.S_ISFIFO((dst / "fifo").lstat().st_mode)


def test_a_swapped_component_never_leads_outside(tmp_path: Path, mode: str) -> None:
    """A racing thread swaps a directory for a symlink to the host while reads go on (the
    CVE-2018-15664 pattern): every read sees the root's file or nothing, never the host's."""
    root, outside = tmp_path / "root", tmp_path / "host"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("inside")
    outside.mkdir()
    (outside / "f").write_text("HOST")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(root / "d", root / "d.real")
            os.symlink(str(outside), root / "d")
            os.unlink(root / "d")
            os.rename(root / "d.real", root / "d")

    t = threading.Thread(target=swap)
    t.start()
    seen = set()
    try:
        with safepath.Root.at(str(root)) as r:
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                try:
                    seen.add(safepath.read_file(r, "/d/f"))
                except (NotFound, InvalidParameter):
                    seen.add(None)
    finally:
        stop.set()
        t.join()
    assert b"HOST" not in seen
