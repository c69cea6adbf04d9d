"""berth's container commands against a real berthd and the real runtime."""

from __future__ import annotations

from tests.lib import rawhttp
from tests.lib.clis import berth
from tests.lib.images import busybox_rootfs_tar


def test_run_exit_codes_streams_and_stdin(berthd):
    h = ("-H", berthd.url)
    assert rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    r = berth(*h, "run", "--rm", "bb", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    r = berth(*h, "run", "--rm", "-e", "WHO=env", "bb", "sh", "-c", "echo $WHO; echo oops >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, "env\n", "oops\n")
    r = berth(*h, "run", "-i", "--rm", "bb", "cat", input="through stdin\n")
    assert (r.returncode, r.stdout) == (0, "through stdin\n")
    r = berth(*h, "run", "--rm", "bb", "nonexistent")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = berth(*h, "run", "--rm", "nosuch:image", "true")
    assert r.returncode == 125 and "No such image: nosuch:image" in r.stderr
    assert berth(*h, "ps", "-aq").stdout == ""


def test_detached_lifecycle(berthd):
    h = ("-H", berthd.url)
    assert rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    cid = berth(*h, "run", "-d", "--name", "svc", "-l", "tier=web", "bb", "sh", "-c",
                "echo started; echo warn >&2; while true; do sleep 1; done").stdout.strip()
    assert len(cid) == 64
    rows = berth(*h, "ps").stdout.splitlines()
    assert rows[0].split()[:2] == ["CONTAINER", "ID"] and rows[1].startswith(cid[:12]) and rows[1].endswith("svc")
    assert berth(*h, "ps", "--filter", "label=tier=web", "-q").stdout.split() == [cid[:12]]
    r = berth(*h, "logs", "svc")
    assert r.stdout == "started\n" and r.stderr == "warn\n"
    assert berth(*h, "stop", "-t", "0", "svc").stdout.strip() == "svc"
    assert berth(*h, "wait", "svc").stdout.strip() == "137"
    assert berth(*h, "container", "inspect", "-f", "{{.State.Status}}", "svc").stdout.strip() == "exited"
    r = berth(*h, "rm", "svc", "nosuch")
    assert r.returncode == 1 and r.stdout.strip() == "svc" and "No such container: nosuch" in r.stderr
