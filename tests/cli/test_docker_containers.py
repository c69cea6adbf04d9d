"""Containers on a real berthd with the real runtime (crun or runc under conmon), driven by the docker
CLI (and docker-py beside it). The image is made here from Debian's busybox-static."""

from __future__ import annotations

import os
import signal
import subprocess

import docker
import pytest

from tests.lib import rawhttp
from tests.lib.clis import docker_at as run
from tests.lib.images import busybox_rootfs_tar
from tests.lib.wait import stays, until


def test_run_rm_echo(bb):
    r = run(bb, "run", "--rm", "bb", "echo", "hi")
    assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
    assert run(bb, "ps", "-aq").stdout == ""  # --rm removed it


def test_exit_code_and_both_streams(bb):
    r = run(bb, "run", "--rm", "bb", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3 and r.stdout == "out\n" and r.stderr == "err\n"


def test_command_not_found_is_127_and_nothing_left(bb):
    r = run(bb, "run", "--rm", "bb", "nonexistent")
    assert r.returncode == 127
    assert 'exec: "nonexistent": executable file not found in $PATH' in r.stderr
    assert run(bb, "ps", "-aq").stdout == ""
    mounts = open("/proc/mounts").read()
    assert bb.root not in mounts


def test_detached_logs_stop_wait_rm(bb):
    cid = run(bb, "run", "-d", "--name", "ticker", "bb", "sh", "-c",
              "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    ps = run(bb, "ps", "--format", "{{.Names}} {{.State}}").stdout
    assert ps.strip() == "ticker running"
    logs = subprocess.run(["timeout", "1", "docker", "-H", bb.url, "logs", "-f", "ticker"], capture_output=True,
                          text=True).stdout
    assert logs.startswith("tick 0\ntick 1\n")
    assert run(bb, "stop", "-t", "1", "ticker").stdout.strip() == "ticker"  # sh ignores TERM: killed after 1 s
    assert run(bb, "wait", "ticker").stdout.strip() == "137"
    info = docker.APIClient(base_url=bb.url, version="1.47").inspect_container("ticker")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
    assert run(bb, "logs", "--tail", "1", "ticker").stdout.startswith("tick ")
    assert run(bb, "rm", "ticker").returncode == 0
    assert bb.root not in open("/proc/mounts").read()


def test_docker_py_run_logs_wait(bb):
    hc = docker.DockerClient(base_url=bb.url, version="1.47")
    out = hc.containers.run("bb", ["sh", "-c", "echo via docker-py; cat /etc/hostname"], remove=True)
    assert out.decode().startswith("via docker-py\n")
    ctr = hc.containers.run("bb", ["sh", "-c", "exit 7"], detach=True)
    assert ctr.wait()["StatusCode"] == 7
    ctr.remove()


def test_containers_survive_a_daemon_crash(make_berthd):
    d = make_berthd().start()
    assert rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    run(d, "run", "-d", "--name", "keeps", "bb", "sh", "-c",
        "i=0; while true; do echo n $i; i=$((i+1)); sleep 0.05; done")
    run(d, "run", "-d", "--name", "ends", "bb", "sh", "-c", "sleep 1; exit 42")
    ends = run(d, "inspect", "-f", "{{.Id}}", "ends").stdout.strip()
    d.signal(signal.SIGKILL)
    d.proc.wait()
    until(lambda: os.path.exists(os.path.join(d.root, "exec", "exits", ends)),
          "conmon to record the exit of a container that ended while berthd was down")
    d.start()
    assert "still running under conmon" in d.log()
    states = {line.split()[0]: line.split()[1] for line in
              run(d, "ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines()}
    assert states == {"keeps": "running", "ends": "exited"}
    assert run(d, "inspect", "-f", "{{.State.ExitCode}}", "ends").stdout.strip() == "42"
    numbers = [int(line.split()[1]) for line in run(d, "logs", "keeps").stdout.splitlines()]
    assert numbers == list(range(len(numbers))) and len(numbers) > 20  # no gap across the crash
    assert run(d, "stop", "-t", "0", "keeps").returncode == 0
    assert run(d, "inspect", "-f", "{{.State.Status}}", "keeps").stdout.strip() == "exited"
    assert not os.path.exists(os.path.join(d.root, "exec", "containers", "x"))


def test_stdin_with_half_close(bb):
    r = run(bb, "run", "-i", "--rm", "bb", "cat", input="data\n")
    assert r.returncode == 0 and r.stdout == "data\n", r.stderr
    big = "".join(f"{i}\n" for i in range(20000))  # many conmon messages (8 KiB each)
    r = run(bb, "run", "-i", "--rm", "bb", "sh", "-c", "cat | tail -n 1")
    r = run(bb, "run", "-i", "--rm", "bb", "cat", input=big)
    assert r.returncode == 0 and r.stdout == big
    r = run(bb, "run", "-i", "--rm", "bb", "cat", input="")
    assert r.returncode == 0 and r.stdout == ""


def test_binds_tmpfs_and_their_errors(bb, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("from the host\n")
    r = run(bb, "run", "--rm", "-v", f"{host}:/data:ro", "bb", "sh", "-c", "cat /data/f; echo x > /data/g")
    assert r.stdout == "from the host\n" and "Read-only file system" in r.stderr and r.returncode != 0
    r = run(bb, "run", "--rm", "-v", f"{host}:/data", "bb", "sh", "-c", "echo written > /data/g")
    assert r.returncode == 0 and (host / "g").read_text() == "written\n"
    missing = tmp_path / "missing"
    r = run(bb, "run", "--rm", "--mount", f"type=bind,source={missing},target=/x", "bb", "true")
    assert r.returncode == 125 and "bind source path does not exist" in r.stderr
    r = run(bb, "run", "--rm", "-v", f"{missing}:/x", "bb", "true")  # -v creates it, as dockerd does
    assert r.returncode == 0 and missing.is_dir()
    r = run(bb, "run", "--rm", "--tmpfs", "/scratch:size=1m", "bb", "cat", "/proc/mounts")
    assert any(" /scratch tmpfs " in line and "size=1024k" in line for line in r.stdout.splitlines()), r.stdout


def test_memory_limit_oom_is_137_and_reported(bb):
    r = run(bb, "run", "-m", "16m", "--name", "hog", "bb", "sh", "-c", 'x=a; while true; do x="$x$x"; done')
    assert r.returncode == 137
    assert run(bb, "inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog").stdout.split() == ["true", "137"]
    r = run(bb, "run", "--rm", "-m", "1m", "bb", "true")
    assert r.returncode == 125 and "Minimum memory limit allowed is 6MB" in r.stderr


def test_cpu_and_pids_limits_reach_the_cgroup(bb):
    r = run(bb, "run", "--rm", "--cpus", "0.5", "--pids-limit", "50", "bb", "sh", "-c",
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || "
            "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "50" and r.stdout.split()[1] in ("50000", "50000 100000")


def test_exec(bb):
    assert run(bb, "run", "-d", "--name", "svc", "bb", "sh", "-c", "while true; do sleep 1; done").returncode == 0
    r = run(bb, "exec", "svc", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
    r = run(bb, "exec", "-i", "-e", "X=1", "-w", "/etc", "svc", "sh", "-c", 'echo "$X $(cat)"; cat passwd',
            input="from stdin")
    assert r.returncode == 0 and r.stdout.startswith("1 from stdin\nroot:"), r.stderr
    r = run(bb, "exec", "svc", "nonexistent")
    assert r.returncode == 126  # dockerd's exec code when the command cannot run (run says 127)
    c = docker.APIClient(base_url=bb.url, version="1.47")
    ex = c.exec_create("svc", ["sh", "-c", "exit 3"])
    c.exec_start(ex["Id"])
    info = c.exec_inspect(ex["Id"])
    assert info["ExitCode"] == 3 and not info["Running"]
    with pytest.raises(docker.errors.NotFound):
        c.exec_inspect("nosuchexec")
    run(bb, "stop", "-t", "0", "svc")
    r = run(bb, "exec", "svc", "true")
    assert r.returncode != 0 and "is not running" in r.stderr


def test_restart_policies(bb):
    run(bb, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "bb", "sh", "-c", "echo attempt; exit 1")

    def settled() -> str:
        out = run(bb, "inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "flaky").stdout.strip()
        return out if out == "2 exited 1" else ""

    assert until(settled, "two restarts, then exited") == "2 exited 1"
    assert run(bb, "logs", "flaky").stdout == "attempt\n" * 3
    run(bb, "run", "-d", "--name", "forever", "--restart", "always", "bb", "sh", "-c", "sleep 0.1")
    assert until(lambda: int(run(bb, "inspect", "-f", "{{.RestartCount}}", "forever").stdout) >= 2, "two restarts")
    assert run(bb, "stop", "-t", "0", "forever").returncode == 0
    stays(lambda: run(bb, "inspect", "-f", "{{.State.Status}}", "forever").stdout.strip() == "exited",
          "a stopped container with --restart always stays stopped", seconds=0.5)
    r = rawhttp.request(bb.sock, "POST", "/containers/create", body=b'{"Image": "bb", "Cmd": ["true"], '
                        b'"HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}}',
                        headers={"Content-Type": "application/json"})
    assert r.status == 400 and "only be used with 'on-failure'" in r.json()["message"]


def test_restart_policy_applies_after_a_daemon_crash(make_berthd):
    d = make_berthd().start()
    assert rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb", body=busybox_rootfs_tar()).status == 200
    run(d, "run", "-d", "--name", "svc", "--restart", "unless-stopped", "bb", "sh", "-c", "sleep 1; exit 3")
    svc = run(d, "inspect", "-f", "{{.Id}}", "svc").stdout.strip()
    d.signal(signal.SIGKILL)
    d.proc.wait()
    until(lambda: os.path.exists(os.path.join(d.root, "exec", "exits", svc)),
          "conmon to record the exit of a container that ended while berthd was down")
    d.start()
    assert until(lambda: int(run(d, "inspect", "-f", "{{.RestartCount}}", "svc").stdout or 0) >= 1, "a restart")
    assert run(d, "stop", "-t", "0", "svc").returncode == 0


def test_tty_under_a_pty(bb):
    """docker run -t / -it, with the docker CLI itself under a pseudo-terminal (script(1))."""
    import shutil

    if not shutil.which("script"):
        pytest.skip("script(1) is not installed (util-linux)")
    r = subprocess.run(["script", "-qec", f"docker -H {bb.url} run --rm -t bb sh -c 'ls -l /proc/self/fd/1; exit 6'",
                        "/dev/null"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 6 and "/dev/pts/" in r.stdout, r.stdout
    typed = subprocess.Popen(["sh", "-c", "sleep 1; printf 'echo typed-$((40+2))\\nexit 2\\n'"], stdout=subprocess.PIPE)
    r = subprocess.run(["script", "-qec", f"docker -H {bb.url} run --rm -it bb sh", "/dev/null"],
                       stdin=typed.stdout, capture_output=True, text=True, timeout=60)
    typed.wait()
    assert r.returncode == 2 and "typed-42" in r.stdout, r.stdout


def test_pause_unpause_rename_top(bb):
    run(bb, "run", "-d", "--name", "p1", "bb", "sh", "-c", "while true; do sleep 0.1; done")
    assert run(bb, "pause", "p1").returncode == 0
    assert run(bb, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "p1").stdout.split() == ["paused", "true"]
    r = run(bb, "pause", "p1")
    assert r.returncode != 0 and "is already paused" in r.stderr
    assert run(bb, "unpause", "p1").returncode == 0
    assert run(bb, "inspect", "-f", "{{.State.Status}}", "p1").stdout.strip() == "running"
    assert run(bb, "rename", "p1", "p2").returncode == 0
    assert run(bb, "ps", "--format", "{{.Names}}").stdout.strip() == "p2"
    top = run(bb, "top", "p2")
    assert top.returncode == 0 and "PID" in top.stdout.splitlines()[0] and "while true" in top.stdout
    run(bb, "run", "-d", "--name", "other", "bb", "sleep", "30")
    r = run(bb, "rename", "other", "p2")
    assert r.returncode != 0 and "is already in use" in r.stderr


def _status_field(bb, key: str, *args: str) -> str:  # type: ignore[no-untyped-def]
    r = run(bb, "run", "--rm", *args, "bb", "sh", "-c", f"while read k v; do [ \"$k\" = \"{key}:\" ] && echo $v; done "
                                                    "< /proc/self/status; true")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_capabilities_and_security_options(bb):
    assert _status_field(bb, "CapEff") == "00000000a80425fb"  # Docker's default set, bit for bit
    assert _status_field(bb, "CapEff", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN") == "0000000000001000"
    assert _status_field(bb, "CapEff", "--privileged") == open("/proc/self/status").read().split("CapBnd:")[1].split()[0]
    assert _status_field(bb, "NoNewPrivs", "--security-opt", "no-new-privileges") == "1"
    r = run(bb, "run", "--rm", "--cap-add", "NOT_A_CAP", "bb", "true")
    assert r.returncode == 125 and "unknown capability" in r.stderr


def test_init_ulimits_sysctls_shm_devices(bb):
    r = run(bb, "run", "--rm", "--init", "bb", "cat", "/proc/1/cmdline")
    assert r.stdout.split("\0")[:3] == ["/sbin/docker-init", "--", "cat"]
    r = run(bb, "run", "--rm", "--ulimit", "nofile=100:200", "bb", "sh", "-c", "ulimit -n; ulimit -Hn")
    assert r.stdout.split() == ["100", "200"]
    r = run(bb, "run", "--rm", "--ulimit", "nofile=100:1000000", "bb", "true")
    assert r.returncode == 125 and "above berthd's own open-files limit" in r.stderr
    r = run(bb, "run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "bb", "cat", "/proc/sys/net/ipv4/ip_forward")
    assert r.stdout.strip() == "1"
    r = run(bb, "run", "--rm", "--shm-size", "2m", "bb", "cat", "/proc/mounts")
    assert any(" /dev/shm " in line and "size=2048k" in line for line in r.stdout.splitlines())
    r = run(bb, "run", "--rm", "--device", "/dev/null:/dev/xnull", "bb", "sh", "-c", "echo x > /dev/xnull && echo ok")
    assert r.stdout.strip() == "ok", r.stderr


def test_volumes_named_anonymous_copy_up_and_removal(berthd):
    rootfs = busybox_rootfs_tar(extra={"data/seed": b"from the image\n"})
    r = rawhttp.request(berthd.sock, "POST", "/images/create?fromSrc=-&repo=vb&changes=VOLUME%20%2Fdata", body=rootfs)
    assert r.status == 200, r.body
    d = berthd
    assert run(d, "volume", "create", "v1").stdout.strip() == "v1"
    r = run(d, "run", "--rm", "-v", "v1:/data", "vb", "sh", "-c", "cat /data/seed; echo kept > /data/new")
    assert r.stdout == "from the image\n", r.stderr  # copied up into the new volume
    assert run(d, "run", "--rm", "-v", "v1:/data:ro", "vb", "cat", "/data/new").stdout == "kept\n"
    run(d, "run", "--name", "anon", "vb", "true")  # VOLUME /data: an anonymous volume
    mounts = docker.APIClient(base_url=d.url, version="1.47").inspect_container("anon")["Mounts"]
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")]
    anon = mounts[0]["Name"]
    assert anon in run(d, "volume", "ls", "-q").stdout.split()
    assert run(d, "rm", "-v", "anon").returncode == 0
    assert anon not in run(d, "volume", "ls", "-q").stdout.split()
    run(d, "run", "-d", "--name", "user", "-v", "v1:/x", "vb", "sleep", "30")
    r = run(d, "volume", "rm", "v1")
    assert r.returncode != 0 and "volume is in use" in r.stderr
    run(d, "rm", "-f", "user")
    assert run(d, "volume", "rm", "v1").returncode == 0
    r = rawhttp.request(d.sock, "GET", "/volumes/v1")
    assert r.status == 404 and r.json()["message"] == "get v1: no such volume"
    r = rawhttp.request(d.sock, "POST", "/volumes/create", body=b'{"Name": "bad/name"}')
    assert r.status == 400 and "invalid characters" in r.json()["message"]


def test_cp_both_ways_inside_the_root(bb, tmp_path):
    assert run(bb, "run", "-d", "--name", "cpt", "bb", "sleep", "60").returncode == 0
    out = tmp_path / "passwd"
    assert run(bb, "cp", "cpt:/etc/passwd", str(out)).returncode == 0
    assert out.read_text().startswith("root:x:0:0")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "f").write_text("deep\n")
    assert run(bb, "cp", str(tmp_path / "tree"), "cpt:/tmp/").returncode == 0
    assert run(bb, "exec", "cpt", "cat", "/tmp/tree/sub/f").stdout == "deep\n"
    assert run(bb, "cp", "cpt:/tmp/tree", str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back" / "sub" / "f").read_text() == "deep\n"
    r = run(bb, "cp", "cpt:/nonexistent", str(tmp_path / "x"))
    assert r.returncode != 0 and "Could not find the file /nonexistent in container cpt" in r.stderr
    # a symlink to an absolute path resolves inside the container, never on the host
    run(bb, "exec", "cpt", "sh", "-c", "mkdir /fake && echo not-host > /fake/hostname && ln -s /fake /escape")
    assert run(bb, "cp", "cpt:/escape/hostname", str(tmp_path / "h")).returncode == 0
    assert (tmp_path / "h").read_text() == "not-host\n"
    run(bb, "stop", "-t", "0", "cpt")
    assert run(bb, "cp", "cpt:/tmp/tree/sub/f", str(tmp_path / "from-stopped")).returncode == 0
    assert (tmp_path / "from-stopped").read_text() == "deep\n"
    # the stopped container's own rootfs is unmounted just after `stop` answers; cp's mount is gone at once
    assert until(lambda: bb.root not in open("/proc/mounts").read(), "the rootfs unmounted")


def test_export_diff_update(bb, tmp_path):
    import tarfile

    assert run(bb, "run", "-d", "--name", "ex", "bb", "sh", "-c",
               "echo new > /tmp/new; echo changed > /etc/passwd; rm /etc/greeting; sleep 60").returncode == 0
    assert until(lambda: "A /tmp/new" in run(bb, "diff", "ex").stdout, "the new file in diff")
    assert run(bb, "diff", "ex").stdout.splitlines() == ["C /etc", "D /etc/greeting", "C /etc/passwd", "C /tmp",
                                                         "A /tmp/new"]
    assert run(bb, "update", "--memory", "64m", "--memory-swap", "128m", "ex").returncode == 0
    assert run(bb, "inspect", "-f", "{{.HostConfig.Memory}}", "ex").stdout.strip() == str(64 << 20)
    run(bb, "stop", "-t", "0", "ex")
    out = tmp_path / "ex.tar"
    assert run(bb, "export", "-o", str(out), "ex").returncode == 0
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert "tmp/new" in names and "bin/busybox" in names and "etc/greeting" not in names
        assert tf.extractfile("tmp/new").read() == b"new\n"
    assert until(lambda: bb.root not in open("/proc/mounts").read(), "the rootfs unmounted")  # just after `stop` answers


def test_stats_from_the_cgroups(bb):
    run(bb, "run", "-d", "--name", "st", "-m", "64m", "bb", "sh", "-c", "while true; do :; done")
    r = run(bb, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}} {{.CPUPerc}}", "st")
    name, usage, _slash, limit, pids, cpu = r.stdout.split()
    assert (name, limit, pids) == ("st", "64MiB", "1"), r.stdout
    assert float(cpu.rstrip("%")) > 10  # a busy loop
    c = docker.APIClient(base_url=bb.url, version="1.47")
    one = c.stats("st", stream=False, one_shot=True)
    assert one["memory_stats"]["limit"] == 64 << 20 and one["pids_stats"]["current"] == 1


def test_info_counts_and_system_df(bb):
    run(bb, "run", "-d", "--name", "up", "bb", "sleep", "60")
    run(bb, "run", "--name", "down", "-v", "dfvol:/v", "bb", "sh", "-c", "echo 12345 > /v/f")
    info = docker.APIClient(base_url=bb.url, version="1.47").info()
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"], info["Images"]) == (2, 1, 1, 1)
    df = docker.APIClient(base_url=bb.url, version="1.47").df()
    assert sorted(c["Names"][0] for c in df["Containers"]) == ["/down", "/up"]
    vol = [v for v in df["Volumes"] if v["Name"] == "dfvol"][0]
    assert vol["UsageData"] == {"Size": 6, "RefCount": 1}
    assert "TYPE" in run(bb, "system", "df").stdout


def test_healthcheck(bb):
    import time

    t0 = time.time()
    run(bb, "run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
        "--health-retries", "2", "bb", "sh", "-c", "touch /tmp/ok; sleep 60")

    def health() -> str:
        return run(bb, "inspect", "-f", "{{.State.Health.Status}}", "hc").stdout.strip()

    assert until(lambda: health() == "healthy", "healthy")
    assert "(healthy)" in run(bb, "ps", "--format", "{{.Status}}").stdout
    run(bb, "exec", "hc", "rm", "/tmp/ok")
    assert until(lambda: health() == "unhealthy", "unhealthy")
    c = docker.APIClient(base_url=bb.url, version="1.47")
    log = c.inspect_container("hc")["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 1 and len(log) <= 5
    events = [e["Action"] for e in c.events(since=t0, until=time.time(), decode=True,
                                            filters={"type": ["container"], "container": ["hc"]})]
    assert "health_status: healthy" in events and "health_status: unhealthy" in events


def test_default_seccomp_profile(bb):
    script = "grep Seccomp: /proc/self/status; unshare -U echo made-a-user-namespace"
    r = run(bb, "run", "--rm", "bb", "sh", "-c", script)
    assert r.stdout.split()[:2] == ["Seccomp:", "2"] and "made-a-user-namespace" not in r.stdout
    assert "Operation not permitted" in r.stderr
    r = run(bb, "run", "--rm", "--security-opt", "seccomp=unconfined", "bb", "sh", "-c", script)
    assert r.stdout.split()[:2] == ["Seccomp:", "0"] and "made-a-user-namespace" in r.stdout
    r = run(bb, "run", "--rm", "--cap-add", "SYS_ADMIN", "bb", "sh", "-c", script)
    assert "made-a-user-namespace" in r.stdout  # the capability lifts the refusal, as in Docker's profile


def test_log_rotation_and_the_none_driver(bb):
    import os

    script = "i=0; while [ $i -lt 2000 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done; sleep 60"
    run(bb, "run", "-d", "--name", "rot", "--log-opt", "max-size=10k", "--log-opt", "max-file=2", "bb", "sh", "-c", script)
    info = docker.APIClient(base_url=bb.url, version="1.47").inspect_container("rot")
    path = info["LogPath"]
    assert until(lambda: os.path.exists(path + ".1"), "the log rotated by berthd")
    total = sum(os.path.getsize(p) for p in (path, path + ".1") if os.path.exists(p))
    assert total <= 2 * 10_000 + 4096 and not os.path.exists(path + ".2")  # bounded like max-size x max-file
    lines = run(bb, "logs", "rot").stdout.splitlines()
    assert lines and lines[-1] == "line-1999-padding-padding-padding"
    numbers = [int(x.split("-")[1]) for x in lines]
    assert numbers == sorted(numbers)  # oldest first, across files
    r = run(bb, "run", "--rm", "--log-driver", "none", "bb", "echo", "attached")
    assert r.stdout == "attached\n"  # attach still streams
    run(bb, "run", "-d", "--name", "nolog", "--log-driver", "none", "bb", "echo", "x")
    r = run(bb, "logs", "nolog")
    assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr
    r = run(bb, "run", "--rm", "--log-opt", "max-size=abc", "bb", "true")
    assert r.returncode == 125 and "invalid value for log opt max-size" in r.stderr


def test_exec_it_under_a_pty(bb):
    import shutil

    if not shutil.which("script"):
        pytest.skip("script(1) is not installed (util-linux)")
    assert run(bb, "run", "-d", "--name", "tx", "bb", "sleep", "60").returncode == 0
    typed = subprocess.Popen(["sh", "-c", "sleep 1; printf 'echo typed-$((40+2))\\nexit 3\\n'"], stdout=subprocess.PIPE)
    r = subprocess.run(["script", "-qec", f"docker -H {bb.url} exec -it tx sh", "/dev/null"], stdin=typed.stdout,
                       capture_output=True, text=True, timeout=60)
    typed.wait()
    assert r.returncode == 3 and "typed-42" in r.stdout, r.stdout


def test_exec_t_gets_a_terminal_of_the_containers_own_devpts(bb):
    import shutil

    if not shutil.which("script"):
        pytest.skip("script(1) is not installed (util-linux)")
    info = docker.APIClient(base_url=bb.url, version="1.47").version()
    if not any(c.get("Name") == "crun" for c in info.get("Components") or []):
        pytest.skip("crun is not the runtime here: with runc the exec's pty is opened on the host's devpts")
    assert run(bb, "run", "-d", "--name", "tt", "bb", "sleep", "60").returncode == 0
    r = subprocess.run(["script", "-qec", f"docker -H {bb.url} exec -t tt sh -c 'tty; exit 4'", "/dev/null"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "/dev/pts/0" in r.stdout, r.stdout
    r = subprocess.run(["script", "-qec", f"docker -H {bb.url} exec -t tt nosuchcmd", "/dev/null"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert r.returncode == 126 and "nosuchcmd" in r.stdout  # as dockerd (and without -t)
    leftovers = [n for n in os.listdir(os.path.join(bb.root, "exec", "containers")) for f in
                 os.listdir(os.path.join(bb.root, "exec", "containers", n, "run")) if f.startswith("exec-")]
    assert leftovers == []
