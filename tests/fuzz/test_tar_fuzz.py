"""Property-based fuzzing of berth's tar reader (every tar that comes in goes through it): arbitrary
bytes, and real archives with bytes flipped or fields forged. It only ever raises InvalidParameter,
never reads more than the stream holds, and never hands out a negative or oversized size."""

from __future__ import annotations

import io
import os
import tarfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth import tarfmt
from berth.errors import InvalidParameter

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Counting(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked = 0

    def read(self, n: int | None = -1) -> bytes:  # type: ignore[override]
        assert n is not None and n >= 0, f"read({n}): a negative size reached the stream"
        self.asked += n
        return super().read(n)


def drain(data: bytes) -> None:
    f = Counting(data)
    reader = tarfmt.TarReader(f)  # type: ignore[arg-type]
    try:
        for entry in reader:
            assert 0 <= entry.size <= tarfmt.MAX_SIZE
            assert "\0" not in entry.name and len(entry.name.encode("utf-8", "surrogateescape")) <= tarfmt.MAX_NAME
            while reader.read_data(65536):
                pass
    except InvalidParameter:
        pass


def sample_tar(pax: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("a.txt", b"hello"), ("dir/b", b"x" * 700)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = dict(pax)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tf.addfile(link)
    return buf.getvalue()


@SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(data: bytes) -> None:
    drain(data)


@SETTINGS
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.integers(min_value=0, max_value=255)),
                max_size=12))
def test_flipped_bytes_in_a_real_archive(flips: list[tuple[int, int]]) -> None:
    data = bytearray(sample_tar({}))
    for pos, value in flips:
        data[pos % len(data)] = value
    drain(bytes(data))


pax_values = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str),
                       st.text(max_size=30), st.sampled_from(["-1", "nan", "inf", "1e400", "0x10", " 5", "5 "]))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["size", "uid", "gid", "mtime", "path", "linkpath", "SCHILY.xattr.user.x"]),
                       pax_values, max_size=4))
def test_forged_pax_records(pax: dict[str, str]) -> None:
    try:
        data = sample_tar(pax)
    except (ValueError, UnicodeError):
        return  # tarfile refused to write it: nothing to feed
    drain(data)
