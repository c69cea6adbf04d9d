"""Edges a review found in the builder, each performed for real: a cached step followed by a new one
keeps the cached layers, a failing stage does not hang a build whose other stage is chatty, a bad
context entry early in a large upload is answered at once, COPY --chmod over a directory holding a
FIFO, a meta ARG's value inherited by the stage's ARG, and a RUN step that makes a `.wh.` file."""

from __future__ import annotations

import io
import os
import tarfile

from tests.build.test_build import _build, _context
from tests.lib import rawhttp
from tests.lib.clis import docker as docker_cli
from tests.lib.daemon import Berthd


def test_a_new_step_after_cached_ones_keeps_their_layers(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": "FROM bb\nRUN echo a > /a\nRUN echo b > /b\n"})
    assert _build(bb, ctx, "-t", "edge:1")[0] == 0
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM bb\nRUN echo a > /a\nRUN echo c > /c\n")
    code, out = _build(bb, ctx, "-t", "edge:2")
    assert code == 0 and out.count("Using cache") == 1, out
    r = docker_cli("-H", bb.url, "run", "--rm", "edge:2", "sh", "-c", "cat /a /c; test ! -e /b && echo no-b")
    assert r.stdout == "a\nc\nno-b\n", r.stdout + r.stderr


def test_a_failing_stage_ends_the_build_while_another_stage_talks(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": "FROM bb AS a\nRUN sleep 2; exit 1\nFROM bb AS b\nRUN seq 1 3000; sleep 30\n"})
    code, out = _build(bb, ctx, "-t", "edge:3")  # a hang would run into the CLI's timeout
    assert code != 0 and "returned a non-zero code: 1" in out, out[-500:]
    assert docker_cli("-H", bb.url, "ps", "-q").stdout == ""  # stage b's container went with it


def test_a_bad_entry_early_in_a_large_context_is_answered_at_once(bb: Berthd) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        bad = tarfile.TarInfo("../escape")
        tf.addfile(bad)
        big = tarfile.TarInfo("big")
        big.size = 64 << 20
        tf.addfile(big, io.BytesIO(bytes(big.size)))
    r = rawhttp.request(bb.sock, "POST", "/build", body=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    assert r.status == 400 and b"'..' component" in r.body, r.body


def test_copy_chmod_over_a_directory_with_a_fifo_and_meta_args_and_wh_names(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": (
        "ARG V=from-meta\nFROM bb\nARG V\nRUN mkdir -p /t/keep && mkfifo /t/p && echo k > /t/keep/f && "
        "chmod 644 /t/keep/f && echo $V > /v\nCOPY --chmod=700 d/ /t/\n"), "d/new": "n\n"})
    code, out = _build(bb, ctx, "-t", "edge:4")
    assert code == 0, out
    r = docker_cli("-H", bb.url, "run", "--rm", "edge:4", "sh", "-c",
                   "cat /v; stat -c '%a' /t/new /t/keep/f; test -p /t/p && echo fifo")
    assert r.stdout == "from-meta\n700\n644\nfifo\n", r.stdout + r.stderr  # only what was copied changed
    ctx = _context(tmp_path / "wh", {"Dockerfile": "FROM bb\nRUN touch /.wh.hidden\n"})
    code, out = _build(bb, ctx)
    assert code != 0 and "cannot be in an image layer" in out, out


def test_a_context_nested_deeper_than_the_bound_is_a_400_and_one_within_it_builds(bb: Berthd) -> None:
    """Directories 256 deep at most: the walks over a context (.dockerignore's pruning, COPY's hash of a
    directory) go one level at a time, and a context 1000 levels deep was an internal error."""
    def context(depth: int) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, data in (("Dockerfile", b"FROM scratch\nCOPY d /d\n"), (".dockerignore", b"**/*.log\n"),
                               ("/".join(["d"] * depth) + "/leaf", b"deep\n"), ("d/x.log", b"dropped\n")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    headers = {"Content-Type": "application/x-tar"}
    r = rawhttp.request(bb.sock, "POST", "/build?t=deep:1", body=context(1000), headers=headers, timeout=60)
    assert r.status == 400 and b"more than 256 directories deep" in r.body, r.body
    r = rawhttp.request(bb.sock, "POST", "/build?t=deep:1", body=context(255), headers=headers, timeout=60)
    assert r.status == 200 and b"Successfully tagged deep:1" in r.body, r.body
