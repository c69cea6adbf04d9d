import pytest

from berth.errors import InvalidParameter
from berth.image.reference import looks_like_id, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, full, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("host:5000/a/b:t", "host:5000/a/b:t", "host:5000/a/b:t"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
])
def test_normalize(text, full, familiar):
    r = parse(text)
    assert str(r) == full and r.familiar == familiar


@pytest.mark.parametrize("bad", ["", "UPPER", "a/B", "x:", "x:-bad", "x@sha256:short", "a//b", "-a", "a/.b"])
def test_invalid(bad):
    with pytest.raises(InvalidParameter, match="invalid reference format"):
        parse(bad)


def test_ids():
    assert looks_like_id("sha256:" + "ab" * 32) == "ab" * 32
    assert looks_like_id("abc123") == "abc123"
    assert looks_like_id("busybox") is None
