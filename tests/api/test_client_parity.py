"""What real clients rely on (issue #10, found with docker-py's own integration suite): each test does
what docker-py or the docker CLI does and checks what dockerd answers."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time

import docker
import pytest

from tests.lib import rawhttp
from tests.lib.clis import docker_at as run
from tests.lib.daemon import Berthd
from tests.lib.images import busybox_rootfs_tar
from tests.lib.wait import until

CMD = "sh -c 'echo hello out; echo hello err >&2'"


def api(d: Berthd) -> docker.APIClient:
    return docker.APIClient(base_url=d.url, version="1.47", timeout=60)


def _top(c: docker.APIClient, **kw: object) -> str:
    cid = c.create_container("bb", ["sh", "-c", "while true; do sleep 1; done"], **kw)["Id"]
    c.start(cid)
    return str(cid)


# ---- exec and attach ------------------------------------------------------------------------------

def test_exec_with_a_tty_started_without_one_is_framed_and_complete(bb):
    """docker-py's exec_run(tty=True) starts with Tty true; a plain exec_start after a TTY exec_create
    says Tty false and reads frames: dockerd frames by the start request, and no byte is lost."""
    c = api(bb)
    cid = _top(c)
    ex = c.exec_create(cid, CMD, tty=True)
    assert c.exec_start(ex["Id"]) == b"hello out\r\nhello err\r\n"  # parsed as multiplexed frames
    ex = c.exec_create(cid, CMD, tty=True)
    assert c.exec_start(ex["Id"], tty=True) == b"hello out\r\nhello err\r\n"  # raw
    out = docker.DockerClient(base_url=bb.url, version="1.47").containers.get(cid).exec_run(CMD, tty=True)
    assert out.exit_code == 0 and out.output == b"hello out\r\nhello err\r\n"
    # the upgrade answer names the framing it will use
    ex = c.exec_create(cid, "true", tty=True)
    r = rawhttp.request(bb.sock, "POST", f"/exec/{ex['Id']}/start", body=b'{"Tty": false}',
                        headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert r.status == 101 and r.headers["content-type"] == "application/vnd.docker.multiplexed-stream"


def test_sigkill_is_answered_once_the_exit_is_recorded(bb):
    c = api(bb)
    for _ in range(3):
        cid = _top(c)
        c.kill(cid)
        state = c.inspect_container(cid)["State"]  # at once: no polling
        assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 137)


def _attach(d: Berthd, cid: str, query: str = "") -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(f"POST /v1.47/containers/{cid}/attach?stdin=1&stdout=1&stream=1{query} HTTP/1.1\r\nHost: x\r\n"
              "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _closed(s: socket.socket, timeout: float = 10) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except (TimeoutError, OSError):
        return False


def test_detach_keys_end_an_attach_and_leave_the_container_running(bb):
    c = api(bb)
    cid = c.create_container("bb", "cat", stdin_open=True, tty=True)["Id"]
    c.start(cid)
    s = _attach(bb, cid)
    s.sendall(b"echo\n")  # cat echoes it (the terminal too): the session is live
    s.settimeout(10)
    assert b"echo" in s.recv(100)
    s.sendall(b"\x10")  # ctrl-p alone is held back, then passed on with what follows
    s.sendall(b"x\x10\x11")  # ... and ctrl-p ctrl-q detach
    assert _closed(s)
    s.close()
    assert c.inspect_container(cid)["State"]["Running"] is True
    # the client's own keys (docker-py sends its config.json's detachKeys as the query)
    s = _attach(bb, cid, "&detachKeys=ctrl-x")
    s.sendall(b"\x10\x11")
    assert not _closed(s, 0.5)  # not the keys asked for
    s.sendall(b"\x18")
    assert _closed(s)
    s.close()
    assert c.inspect_container(cid)["State"]["Running"] is True
    r = rawhttp.request(bb.sock, "POST", f"/containers/{cid}/attach?stdin=1&stream=1&detachKeys=ctrl-1",
                        headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert r.status == 400 and r.json()["message"] == "Invalid detach keys (ctrl-1) provided"


def test_detach_keys_end_an_exec_session_and_the_process_goes_on(bb):
    c = api(bb)
    cid = _top(c)
    ex = c.exec_create(cid, "cat", stdin=True, tty=True, detach_keys="ctrl-a,a")["Id"]
    assert c.exec_inspect(ex)["DetachKeys"] == base64.b64encode(b"\x01a").decode()
    s = c.exec_start(ex, socket=True, tty=True)._sock
    s.sendall(b"hi\n")
    s.settimeout(10)
    got = b""
    while got.count(b"hi") < 2:
        got += s.recv(100)
    s.sendall(b"\x01a")
    assert _closed(s)
    assert c.exec_inspect(ex)["Running"] is True
    with pytest.raises(docker.errors.APIError) as err:
        c.exec_create(cid, "cat", stdin=True, tty=True, detach_keys="ctrl-1")
    assert err.value.status_code == 400 and "Invalid escape keys (ctrl-1) provided" in str(err.value)


def test_privileged_exec_has_every_capability(bb):
    c = api(bb)
    cid = _top(c)

    def capeff(**kw: object) -> int:
        ex = c.exec_create(cid, ["sh", "-c", "grep CapEff /proc/self/status"], **kw)
        return int(c.exec_start(ex["Id"]).split()[-1], 16)

    plain, privileged = capeff(), capeff(privileged=True)
    assert plain & (1 << 21) == 0 and privileged & (1 << 21)  # CAP_SYS_ADMIN
    assert bin(privileged).count("1") > bin(plain).count("1") + 20
    assert c.exec_inspect(c.exec_create(cid, "true", privileged=True)["Id"])["ProcessConfig"]["privileged"]


# ---- routes and fields clients read ------------------------------------------------------------------

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
                 "this node to swarm and try again.")


@pytest.mark.parametrize("method,path", [
    ("GET", "/swarm"), ("GET", "/nodes"), ("GET", "/services"), ("GET", "/tasks"), ("GET", "/secrets"),
    ("GET", "/configs"), ("POST", "/services/create"), ("GET", "/services/x/logs"), ("GET", "/swarm/unlockkey"),
    ("DELETE", "/secrets/abc"), ("POST", "/nodes/abc/update"), ("GET", "/v1.41/tasks/abc"),
])
def test_swarm_routes_answer_as_dockerd_off_swarm(berthd, method, path):
    r = rawhttp.request(berthd.sock, method, path, body=b"{}" if method == "POST" else b"")
    assert (r.status, r.json()) == (503, {"message": NOT_A_MANAGER})


def test_swarm_leave_plugins_and_the_clients(berthd):
    r = rawhttp.request(berthd.sock, "POST", "/swarm/leave?force=1")
    assert (r.status, r.json()["message"]) == (503, "This node is not part of a swarm")
    c = api(berthd)
    assert c.leave_swarm(force=True) is True  # docker-py's test teardown
    assert c.plugins() == []
    r = rawhttp.request(berthd.sock, "GET", "/plugins/vieux/sshfs:latest/json")
    assert (r.status, r.json()["message"]) == (404, 'plugin "vieux/sshfs:latest" not found')
    r = rawhttp.request(berthd.sock, "POST", "/swarm/init", body=b"{}")
    assert r.status == 501 and "swarm mode" in r.json()["message"]
    out = run(berthd, "node", "ls")
    assert out.returncode == 1 and NOT_A_MANAGER in out.stderr
    assert "This node is not part of a swarm" in run(berthd, "swarm", "leave", "--force").stderr
    assert run(berthd, "plugin", "ls", "-q").stdout == ""
    info = c.info()
    assert info["Swarm"]["LocalNodeState"] == "inactive" and info["Swarm"]["ControlAvailable"] is False


def test_version_and_inspect_fields_clients_read(bb):
    c = api(bb)
    v = c.version()
    assert v["GoVersion"].startswith("python3")
    cid = c.create_container("bb", "true")["Id"]
    assert c.inspect_container(cid)["HostConfig"]["Runtime"] in ("crun", "runc")


def test_percent_encoded_names_are_decoded_as_go_does(bb):
    c = api(bb)
    cid = c.create_container("bb", "true", name="pc-name")["Id"]
    r = rawhttp.request(bb.sock, "GET", "/containers/pc%2Dname/json")
    assert r.status == 200 and r.json()["Id"] == cid
    assert rawhttp.request(bb.sock, "GET", "/containers/pc+name/json").status == 404  # + is not a space
    assert rawhttp.request(bb.sock, "GET", "/containers/pc%ffname/json").status == 400


def test_inspect_mounts_lists_binds_beside_the_config_volumes(bb, tmp_path):
    c = api(bb)
    src = str(tmp_path)
    cid = c.create_container("bb", "true", volumes={"/mnt": {}}, host_config=c.create_host_config(
        binds={src: {"bind": "/mnt", "mode": "rw,rshared"}, f"{src}/": {"bind": "/ro", "mode": "ro"}},
        mounts=[docker.types.Mount("/m", src, type="bind", read_only=True),
                docker.types.Mount("/t", "", type="tmpfs")]))["Id"]
    mounts = {m["Destination"]: m for m in c.inspect_container(cid)["Mounts"]}
    assert set(mounts) == {"/mnt", "/ro", "/m", "/t"}  # no anonymous volume over the bind at /mnt
    assert (mounts["/mnt"]["Type"], mounts["/mnt"]["Source"], mounts["/mnt"]["RW"],
            mounts["/mnt"]["Propagation"]) == ("bind", src, True, "rshared")
    assert (mounts["/ro"]["RW"], mounts["/ro"]["Propagation"], mounts["/ro"]["Mode"]) == (False, "rprivate", "ro")
    assert (mounts["/m"]["Type"], mounts["/m"]["RW"]) == ("bind", False)
    assert mounts["/t"]["Type"] == "tmpfs"


def test_rmi_force(bb):
    c = api(bb)
    image = c.inspect_image("bb")["Id"]
    c.tag("bb", "other", "1")
    assert c.remove_image("other:1", force=True) == [{"Untagged": "other:1"}]  # the other name stays
    assert c.inspect_image("bb")["Id"] == image
    cid = c.create_container("bb", ["cat", "/etc/greeting"])["Id"]
    assert c.remove_image("bb", force=True) == [{"Untagged": "bb:latest"}]  # a container uses it: kept, dangling
    assert c.inspect_image(image)["RepoTags"] == []
    c.start(cid)
    assert c.wait(cid)["StatusCode"] == 0 and c.logs(cid) == b"hello\n"
    c.remove_container(cid)
    out = c.remove_image(image, force=True)
    assert {"Deleted": image} in out


# ---- commit -------------------------------------------------------------------------------------------

def test_commit_with_changes_whiteouts_and_parent(bb):
    c = api(bb)
    cid = c.create_container("bb", ["sh", "-c", "echo hi > /test; rm /etc/greeting; mkdir -p /d/e; touch /d/e/f"])["Id"]
    c.start(cid)
    assert c.wait(cid)["StatusCode"] == 0
    res = c.commit(cid, repository="snap", tag="v1", message="a message", author="me <me@x>",
                   changes=["EXPOSE 8000", 'CMD ["cat", "/test"]', "ENV A=1"])
    img = c.inspect_image("snap:v1")
    assert img["Id"] == res["Id"] and img["Parent"] == c.inspect_image("bb")["Id"]
    assert (img["Comment"], img["Author"]) == ("a message", "me <me@x>")
    assert img["Config"]["Cmd"] == ["cat", "/test"] and "8000/tcp" in img["Config"]["ExposedPorts"]
    assert "A=1" in img["Config"]["Env"]
    assert len(img["RootFS"]["Layers"]) == len(c.inspect_image("bb")["RootFS"]["Layers"]) + 1
    assert c.history("snap:v1")[0]["Comment"] == "a message"
    r = run(bb, "run", "--rm", "snap:v1")
    assert r.stdout == "hi\n", r.stderr
    r = run(bb, "run", "--rm", "snap:v1", "sh", "-c", "ls /d/e; cat /etc/greeting")
    assert r.stdout == "f\n" and "No such file" in r.stderr  # the deletion is in the layer as a whiteout
    with pytest.raises(docker.errors.APIError) as err:
        c.commit(cid, changes=["FROB x"])
    assert err.value.status_code == 400
    assert run(bb, "commit", cid, "Bad Name").returncode != 0


def test_commit_of_a_running_container_pauses_it_meanwhile(bb):
    c = api(bb)
    cid = c.create_container("bb", ["sh", "-c", "echo run > /r; while true; do sleep 1; done"])["Id"]
    c.start(cid)
    r = run(bb, "exec", cid, "cat", "/r")
    assert r.stdout == "run\n"
    listeners = c.info()["NEventsListener"]
    events = subprocess.Popen(["docker", "-H", bb.url, "events", "--format", "{{.Action}}",
                               "--filter", f"container={cid}"], stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(line.strip() for line in events.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        until(lambda: c.info()["NEventsListener"] > listeners, "docker events to be listening")
        image = c.commit(cid)["Id"]
        state = c.inspect_container(cid)["State"]
        assert state["Running"] and not state["Paused"]
        out = run(bb, "run", "--rm", image, "cat", "/r")
        assert out.stdout == "run\n"
        until(lambda: "commit" in seen, "the commit event")
    finally:
        events.terminate()
        events.wait(timeout=10)
        reader.join(timeout=10)
    no_pause = c.commit(cid, pause=False)["Id"]
    assert no_pause.startswith("sha256:")


# ---- log drivers ---------------------------------------------------------------------------------------

def test_log_driver_errors_are_dockerds(bb):
    c = api(bb)
    for cfg, status, words in (
            ({"Type": "asdf"}, 400, "logger: no log driver named 'asdf' is registered"),
            ({"Type": "gelf"}, 501, "log driver 'gelf' is not supported by berth"),
            ({"Type": "syslog", "Config": {"syslog-address": "http://x"}}, 400, "unsupported scheme: 'http'"),
            ({"Type": "syslog", "Config": {"syslog-facility": "nope"}}, 400, "invalid syslog facility"),
            ({"Type": "syslog", "Config": {"syslog-format": "x"}}, 400, "Invalid syslog format"),
            ({"Type": "local", "Config": {"labels": "a"}}, 400, "unknown log opt 'labels' for local log driver"),
            ({"Type": "journald", "Config": {"tag": "{{.Nope}}"}}, 400, "can't evaluate field Nope")):
        r = rawhttp.request(bb.sock, "POST", "/containers/create",
                            body=json.dumps({"Image": "bb", "HostConfig": {"LogConfig": cfg}}).encode())
        assert r.status == status and words in r.json()["message"], (cfg, r.status, r.body)
    assert set(c.info()["Plugins"]["Log"]) >= {"json-file", "local", "journald", "syslog"}


def test_local_driver_keeps_readable_logs_with_its_defaults(bb):
    r = run(bb, "run", "--name", "loc", "--log-driver", "local", "bb", "sh", "-c", "echo one; echo two >&2")
    assert r.returncode == 0
    assert run(bb, "logs", "loc").stdout == "one\n"
    assert run(bb, "logs", "loc").stderr == "two\n"
    lc = api(bb).inspect_container("loc")["HostConfig"]["LogConfig"]
    assert lc == {"Type": "local", "Config": {}}


def test_syslog_over_unixgram_udp_and_tcp(bb, tmp_path):
    path = str(tmp_path / "log.sock")
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(path)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    for s in (dgram, udp, tcp):
        s.settimeout(20)
    script = "echo out line; echo; echo err line >&2"
    r = run(bb, "run", "--name", "sl1", "--log-driver", "syslog", "--log-opt", f"syslog-address=unixgram://{path}",
            "bb", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    got = [dgram.recv(4096) for _ in range(2)]  # the empty line is not sent (dockerd's driver skips it)
    cid = api(bb).inspect_container("sl1")["Id"]
    assert got[0].startswith(b"<30>") and got[0].endswith(f" {cid[:12]}[".encode() + got[0].split(b"[")[1])
    assert got[0].endswith(b"]: out line\n") and got[1].startswith(b"<27>") and got[1].endswith(b"]: err line\n")
    r = run(bb, "logs", "sl1")
    assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr
    port = udp.getsockname()[1]
    r = run(bb, "run", "--rm", "--name", "sl2", "--log-driver", "syslog", "--log-opt",
            f"syslog-address=udp://127.0.0.1:{port}", "--log-opt", "syslog-format=rfc5424micro", "--log-opt",
            "syslog-facility=local3", "--log-opt", "tag={{.Name}}/{{.ImageName}}", "bb", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    first = udp.recv(4096).decode()
    assert re.fullmatch(r"<158>1 \S+\.\d{6}(Z|[+-]\d\d:\d\d) \S+ sl2/bb \d+ sl2/bb - out line\n", first), first
    port = tcp.getsockname()[1]
    r = run(bb, "run", "--rm", "--log-driver", "syslog", "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}",
            "--log-opt", "syslog-format=rfc3164", "bb", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    conn, _ = tcp.accept()
    conn.settimeout(20)
    data = b""
    while data.count(b"\n") < 2:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.close()
    lines = data.decode().splitlines()
    assert lines[0].startswith("<30>") and lines[0].endswith("]: out line") and lines[1].endswith("]: err line")
    assert socket.gethostname() in lines[0]
    for s in (dgram, udp, tcp):
        s.close()
    # a target that cannot be reached fails the start, as dockerd's does
    os.unlink(path)
    open(path, "w").close()
    r = run(bb, "run", "--rm", "--log-driver", "syslog", "--log-opt", f"syslog-address=unix://{path}", "bb", "true")
    assert r.returncode != 0 and "failed to initialize logging driver" in r.stderr


@pytest.fixture
def journald():  # type: ignore[no-untyped-def]
    """A systemd-journald of the test's own, in a private mount namespace (tmpfs over /run/systemd and
    the journal directories): berthd joins that namespace; the host's journal is never touched."""
    binary = "/lib/systemd/systemd-journald"
    if not os.path.exists(binary):
        pytest.skip("systemd-journald is not installed (Debian package systemd)")
    script = ("set -e; mount -t tmpfs none /run/systemd; mkdir /run/systemd/journal; mkdir -p /run/log; "
              "mount -t tmpfs none /run/log; if [ -d /var/log/journal ]; then mount -t tmpfs none /var/log/journal; "
              f"fi; exec {binary}")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while not os.path.exists(f"/proc/{proc.pid}/root/run/systemd/journal/socket"):
            if proc.poll() is not None or time.time() > deadline:
                err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                pytest.skip(f"systemd-journald would not start here: {err[-500:]}")
            time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_journald_driver_sends_dockerds_fields_and_logs_reads_them_back(make_berthd, journald):
    d = make_berthd()
    d.start(prefix=["nsenter", f"--mount=/proc/{journald}/ns/mnt", "--"])
    assert rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest",
                           body=busybox_rootfs_tar()).status == 200
    r = run(d, "run", "--name", "jd", "--log-driver", "journald", "--log-opt", "tag=t-{{.Name}}", "--label", "team=x",
            "--log-opt", "labels=team", "bb", "sh", "-c", "echo first; echo second >&2; sleep 0.3; printf partial")
    assert r.returncode == 0, r.stderr
    cid = api(d).inspect_container("jd")["Id"]
    deadline = time.time() + 10
    while True:
        logs = run(d, "logs", "jd")
        if logs.stdout.endswith("partial") or time.time() > deadline:
            break
        time.sleep(0.1)
    assert (logs.stdout, logs.stderr) == ("first\npartial", "second\n")
    tail = run(d, "logs", "--tail", "1", "jd")
    assert tail.stdout == "partial", (tail.stdout, tail.stderr, subprocess.run(
        ["nsenter", f"--mount=/proc/{journald}/ns/mnt", "--", "journalctl", "--no-pager", "-o", "json",
         "CONTAINER_NAME=jd"], capture_output=True, text=True).stdout)
    entries = subprocess.run(["nsenter", f"--mount=/proc/{journald}/ns/mnt", "--", "journalctl", "--no-pager",
                              "-o", "json", f"CONTAINER_ID_FULL={cid}"], capture_output=True, text=True).stdout
    first = json.loads(entries.splitlines()[0])
    assert (first["MESSAGE"], first["CONTAINER_NAME"], first["CONTAINER_ID"], first["CONTAINER_TAG"],
            first["SYSLOG_IDENTIFIER"], first["PRIORITY"], first["TEAM"]) == (
        "first", "jd", cid[:12], "t-jd", "t-jd", "6", "x")
    assert first["CONTAINER_LOG_ORDINAL"] == "1" and len(first["CONTAINER_LOG_EPOCH"]) == 32  # moby's numbering
    # logs -f follows until the container stops, and until journald has shown the last line sent
    # (written just before the exit: journald takes datagrams in asynchronously)
    cid2 = run(d, "run", "-d", "--log-driver", "journald", "bb", "sh", "-c",
               "for i in 1 2 3; do echo n$i; sleep 0.3; done; seq 1 300").stdout.strip()
    follow = subprocess.run(["docker", "-H", d.url, "logs", "-f", cid2], capture_output=True, text=True, timeout=30)
    assert follow.stdout.splitlines() == ["n1", "n2", "n3", *map(str, range(1, 301))]
    # a follower that comes while the container runs, after more than 10 lines: it gets them all
    # (`journalctl --follow` alone begins with the last 10)
    cid3 = run(d, "run", "-d", "--log-driver", "journald", "bb", "sh", "-c", "seq 1 20; sleep 2; echo end").stdout.strip()
    until(lambda: len(subprocess.run(["nsenter", f"--mount=/proc/{journald}/ns/mnt", "--", "journalctl",
                                      "--no-pager", "-q", "-o", "cat", f"CONTAINER_ID_FULL={cid3}"],
                                     capture_output=True, text=True).stdout.splitlines()) >= 20,
          "the container's 20 lines in the journal")
    follow = subprocess.run(["docker", "-H", d.url, "logs", "-f", cid3], capture_output=True, text=True, timeout=30)
    assert follow.stdout.splitlines() == [*map(str, range(1, 21)), "end"]


def test_daemon_log_driver_and_log_opts_are_the_default(make_berthd):
    d = make_berthd(config={"log-driver": "local", "log-opts": {"max-size": "5m", "max-file": "2"}})
    d.start()
    c = api(d)
    assert c.info()["LoggingDriver"] == "local"
    assert rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest",
                           body=busybox_rootfs_tar()).status == 200
    cid = c.create_container("bb", "true")["Id"]
    assert c.inspect_container(cid)["HostConfig"]["LogConfig"] == {"Type": "local",
                                                                   "Config": {"max-size": "5m", "max-file": "2"}}
    cid = c.create_container("bb", "true", host_config=c.create_host_config(log_config={"Type": "none"}))["Id"]
    assert c.inspect_container(cid)["HostConfig"]["LogConfig"]["Type"] == "none"
    code, out = make_berthd(args=["--log-driver", "gelf"]).run_to_exit()
    assert code != 0 and "failed to set log opts: log driver 'gelf' is not supported by berth" in out
    code, out = make_berthd(args=["--log-opt", "max-size=1m"], config={"log-opts": {"max-size": "2m"}}).run_to_exit()
    assert code != 0 and "specified both as a flag and in the configuration file: log-opts" in out


def test_a_container_that_will_restart_is_not_removed_without_force(bb):
    c = api(bb)
    for _ in range(3):
        cid = c.create_container("bb", ["sleep", "0.2"], host_config=c.create_host_config(
            restart_policy={"Name": "always"}))["Id"]
        c.start(cid)
        c.wait(cid)
        with pytest.raises(docker.errors.APIError) as err:
            c.remove_container(cid)  # at once: the exit and the restart are one state change
        assert err.value.status_code == 409 and "Stop the container before attempting removal" in str(err.value)
        c.remove_container(cid, force=True)


def test_group_add_reaches_the_process(bb):
    c = api(bb)
    cid = c.create_container("bb", "id", host_config=c.create_host_config(group_add=["1234", "5678"]))["Id"]
    c.start(cid)
    c.wait(cid)
    groups = c.logs(cid).decode().split("groups=")[1]
    assert "1234" in groups and "5678" in groups


def test_field_names_match_whatever_their_case_as_go_decodes_them(bb):
    body = {"image": "bb", "CMD": ["true"], "Hostname": "h1", "hostConfig": {
        "CPURealtimePeriod": 1000, "CPURealtimeRuntime": 500, "memory": 64 << 20, "Memory": 32 << 20}}
    r = rawhttp.request(bb.sock, "POST", "/containers/create", body=json.dumps(body).encode())
    assert r.status == 201, r.body
    info = api(bb).inspect_container(r.json()["Id"])
    hc = info["HostConfig"]
    assert (hc["CpuRealtimePeriod"], hc["CpuRealtimeRuntime"], hc["Memory"]) == (1000, 500, 32 << 20)
    assert info["Config"]["Cmd"] == ["true"] and info["Config"]["Hostname"] == "h1"


def test_bind_propagation_is_honoured_or_refused_as_dockerd(bb, tmp_path, cleanup):
    src = str(tmp_path / "src")
    os.makedirs(f"{src}/sub")
    _, fields = __import__("berth.container.mounts", fromlist=["_mount_of"])._mount_of(src)
    if "shared" not in fields:
        r = run(bb, "run", "--rm", "-v", f"{src}:/x:rshared", "bb", "true")
        assert r.returncode != 0 and f"path {src} is mounted on" in r.stderr and "not a shared mount" in r.stderr
    cleanup.mount(src)
    subprocess.run(["mount", "--bind", src, src], check=True)  # a shared mount of the test's own
    cleanup.mount(f"{src}/sub")  # undone first: what the container propagated, if the test fails before its end
    subprocess.run(["mount", "--make-shared", src], check=True)
    r = run(bb, "run", "--rm", "--privileged", "-v", f"{src}:/x:rshared", "bb", "sh", "-c",
            "mount -t tmpfs tmpfs /x/sub && touch /x/sub/seen && umount /x/sub; echo done")
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    # while it was mounted the host saw it; afterwards the host's mount table has nothing of it
    assert f"{src}/sub " not in open("/proc/self/mounts").read()
    r = run(bb, "run", "-d", "--privileged", "-v", f"{src}:/x:rshared", "bb", "sh", "-c",
            "mount -t tmpfs tmpfs /x/sub && sleep 60")
    cid = r.stdout.strip()
    until(lambda: f"{src}/sub tmpfs" in open("/proc/self/mounts").read(), "the mount propagated to the host")
    run(bb, "rm", "-f", cid)


def test_docker_cli_detaches_and_the_container_runs_on(bb, isolated_home):
    """`docker attach` under a terminal: ctrl-p ctrl-q, then the keys of config.json's detachKeys."""
    import shutil

    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed (Debian package bsdutils)")
    assert run(bb, "run", "-dit", "--name", "dt", "bb", "cat").returncode == 0

    def attach_and_send(keys: list[bytes]) -> bytes:
        p = subprocess.Popen(["script", "-qec", f"docker -H {bb.url} attach dt", "/dev/null"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.stdin is not None
        # the docker CLI attached and put its terminal in raw mode (else ctrl-q is the tty's XON)
        until(lambda: _raw_terminal_of(p.pid, "attach"), "docker attach to put its terminal in raw mode", timeout=20)
        p.stdin.write(b"hi\n")
        p.stdin.flush()
        for k in keys:
            p.stdin.write(k)
            p.stdin.flush()
            time.sleep(0.2)  # not a wait: the keys go in separate reads (a sequence split across two)
        try:
            return p.communicate(timeout=20)[0]
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    out = attach_and_send([b"\x10", b"\x11"])
    assert b"hi" in out and b"read escape sequence" in out, out
    assert api(bb).inspect_container("dt")["State"]["Running"] is True
    os.makedirs(os.path.join(isolated_home, ".docker"), exist_ok=True)
    with open(os.path.join(isolated_home, ".docker", "config.json"), "w") as f:
        json.dump({"detachKeys": "ctrl-x"}, f)
    out = attach_and_send([b"\x18"])
    assert b"read escape sequence" in out, out
    assert api(bb).inspect_container("dt")["State"]["Running"] is True


def test_cp_from_a_stopped_containers_anonymous_volume_and_volumes_from(bb):
    c = api(bb)
    cid = c.create_container("bb", ["sh", "-c", "echo data > /vol1/data.txt"], volumes=["/vol1"])["Id"]
    c.start(cid)
    assert c.wait(cid)["StatusCode"] == 0
    stream, stat = c.get_archive(cid, "/vol1/data.txt")
    assert stat["name"] == "data.txt" and stat["size"] == 5
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
        assert tf.extractfile("data.txt").read() == b"data\n"
    other = c.create_container("bb", ["cat", "/vol1/data.txt"], host_config=c.create_host_config(
        volumes_from=[f"{cid}:ro"]))["Id"]
    c.start(other)
    assert c.wait(other)["StatusCode"] == 0 and c.logs(other) == b"data\n"
    assert c.inspect_container(other)["HostConfig"]["VolumesFrom"] == [f"{cid}:ro"]


def test_diff_of_one_new_file_is_that_file_and_restart_with_rm_conflicts(bb):
    c = api(bb)
    cid = c.create_container("bb", ["touch", "/test"])["Id"]
    c.start(cid)
    c.wait(cid)
    assert c.diff(cid) == [{"Path": "/test", "Kind": 1}]  # not /etc, held for the runtime's mount points
    with pytest.raises(docker.errors.APIError) as err:
        c.create_container("bb", "true", host_config=c.create_host_config(auto_remove=True,
                                                                          restart_policy={"Name": "always"}))
    assert err.value.status_code == 400
    assert "conflicting options: cannot specify both --restart and --rm" in str(err.value)


def test_detach_keys_over_websocket_attach(bb):
    c = api(bb)
    cid = c.create_container("bb", "cat", stdin_open=True, tty=True)["Id"]
    c.start(cid)
    s = rawhttp.websocket(bb.sock, f"/v1.47/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1&detachKeys=ctrl-e")
    rawhttp.ws_send(s, b"\x05")  # ctrl-e
    assert _closed(s)
    s.close()
    assert c.inspect_container(cid)["State"]["Running"] is True


def test_container_prune_honours_label_and_until(bb):
    c = api(bb)
    keep = c.create_container("bb", "true", labels={"team": "blue"})["Id"]
    old = c.create_container("bb", "true", labels={"team": "red"})["Id"]
    other = c.create_container("bb", "true")["Id"]
    out = c.prune_containers(filters={"label": ["team=red"]})
    assert out["ContainersDeleted"] == [old]
    out = c.prune_containers(filters={"label!": ["team"], "until": "1h"})  # made less than an hour ago: kept
    assert out["ContainersDeleted"] is None
    out = c.prune_containers(filters={"label!": ["team"]})
    assert out["ContainersDeleted"] == [other]
    assert [x["Id"] for x in c.containers(all=True)] == [keep]
    from urllib.parse import quote

    r = rawhttp.request(bb.sock, "POST", "/containers/prune?filters=" + quote(json.dumps({"nope": ["x"]})))
    assert r.status == 400 and r.json()["message"] == "invalid filter 'nope'"


def test_attach_with_logs_and_no_stream_returns_the_backlog(bb):
    """docker-py's attach(stream=False, logs=True) reads the raw socket past its HTTP buffer: output
    sent together with the 101 would be lost."""
    c = api(bb)
    cid = c.create_container("bb", ["echo", "hello"])["Id"]
    c.start(cid)
    c.wait(cid)
    for _ in range(5):
        assert c.attach(cid, stream=False, logs=True) == b"hello\n"


def _raw_terminal_of(script_pid: int, verb: str) -> bool:
    """Whether the docker CLI under ``script(1)`` (``docker … VERB``) has its terminal in raw mode."""
    for child in _descendants(script_pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            tty = os.readlink(f"/proc/{child}/fd/0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"docker") and verb.encode() in argv and tty.startswith("/dev/pts/"):
            mode = subprocess.run(["stty", "-F", tty, "-a"], capture_output=True, text=True).stdout
            return "-icanon" in mode.split()
    return False


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out
