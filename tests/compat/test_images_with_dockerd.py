"""Images round-trip between berthd and real dockerd, with the real docker CLI on both.

One dockerd for the module: it imports a busybox root filesystem and builds a three-layer image
with whiteouts (a deleted file, an opaque directory), so the archives come from Docker itself.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator

import pytest

from tests.lib.clis import docker
from tests.lib.dockerd import Dockerd
from tests.lib.images import busybox_rootfs_tar

DOCKERFILE = """FROM bb:base
RUN rm /etc/greeting && mkdir -p /opq && touch /opq/a
RUN rm -rf /opq && mkdir /opq && echo x > /opq/b
LABEL stage=whiteouts
"""


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory) -> Iterator[tuple[Dockerd, str]]:
    d = Dockerd().start()
    work = str(tmp_path_factory.mktemp("dockerd-images"))
    try:
        r = docker("-H", d.url, "import", "-", "bb:base", input=busybox_rootfs_tar().decode("latin-1"),
                   encoding="latin-1")
        assert r.returncode == 0, r.stderr
        ctx = os.path.join(work, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        r = docker("-H", d.url, "build", "-q", "-t", "bb:wh", ctx, timeout=180,
                   env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if r.returncode != 0:
            pytest.skip(f"dockerd cannot build images here: {r.stderr[-500:]}")
        yield d, work
    finally:
        d.stop()


def ids(url: str, *refs: str) -> list[str]:
    r = docker("-H", url, "image", "inspect", "--format", "{{.Id}}", *refs)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_dockerd_archive_loads_into_berth_with_same_ids(dockerd, berthd, tmp_path):
    d, _ = dockerd
    archive = str(tmp_path / "from-dockerd.tar")
    assert docker("-H", d.url, "save", "-o", archive, "bb:wh", "bb:base").returncode == 0
    r = docker("-H", berthd.url, "load", "-i", archive)
    assert r.returncode == 0, r.stderr
    assert "Loaded image: bb:wh" in r.stdout and "Loaded image: bb:base" in r.stdout
    assert ids(berthd.url, "bb:wh", "bb:base") == ids(d.url, "bb:wh", "bb:base")
    # the whiteouts are overlayfs whiteouts in berth's layer store
    lower = docker("-H", berthd.url, "image", "inspect", "--format", "{{.GraphDriver.Data.LowerDir}}",
                   "bb:wh").stdout.strip().split(":")
    assert any(os.path.exists(os.path.join(p, "etc/greeting")) and not os.path.isfile(os.path.join(p, "etc/greeting"))
               for p in lower)
    assert any(os.path.isdir(os.path.join(p, "opq")) and os.getxattr(os.path.join(p, "opq"),
                                                                       "trusted.overlay.opaque") == b"y"
               for p in lower if os.path.exists(os.path.join(p, "opq/b")))


def test_berth_archive_loads_into_dockerd_with_same_ids(dockerd, berthd, tmp_path):
    d, _ = dockerd
    src = str(tmp_path / "from-dockerd.tar")
    assert docker("-H", d.url, "save", "-o", src, "bb:wh").returncode == 0
    assert docker("-H", berthd.url, "load", "-i", src).returncode == 0
    assert docker("-H", berthd.url, "tag", "bb:wh", "roundtrip/by-berth:v1").returncode == 0
    out = str(tmp_path / "from-berth.tar")
    r = docker("-H", berthd.url, "save", "-o", out, "roundtrip/by-berth:v1")
    assert r.returncode == 0, r.stderr
    want = ids(berthd.url, "roundtrip/by-berth:v1")
    r = docker("-H", d.url, "load", "-i", out)
    assert r.returncode == 0, r.stderr
    assert "Loaded image: roundtrip/by-berth:v1" in r.stdout
    assert ids(d.url, "roundtrip/by-berth:v1") == want
    # and every layer berth wrote has the digest dockerd recorded (byte-identical layers)
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["roundtrip/by-berth:v1"]
    assert docker("-H", d.url, "rmi", "roundtrip/by-berth:v1").returncode == 0


def test_cli_output_matches_dockerd(dockerd, berthd, tmp_path):
    d, _ = dockerd
    src = str(tmp_path / "a.tar")
    assert docker("-H", d.url, "save", "-o", src, "bb:wh").returncode == 0
    assert docker("-H", berthd.url, "load", "-i", src).returncode == 0
    for args in (["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}} {{.Size}}", "bb"],
                 # IDs of intermediate images: dockerd built them, a daemon that loaded the image has none
                 ["history", "--no-trunc", "--format", "{{.CreatedBy}} {{.Size}} {{.Comment}}", "bb:wh"],
                 ["image", "inspect", "--format", "{{.Id}} {{.RepoTags}} {{.Config.Labels}} {{.RootFS.Layers}} "
                                                  "{{.Architecture}} {{.Os}} {{.Size}}", "bb:wh"]):
        ours = docker("-H", berthd.url, *args)
        theirs = docker("-H", d.url, *args)
        assert ours.returncode == 0, ours.stderr
        if args[0] == "images":  # dockerd also lists bb:base here
            theirs_lines = [line for line in theirs.stdout.splitlines() if " wh " in line]
            assert ours.stdout.splitlines() == theirs_lines
        else:
            assert ours.stdout == theirs.stdout


def test_history_top_entry_is_the_image(dockerd, berthd, tmp_path):
    d, _ = dockerd
    src = str(tmp_path / "a.tar")
    assert docker("-H", d.url, "save", "-o", src, "bb:wh").returncode == 0
    assert docker("-H", berthd.url, "load", "-i", src).returncode == 0
    rows = docker("-H", berthd.url, "history", "--no-trunc", "--format", "{{.ID}}", "bb:wh").stdout.split()
    assert rows[0] == ids(d.url, "bb:wh")[0] and set(rows[1:]) == {"<missing>"}


def test_import_makes_the_same_layer_as_dockerd(dockerd, berthd):
    d, _ = dockerd
    rootfs = busybox_rootfs_tar().decode("latin-1")
    r = docker("-H", berthd.url, "import", "-c", "CMD [\"sh\"]", "-m", "via berth", "-", "imp:one", input=rootfs,
               encoding="latin-1")
    assert r.returncode == 0 and r.stdout.startswith("sha256:"), r.stderr
    ours = docker("-H", berthd.url, "image", "inspect", "--format", "{{.RootFS.Layers}} {{.Config.Cmd}} {{.Comment}}",
                  "imp:one").stdout
    theirs = docker("-H", d.url, "image", "inspect", "--format", "{{.RootFS.Layers}}", "bb:base").stdout
    assert ours.split(" [sh] ")[0] == theirs.strip()  # same diff ID: the same bytes
    assert ours.strip().endswith("[sh] via berth")


def test_tag_and_rmi_print_what_dockerd_prints(dockerd, berthd, tmp_path):
    d, _ = dockerd
    src = str(tmp_path / "a.tar")
    assert docker("-H", d.url, "save", "-o", src, "bb:wh").returncode == 0
    outputs = {}
    for name, url in (("berth", berthd.url), ("dockerd", d.url)):
        if name == "dockerd":  # a second dockerd copy under another name, so that removing it is harmless
            assert docker("-H", url, "tag", "bb:wh", "cmp/wh:1").returncode == 0
        else:
            assert docker("-H", url, "load", "-i", src).returncode == 0
            assert docker("-H", url, "tag", "bb:wh", "cmp/wh:1").returncode == 0
        r1 = docker("-H", url, "rmi", "cmp/wh:1")
        r2 = docker("-H", url, "rmi", "nosuch:tag")
        outputs[name] = (r1.returncode, r1.stdout, r2.returncode, r2.stderr)
    assert outputs["berth"] == outputs["dockerd"]
