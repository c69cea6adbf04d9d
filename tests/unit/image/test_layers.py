"""The layer store on a real filesystem: extraction, whiteouts, byte-identical tars, refusals."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from berth.errors import InvalidParameter
from berth.image.layers import OPAQUE_XATTR, LayerStore, chain_ids


def make_tar(entries: list[tuple], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, type, payload_or_linkname[, extra TarInfo attrs])."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for item in entries:
            name, kind, value = item[:3]
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            for k, v in (item[3] if len(item) > 3 else {}).items():
                setattr(info, k, v)
            if kind == "file":
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = value
            if kind == "dir":
                info.mode = 0o755
            tf.addfile(info)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path):
    return LayerStore(str(tmp_path / "store"))


def ingest(store: LayerStore, data: bytes, chain: str | None = None) -> str:
    ex = store.extract(io.BytesIO(data))
    assert ex.diff_id == "sha256:" + hashlib.sha256(data if data[:2] != b"\x1f\x8b" else gzip.decompress(data)).hexdigest()
    chain = chain or ex.diff_id
    store.commit(ex, chain)
    return chain


def test_roundtrip_is_byte_identical_for_every_kind_of_entry(store):
    long_name = "deep/" + "x" * 150 + "/file.txt"
    data = make_tar([
        ("./", "dir", None),
        ("etc", "dir", None),
        ("etc/hosts", "file", b"127.0.0.1 localhost\n", {"mode": 0o644, "uid": 0, "gid": 0}),
        ("etc/shadow", "file", b"root:*:1::::::\n", {"mode": 0o640, "uid": 0, "gid": 42}),
        ("bin", "dir", None),
        ("bin/busybox", "file", os.urandom(70_000), {"mode": 0o755}),
        ("bin/sh", "sym", "busybox"),
        ("bin/abs", "sym", "/bin/busybox"),
        ("bin/ln", "hard", "bin/busybox"),
        (long_name, "file", b"long"),
        ("ünïcödé", "file", b"utf8 names"),
        ("run/pipe", "fifo", None),
        ("etc/hosts", "file", b"replaced later in the same tar\n"),
    ])
    chain = ingest(store, data)
    diff = store.diff_path(chain)
    assert open(f"{diff}/etc/hosts", "rb").read() == b"replaced later in the same tar\n"
    assert os.stat(f"{diff}/etc/shadow").st_gid == 42
    assert stat.S_IMODE(os.stat(f"{diff}/etc/shadow").st_mode) == 0o640
    assert os.readlink(f"{diff}/bin/sh") == "busybox"
    assert os.stat(f"{diff}/bin/ln").st_ino == os.stat(f"{diff}/bin/busybox").st_ino
    assert stat.S_ISFIFO(os.lstat(f"{diff}/run/pipe").st_mode)
    assert os.path.isfile(f"{diff}/{long_name}")
    assert not os.path.exists(f"{diff}/shadow")  # the replaced content is kept outside the rootfs
    assert b"".join(store.tar_stream(chain)) == data


def test_gzip_layer_gets_the_uncompressed_diff_id(store):
    plain = make_tar([("a", "file", b"x" * 5000)], fmt=tarfile.GNU_FORMAT)
    chain = ingest(store, gzip.compress(plain))
    assert chain == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert b"".join(store.tar_stream(chain)) == plain


def test_whiteouts_become_overlayfs_whiteouts(store):
    data = make_tar([("etc", "dir", None), ("etc/.wh.greeting", "file", b""), ("opq", "dir", None),
                     ("opq/.wh..wh..opq", "file", b""), ("opq/b", "file", b"x")])
    chain = ingest(store, data)
    diff = store.diff_path(chain)
    st = os.lstat(f"{diff}/etc/greeting")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert not os.path.exists(f"{diff}/etc/.wh.greeting")
    assert os.getxattr(f"{diff}/opq", OPAQUE_XATTR) == b"y"
    assert not os.path.exists(f"{diff}/opq/.wh..wh..opq")
    assert b"".join(store.tar_stream(chain)) == data


@pytest.mark.parametrize("entries, message", [
    ([("/etc/passwd", "file", b"x")], "absolute path"),
    ([("a/../../etc/passwd", "file", b"x")], "'..' component"),
    ([("a", "dir", None), ("a/l", "sym", "../../etc")], "outside the layer"),
    ([("l", "sym", "/etc"), ("l/passwd", "file", b"x")], "not a directory"),
    ([("h", "hard", "nothere")], "not in the layer"),
    ([("dev/null", "chr", None, {"devmajor": 1, "devminor": 3})], "device node"),
])
def test_unsafe_layers_are_refused_and_leave_nothing(store, entries, message):
    with pytest.raises(InvalidParameter, match=message):
        store.extract(io.BytesIO(make_tar(entries)))
    assert os.listdir(store.tmp) == [] and os.listdir(store.layers) == []


def test_truncated_and_corrupt_tars_are_refused(store):
    data = make_tar([("a", "file", os.urandom(4000))])
    gz = gzip.compress(data)
    for bad, message in ((data[:1500], "truncated"), (data[:512], "truncated"),
                         (b"\x01" * 1024, "checksum"), (gz[: len(gz) // 2], "invalid layer")):
        with pytest.raises(InvalidParameter, match=message):
            store.extract(io.BytesIO(bad))
    assert os.listdir(store.tmp) == []


def test_chain_ids():
    a, b, c = ("sha256:" + h * 64 for h in "abc")
    ids = chain_ids([a, b, c])
    assert ids[0] == a
    assert ids[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert ids[2] == "sha256:" + hashlib.sha256(f"{ids[1]} {c}".encode()).hexdigest()


def test_sweep_removes_staging_and_unreferenced_layers(store):
    keep = ingest(store, make_tar([("k", "file", b"1")]))
    drop = ingest(store, make_tar([("d", "file", b"2")]))
    os.mkdir(os.path.join(store.tmp, "half-done"))
    removed = store.sweep({keep})
    assert store.exists(keep) and not store.exists(drop)
    assert "tmp/half-done" in removed
