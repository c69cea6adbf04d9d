"""Attacks by an image or a container on the host's files, each performed for real against a real
berthd: symlinks that point a host-side operation out of the container's root, a component swapped
during `docker cp`, devices leaking from one container to the next. Each asserts that the host is
untouched and that the daemon still answers."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time

import pytest

from tests.security.lib import assert_alive, digest, host_canary, layer, load_image, run


@pytest.fixture
def d(berthd):  # type: ignore[no-untyped-def]
    return berthd


def test_symlinked_volume_gets_the_containers_etc_not_the_hosts(d):
    """`x -> /` and `VOLUME /x/etc`: the copy-up once copied the host's /etc (shadow included)."""
    load_image(d, "evil-vol", [layer([("x", "symlink", "/")])], {"Volumes": {"/x/etc": {}}})
    r = run(d, "run", "--name", "vol", "evil-vol", "ls", "/etc")
    assert r.returncode == 0, r.stderr
    mounts = run(d, "inspect", "-f", "{{range .Mounts}}{{.Source}}{{end}}", "vol").stdout.strip()
    names = set(os.listdir(mounts))
    assert "shadow" not in names and "hostname" not in names or "passwd" in names
    assert names >= {"passwd", "greeting"}, names
    assert open(os.path.join(mounts, "passwd")).read() == "root:x:0:0:root:/root:/bin/sh\n"
    assert not os.path.exists(os.path.join(mounts, "shadow"))
    assert_alive(d)


def test_workdir_through_a_symlink_stays_in_the_container(d):
    canary = host_canary("workdir")
    load_image(d, "evil-wd", [layer([("w", "symlink", canary)])], {"WorkingDir": "/w/sub"})
    r = run(d, "run", "--rm", "evil-wd", "sh", "-c", "pwd")
    assert r.returncode == 0 and r.stdout.strip().endswith("/sub"), r.stderr
    assert not os.path.exists(canary)
    assert_alive(d)


def test_failed_start_reaches_run_rm_and_leaves_nothing(d):
    """A WORKDIR under a regular file cannot be made: `docker run --rm` must end with the error (it
    once hung forever on a failure that was not one of berth's kinds)."""
    load_image(d, "bad-wd", [], {"WorkingDir": "/etc/passwd/sub"})
    r = run(d, "run", "--rm", "bad-wd", "true", timeout=30)
    assert r.returncode != 0 and "working directory" in r.stderr, (r.returncode, r.stderr)
    assert run(d, "ps", "-aq").stdout == ""
    assert_alive(d)


def test_etc_files_written_through_symlinks_stay_in_the_container(d):
    """/etc/hostname, /etc/hosts and /etc/resolv.conf are mounted over whatever the image has there:
    symlinks to host paths must not make the runtime create or cover anything on the host."""
    canary = host_canary("etc")
    before = digest("/etc/shadow")
    load_image(d, "evil-etc", [layer([("etc/hostname", "symlink", canary), ("etc/hosts", "symlink", "/etc/shadow"),
                                      ("etc/resolv.conf", "symlink", "../etc/shadow")])], {})
    r = run(d, "run", "--rm", "--hostname", "inside", "evil-etc", "sh", "-c", "cat /etc/hostname; cat /etc/hosts")
    assert r.returncode == 0 and r.stdout.startswith("inside\n"), r.stderr
    assert not os.path.exists(canary)
    assert digest("/etc/shadow") == before
    assert_alive(d)


def test_fifo_and_huge_passwd_do_not_block_the_daemon(d):
    """A container replaces /etc/passwd with a FIFO (and /etc/group with 8 MiB): each `docker exec`
    once blocked a worker thread, eight of them hung every other request. Now an exec that needs a
    name from those files fails at once with 126, one by number runs, and the daemon serves everyone
    else meanwhile."""
    load_image(d, "bb-fifo", [], {})
    assert run(d, "run", "-d", "--name", "fifo", "bb-fifo", "sh", "-c",
               "rm /etc/passwd && busybox mkfifo /etc/passwd && "
               "busybox dd if=/dev/zero of=/etc/group bs=1M count=8 2>/dev/null && touch /ready && sleep 300"
               ).returncode == 0
    deadline = time.monotonic() + 20
    while run(d, "exec", "-u", "0", "fifo", "busybox", "test", "-e", "/ready").returncode != 0:
        assert time.monotonic() < deadline, "the container did not get ready"
        time.sleep(0.1)
    results: list[subprocess.CompletedProcess[str]] = []

    def one() -> None:
        results.append(run(d, "exec", "-u", "root", "fifo", "true", timeout=60))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    ok = run(d, "run", "--rm", "bb-fifo", "echo", "still here", timeout=60)
    for t in threads:
        t.join()
    assert run(d, "exec", "fifo", "true").returncode == 0  # by number: no name to look up
    assert ok.returncode == 0 and ok.stdout == "still here\n", ok.stderr
    assert len(results) == 12
    for r in results:
        assert r.returncode == 126 and "not a regular file" in r.stdout + r.stderr, (r.returncode, r.stdout, r.stderr)
    assert_alive(d)


def test_exec_as_a_missing_user_is_126_with_the_reason(d):
    load_image(d, "bb-user", [], {})
    assert run(d, "run", "-d", "--name", "usr", "bb-user", "sleep", "300").returncode == 0
    r = run(d, "exec", "-u", "nosuchuser", "usr", "true")
    assert r.returncode == 126, (r.returncode, r.stdout, r.stderr)
    assert "unable to find user nosuchuser: no matching entries in passwd file" in r.stdout + r.stderr


def test_cp_races_a_swapped_symlink_and_never_reaches_the_host(d):
    """CVE-2018-15664: while `docker cp` runs, the container swaps a directory for a symlink to "/"
    in a tight loop. Reads must never return the host's /etc/shadow; writes must never land on the
    host."""
    host_shadow = open("/etc/shadow", "rb").read()
    load_image(d, "bb-race", [], {})
    # the container's own /etc/shadow is a decoy too: a read through the symlink then succeeds (inside
    # the container, where it belongs), so reads get through often even on a loaded machine
    assert run(d, "run", "-d", "--name", "race", "bb-race", "sh", "-c",
               "echo decoy > /etc/shadow && mkdir -p /d/etc && echo decoy > /d/etc/shadow && "
               "while true; do busybox mv /d /d.real; ln -s / /d; rm /d; busybox mv /d.real /d; done").returncode == 0
    canary = os.path.basename(host_canary("cp"))
    src = os.path.join(d.root, canary)
    with open(src, "w") as f:
        f.write("from the test\n")
    reads = writes = 0
    started = time.monotonic()
    # at least 6 s of attempts, and until a few of each got through (while the loop has removed /d
    # they fail): 60 s bounds it on a loaded machine
    while time.monotonic() - started < 6 or (min(reads, writes) < 3 and time.monotonic() - started < 60):
        r = subprocess.run(["docker", "-H", d.url, "cp", "race:/d/etc/shadow", "-"], capture_output=True, timeout=30)
        if r.returncode == 0:
            reads += 1
            assert host_shadow not in r.stdout and b"root:" not in r.stdout and b"decoy" in r.stdout
        w = run(d, "cp", src, f"race:/d/{canary}", timeout=30)
        writes += w.returncode == 0
        assert not os.path.exists(f"/{canary}"), "docker cp wrote on the host"
    assert reads and writes, (reads, writes)
    assert_alive(d)


def test_readonly_rootfs_is_checked_by_path_component(d):
    """The read-only check was a string prefix: a volume at /data let `docker cp` write /database."""
    load_image(d, "bb-ro", [], {})
    src = os.path.join(d.root, "payload")
    with open(src, "w") as f:
        f.write("x\n")
    assert run(d, "create", "--name", "ro", "--read-only", "-v", "/data", "bb-ro", "sleep", "300").returncode == 0
    assert run(d, "cp", src, "ro:/data/ok").returncode == 0  # the volume is writable
    for state in ("stopped", "running"):
        r = run(d, "cp", src, "ro:/database")
        assert r.returncode != 0 and "read-only" in r.stderr, (state, r.stderr)
        if state == "stopped":
            assert run(d, "start", "ro").returncode == 0
    assert_alive(d)


def test_a_device_given_to_one_container_never_reaches_the_next(d, cleanup):
    """`--device` rules were appended to a module-level default list: every later container got the
    device (rwm). Uses a loop device: on these machines even root cannot open /dev/vda (the sandbox),
    which is why "--device /dev/vda" looked broken."""
    img = os.path.join(d.root, "loop.img")
    with open(img, "wb") as f:
        f.write(b"DEVICE-DATA" + bytes(1 << 20))
    loop = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.skip(f"no loop device: {loop.stderr.strip()}")
    dev = loop.stdout.strip()
    cleanup.add(f"loop {dev}", lambda: subprocess.run(["losetup", "-d", dev], capture_output=True))
    st = os.stat(dev)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    load_image(d, "bb-dev", [], {})
    r = run(d, "run", "--rm", "--device", f"{dev}:/dev/xdev:r", "bb-dev", "busybox", "head", "-c", "11", "/dev/xdev")
    assert r.returncode == 0 and r.stdout == "DEVICE-DATA", r.stderr  # --device works
    r = run(d, "run", "--rm", "bb-dev", "sh", "-c",
            f"busybox mknod /dev/y b {major} {minor} && busybox head -c 11 /dev/y")
    assert "DEVICE-DATA" not in r.stdout and r.returncode != 0, r.stdout
    assert stat.S_ISBLK(os.stat(dev).st_mode)
    r = run(d, "run", "--rm", "--privileged", "bb-dev", "busybox", "head", "-c", "11", dev)
    assert r.returncode == 0 and r.stdout == "DEVICE-DATA", r.stderr  # --privileged: the host's devices


def test_joining_ipc_never_binds_a_path_the_donor_controls(d):
    """A shareable donor with CAP_SYS_ADMIN replaces its /dev/shm with a symlink to "/": a container
    joining its IPC must get the donor's shm (a tmpfs berth mounted on the host), never the host's /."""
    load_image(d, "bb-ipc", [], {})
    assert run(d, "run", "-d", "--name", "donor", "--ipc", "shareable", "bb-ipc", "sh", "-c",
               "echo shared > /dev/shm/note && sleep 300").returncode == 0
    deadline = time.monotonic() + 10
    while run(d, "exec", "donor", "busybox", "test", "-e", "/dev/shm/note").returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = run(d, "run", "--rm", "--ipc", "container:donor", "bb-ipc", "cat", "/dev/shm/note")
    assert r.returncode == 0 and r.stdout == "shared\n", r.stderr  # the IPC join works
    assert run(d, "run", "-d", "--name", "evil-donor", "--ipc", "shareable", "--cap-add", "SYS_ADMIN", "bb-ipc",
               "sh", "-c", "busybox umount /dev/shm; rm -rf /dev/shm; ln -s / /dev/shm; touch /ready; sleep 300"
               ).returncode == 0
    while run(d, "exec", "evil-donor", "busybox", "test", "-e", "/ready").returncode != 0:
        assert time.monotonic() < deadline + 10
        time.sleep(0.05)
    r = run(d, "run", "--rm", "--ipc", "container:evil-donor", "bb-ipc", "sh", "-c",
            "ls /dev/shm; busybox test -e /dev/shm/etc/shadow && echo HOST-ROOT")
    assert "HOST-ROOT" not in r.stdout and "etc" not in r.stdout.split(), r.stdout
    assert_alive(d)
