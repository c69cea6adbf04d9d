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


def test_exec_cp_top_volume_and_friends(berthd, tmp_path):
    h = ("-H", berthd.url)
    assert rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    assert berth(*h, "run", "-d", "--name", "svc", "bb", "sleep", "60").returncode == 0
    r = berth(*h, "exec", "svc", "sh", "-c", "echo in-exec; exit 3")
    assert (r.returncode, r.stdout) == (3, "in-exec\n")
    assert berth(*h, "exec", "-i", "svc", "cat", input="piped\n").stdout == "piped\n"
    (tmp_path / "f.txt").write_text("local\n")
    assert berth(*h, "cp", str(tmp_path / "f.txt"), "svc:/tmp/").returncode == 0
    assert berth(*h, "exec", "svc", "cat", "/tmp/f.txt").stdout == "local\n"
    assert berth(*h, "cp", "svc:/etc/passwd", str(tmp_path / "p")).returncode == 0
    assert (tmp_path / "p").read_text().startswith("root:")
    assert "sleep 60" in berth(*h, "top", "svc").stdout
    assert berth(*h, "pause", "svc").returncode == 0 and berth(*h, "unpause", "svc").returncode == 0
    assert berth(*h, "rename", "svc", "svc2").returncode == 0
    assert "A /tmp/f.txt" in berth(*h, "diff", "svc2").stdout
    assert berth(*h, "volume", "create", "vv").stdout.strip() == "vv"
    assert berth(*h, "volume", "ls", "-q").stdout.split() == ["vv"]
    assert berth(*h, "volume", "rm", "vv").returncode == 0
    df = berth(*h, "system", "df").stdout
    assert df.splitlines()[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE"]
    assert "svc2" in berth(*h, "stats", "--no-stream").stdout
    assert berth(*h, "rm", "-f", "svc2").returncode == 0


def test_run_forwards_signals_to_the_container(berthd):
    import signal
    import subprocess

    from tests.lib.clis import base_env
    from tests.lib.daemon import BERTH

    assert rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    p = subprocess.Popen([BERTH, "-H", berthd.url, "run", "--rm", "bb", "sh", "-c",
                          "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"],
                         stdout=subprocess.PIPE, text=True, env=base_env())
    # "ready" came through the CLI's output copy, which starts after its signal proxy is installed
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 7 and "got-term" in out


def test_attach(berthd):
    import subprocess

    from tests.lib.clis import base_env
    from tests.lib.daemon import BERTH

    h = ("-H", berthd.url)
    assert rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    cid = berth(*h, "create", "-i", "--name", "att", "bb", "sh", "-c", "read x; echo got $x; exit 9").stdout.strip()
    assert len(cid) == 64
    assert berth(*h, "start", "att").returncode == 0
    r = subprocess.run([BERTH, *h, "attach", "att"], input="hello\n", capture_output=True, text=True, timeout=30,
                       env=base_env())
    assert r.returncode == 9 and r.stdout == "got hello\n", r.stderr
