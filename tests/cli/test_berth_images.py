"""berth's image commands against a real berthd, next to the docker CLI's view of the same state."""

from __future__ import annotations

import os

from tests.lib.clis import berth, docker
from tests.lib.images import busybox_rootfs_tar, config_for, docker_archive, layer_tar


def test_import_tag_images_history_save_rmi_load(berthd, tmp_path):
    h = ("-H", berthd.url)
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_rootfs_tar())
    r = berth(*h, "import", "-c", 'CMD ["sh"]', "-m", "made here", str(rootfs), "bb:one")
    assert r.returncode == 0 and r.stdout.startswith("sha256:"), r.stderr
    image_id = r.stdout.strip()
    assert berth(*h, "tag", "bb:one", "bb:two").returncode == 0
    lines = berth(*h, "images").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert {tuple(line.split()[:3]) for line in lines[1:]} == {("bb", "one", image_id[7:19]),
                                                                ("bb", "two", image_id[7:19])}
    assert berth(*h, "images", "-q").stdout.split() == [image_id[7:19]]  # one ID, however many tags
    assert sorted(docker(*h, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()) == ["bb:one", "bb:two"]
    hist = berth(*h, "history", "bb:one").stdout.splitlines()
    assert hist[1].startswith(image_id[7:19]) and hist[1].endswith("made here")
    assert berth(*h, "image", "inspect", "-f", "{{.Config.Cmd}}", "bb:one").stdout.strip() == "[sh]"
    out = tmp_path / "saved.tar"
    assert berth(*h, "save", "-o", str(out), "bb:one").returncode == 0 and out.stat().st_size > 1_000_000
    assert not os.path.exists(str(out) + ".berth-partial")
    r = berth(*h, "rmi", "bb:one", "bb:two")
    assert r.stdout.splitlines()[:3] == ["Untagged: bb:one", "Untagged: bb:two", f"Deleted: {image_id}"]
    r = berth(*h, "load", "-i", str(out))
    assert r.returncode == 0 and r.stdout.strip() == "Loaded image: bb:one", r.stderr
    # the same archive through stdin, and docker's CLI sees berth's result
    with open(out, "rb") as f:
        assert berth(*h, "load", stdin=f, text=False).returncode == 0
    assert docker(*h, "image", "inspect", "-f", "{{.Id}}", "bb:one").stdout.strip() == image_id


def test_errors_and_exit_codes(berthd, tmp_path):
    h = ("-H", berthd.url)
    r = berth(*h, "rmi", "nosuch", "alsono")
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["Error response from daemon: No such image: nosuch",
                                     "Error response from daemon: No such image: alsono"]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not an archive" * 100)
    r = berth(*h, "load", "-i", str(bad))
    assert r.returncode == 1 and "invalid archive" in r.stderr and "Traceback" not in r.stderr
    r = berth(*h, "save", "-o", str(tmp_path / "x.tar"), "nosuch")
    assert r.returncode == 1 and "No such image: nosuch" in r.stderr
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.berth-partial").exists()


def test_prune_and_filters(berthd, tmp_path):
    h = ("-H", berthd.url)
    layer = layer_tar({"f": b"1"})
    archive = tmp_path / "a.tar"
    archive.write_bytes(docker_archive([(config_for([layer], labels={"k": "v"}), [layer], ["kept:1"]),
                                        (config_for([layer], author="x"), [layer], [])]))
    assert berth(*h, "load", "-i", str(archive)).returncode == 0
    assert berth(*h, "images", "--filter", "dangling=true", "-q").stdout.split() != []
    assert berth(*h, "images", "--filter", "label=k=v", "--format", "{{.Repository}}").stdout.split() == ["kept"]
    r = berth(*h, "image", "prune", "-f")
    assert r.returncode == 0 and "Total reclaimed space:" in r.stdout
    assert berth(*h, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == ["kept:1"]


def test_load_on_a_terminal_shows_progress(berthd, tmp_path):
    """Under a pseudo-terminal (script(1)) berth asks for progress and draws it with rich."""
    import shlex
    import shutil
    import subprocess

    import pytest

    from tests.lib.daemon import BERTH

    if not shutil.which("script"):
        pytest.skip("script(1) is not installed (util-linux)")
    big = layer_tar({"big": os.urandom(3 << 20)})
    archive = tmp_path / "p.tar"
    archive.write_bytes(docker_archive([(config_for([big]), [big], ["tty:1"])]))
    cmd = f"{shlex.quote(BERTH)} -H {berthd.url} load -i {shlex.quote(str(archive))}"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Loaded image: tty:1" in r.stdout
    assert "Loading layer" in r.stdout and "\x1b[" in r.stdout  # drawn, not just printed
