"""userns-remap: root in a container is an unprivileged uid on the host. The image's layers are
shared and mapped with idmapped mounts; what the container writes is owned by the remapped ids;
docker cp shows and takes the ids the container sees; root in the container cannot write a host
file that is root's."""

from __future__ import annotations

import io
import os
import pwd
import subprocess
import tarfile

import pytest

from tests.lib.users import make_user
from tests.security.lib import assert_alive, load_image, run

BASE = 300_000_000  # far above any range a host gives out by default


@pytest.fixture
def remap_user(cleanup):  # type: ignore[no-untyped-def]
    """(a throwaway user, the first host uid of its subordinate range); useradd may give it a range
    already (Debian's login.defs), else one far above the usual ones is added."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    user, _ = make_user(cleanup)
    ranges = {}
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        found = [line.split(":") for line in open(path).read().splitlines() if line.startswith(user + ":")]
        if not found:
            subprocess.run(["usermod", flag, f"{BASE}-{BASE + 65535}", user], check=True, capture_output=True)
            found = [[user, str(BASE), "65536"]]
        ranges[path] = int(found[0][1])
    return user, ranges["/etc/subuid"], ranges["/etc/subgid"]  # userdel (cleanup) removes the ranges


def host_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def test_container_root_is_an_unprivileged_host_uid(make_berthd, remap_user, tmp_path):
    user, uid_base, gid_base = remap_user
    d = make_berthd(config={"userns-remap": user}).start()
    load_image(d, "bb", [], {"Volumes": {"/vol": {}}})
    assert "name=userns" in run(d, "info", "-f", "{{.SecurityOptions}}").stdout
    assert run(d, "run", "-d", "--name", "remapped", "bb", "sleep", "300").returncode == 0
    pid = int(run(d, "inspect", "-f", "{{.State.Pid}}", "remapped").stdout)
    assert host_uid(pid) == uid_base
    r = run(d, "exec", "remapped", "sh", "-c", "id -u; stat -c %u:%g /bin/busybox; touch /made; echo v > /vol/f")
    assert r.stdout.split() == ["0", "0:0"], r.stdout + r.stderr  # the image's files are root's, inside
    upper = run(d, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "remapped").stdout.strip()
    st = os.stat(os.path.join(upper, "made"))
    assert (st.st_uid, st.st_gid) == (uid_base, gid_base)  # on the host: the remapped root
    vol = run(d, "inspect", "-f", "{{range .Mounts}}{{.Source}}{{end}}", "remapped").stdout.strip()
    assert os.stat(os.path.join(vol, "f")).st_uid == uid_base
    # docker cp: the ids the container sees, both ways
    out = subprocess.run(["docker", "-H", d.url, "cp", "remapped:/made", "-"], capture_output=True, timeout=30)
    member = tarfile.open(fileobj=io.BytesIO(out.stdout)).getmembers()[0]
    assert (member.uid, member.gid) == (0, 0)
    src = tmp_path / "in.txt"
    src.write_text("x")
    os.chown(src, 1000, 1000)
    assert run(d, "cp", "-a", str(src), "remapped:/in.txt").returncode == 0
    assert os.stat(os.path.join(upper, "in.txt")).st_uid == uid_base  # -a: the container's user, root
    # a host directory owned by root: root in the container may not write there
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir(mode=0o755)
    r = run(d, "run", "--rm", "-v", f"{hostdir}:/h", "bb", "touch", "/h/pwned")
    assert r.returncode != 0 and not (hostdir / "pwned").exists()
    assert "Permission denied" in r.stderr, r.stderr
    # what would give back the host's root needs --userns=host, as with dockerd
    for args in (["--privileged"], ["--network", "host"], ["--pid", "host"]):
        r = run(d, "run", "--rm", *args, "bb", "true")
        assert r.returncode != 0 and "user namespaces" in r.stderr, (args, r.stderr)
    r = run(d, "run", "--rm", "--userns", "host", "bb", "sh", "-c", "cat /proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"], r.stdout
    assert_alive(d)


def test_default_makes_dockremap_with_its_ranges(make_berthd):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        pwd.getpwnam("dockremap")
        existed = True
    except KeyError:
        existed = False
    try:
        d = make_berthd(config={"userns-remap": "default"}).start()
        assert "dockremap" in open("/etc/subuid").read()
        load_image(d, "bb", [], {})
        r = run(d, "run", "--rm", "bb", "sh", "-c", "cat /proc/self/uid_map")
        fields = r.stdout.split()
        assert fields[0] == "0" and int(fields[1]) >= 100000 and fields[2] == "65536", r.stdout
    finally:
        if not existed:
            subprocess.run(["userdel", "dockremap"], capture_output=True)


def test_a_bad_remap_setting_refuses_to_start(make_berthd):
    rc, out = make_berthd(config={"userns-remap": "no-such-user-xyz"}).run_to_exit()
    assert rc == 1 and "no such user" in out, out
    rc, out = make_berthd(config={"userns-remap": "bad name;rm"}).run_to_exit()
    assert rc == 1 and "invalid userns-remap" in out, out
