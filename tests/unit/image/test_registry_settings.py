"""Registry settings and manifests parsed from untrusted text."""

from __future__ import annotations

import json

import pytest

from berth.errors import InvalidParameter, NotFound
from berth.image import manifests
from berth.image.registry import Credentials, Settings, registry_domain


def test_insecure_registries_are_checked_and_loopback_always_is() -> None:
    s = Settings.parse(["10.1.0.0/16", "reg.example.test:5000"], 3, [])
    assert s.is_insecure("10.1.2.3:5000") and s.is_insecure("reg.example.test:5000")
    assert s.is_insecure("127.0.0.1:5000") and s.is_insecure("localhost:5000") and s.is_insecure("[::1]:5000")
    assert not s.is_insecure("10.2.0.1:5000") and not s.is_insecure("reg.example.test:5001")
    for bad, words in (("http://r:5000", "should not contain '://'"), ("10.0.0.0/99", "not a valid CIDR"),
                       ("a b", r"neither host\[:port\] nor a CIDR")):
        with pytest.raises(InvalidParameter, match=words):
            Settings.parse([bad], 3, [])
    for downloads in (0, 65, True, "3"):
        with pytest.raises(InvalidParameter, match="max-concurrent-downloads"):
            Settings.parse([], downloads, [])


def test_login_addresses_and_auth_headers() -> None:
    assert registry_domain("https://index.docker.io/v1/") == "docker.io"
    assert registry_domain("127.0.0.1:5000") == "127.0.0.1:5000"
    with pytest.raises(InvalidParameter):
        registry_domain("bad host/x")
    assert Credentials.from_header("").username == ""
    with pytest.raises(InvalidParameter, match="X-Registry-Auth"):
        Credentials.from_header("%%%")
    c = Credentials(username="u", password="secret")
    assert "secret" not in repr(c)


def _list(*platforms: dict[str, str]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": [
        {"mediaType": manifests.OCI_MANIFEST, "digest": "sha256:" + f"{i:x}" * 64, "size": 10, "platform": p}
        for i, p in enumerate(platforms, start=1)]}).encode()


def test_platform_choice_is_variant_aware() -> None:
    idx = manifests.parse(_list({"os": "linux", "architecture": "arm", "variant": "v6"},
                                {"os": "linux", "architecture": "arm", "variant": "v7"},
                                {"os": "linux", "architecture": "amd64"}), "")
    assert isinstance(idx, manifests.Index)
    assert manifests.choose(idx, manifests.Platform("linux", "arm", "v7")).digest.endswith("2" * 64)
    assert manifests.choose(idx, manifests.Platform("linux", "amd64", "")).digest.endswith("3" * 64)
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        manifests.choose(idx, manifests.Platform("linux", "s390x"))


def test_hostile_manifests_are_refused() -> None:
    for body, words in ((b"[]", "unsupported manifest media type"), (b"not json", "not JSON"),
                        (json.dumps({"schemaVersion": 3, "layers": []}).encode(), "schemaVersion must be 2"),
                        (json.dumps({"schemaVersion": 1}).encode(), "schema 1 is not supported"),
                        (json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST, "config": {
                            "digest": "md5:abc", "size": 1}, "layers": []}).encode(), "unsupported digest"),
                        (json.dumps({"schemaVersion": 2, "mediaType": manifests.OCI_MANIFEST, "config": {
                            "digest": "sha256:" + "a" * 64, "size": -1}, "layers": []}).encode(), "non-negative"),
                        (b" " * (5 << 20), "larger than 4 MiB")):
        with pytest.raises(InvalidParameter, match=words):
            manifests.parse(body, "application/json")
    with pytest.raises(InvalidParameter, match="unknown operating system or architecture"):
        manifests.parse_platform("linux")


def test_gunzip_reads_members_padding_and_refuses_truncation_and_bombs() -> None:
    import gzip
    import io

    from berth.image.streams import Gunzip

    two = gzip.compress(b"a" * 1000, mtime=0) + gzip.compress(b"b" * 10, mtime=0) + b"\0" * 512
    assert Gunzip(io.BytesIO(two)).read() == b"a" * 1000 + b"b" * 10
    with pytest.raises(EOFError):
        Gunzip(io.BytesIO(gzip.compress(b"x" * 100000)[:-20])).read()
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    g = Gunzip(io.BytesIO(bomb))
    assert len(g.read(4096)) == 4096
    assert len(g._buf) < 2 << 20  # a small read does not inflate the whole member


class _Trickle:
    """A source that answers every read with at most a few random bytes (as a socket may)."""

    def __init__(self, data: bytes, rng: object) -> None:
        self.data, self.pos, self.rng = data, 0, rng

    def read(self, n: int = -1) -> bytes:
        take = min(n if n >= 0 else len(self.data), self.rng.randint(1, 70000))  # type: ignore[attr-defined]
        out = self.data[self.pos:self.pos + take]
        self.pos += len(out)
        return out


def test_short_reads_through_the_pull_stream_and_gunzip_lose_and_reorder_nothing() -> None:
    """The pull hands chunks on uncopied and reads may be short: whatever the read sizes, the
    bytes, the digest and the size come out whole and in order."""
    import gzip
    import hashlib
    import random

    from berth.image.pull import _Stream
    from berth.image.streams import Gunzip

    rng = random.Random(7)
    plain = b"".join(rng.randbytes(rng.randint(0, 5000)) + b"\0" * rng.randint(0, 90000) for _ in range(60))
    packed = gzip.compress(plain[:len(plain) // 2], mtime=0) + gzip.compress(plain[len(plain) // 2:], mtime=0)
    chunks = [packed[i:i + 65536] for i in range(0, len(packed), 65536)]
    seen: list[int] = []
    stream = _Stream(iter(chunks), len(packed), seen.append)
    g = Gunzip(stream)  # type: ignore[arg-type]
    out = bytearray()
    while piece := g.read(rng.choice([1, 512, 4096, 70000, 1 << 20])):
        out += piece
    assert bytes(out) == plain
    assert stream.digest == "sha256:" + hashlib.sha256(packed).hexdigest() and stream.size == len(packed)
    assert seen[-1] == len(packed)
    for size in (1, 512, 100000):  # a plain (uncompressed) stream read in pieces of every size
        s = _Stream(iter(chunks), len(packed), lambda n: None)
        got = bytearray()
        while piece := s.read(size):
            assert len(piece) <= size
            got += piece
        assert bytes(got) == packed
    trickled = Gunzip(_Trickle(packed, rng))  # type: ignore[arg-type]
    assert trickled.read() == plain
    with pytest.raises(InvalidParameter, match="more than the 10 bytes"):
        _Stream(iter([b"x" * 11]), 10, lambda n: None).read(100)
