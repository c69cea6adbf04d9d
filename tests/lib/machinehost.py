"""A test host for `berth machine`: a network namespace with a veth to the test runner, its own sshd
on port 22 of its own address, and a private mount namespace in which /etc, /var, /opt and /usr are
overlays of this machine's with a tmpfs on top, and /run a tmpfs: the host starts as a copy of this
machine, and nothing provisioning writes (configuration, packages, berth itself) reaches the real one.
/var/lib/berth is a tmpfs of its own (overlayfs cannot put a container's upper layer on an overlay),
/sys is the namespace's own sysfs (as `ip netns exec` makes it) with this machine's cgroup hierarchies
kept on /sys/fs/cgroup, so a berthd provisioned there runs containers.

``destroy`` (registered in the test's Cleanup) kills every process of the host's mount namespace
(sshd, berthd, its supervisor, conmon) and every container they started, and removes the
containers' cgroups. The namespace is held open from the start until ``destroy`` ends: a freed
namespace's number is given to the next one made at once, and a scan by number after the host's last
process died killed another test's container as it was being created (crun: "read from the init
process", or "not running" at start).

Network safety: the host's namespace has its /30 to the runner and nothing else (no default route):
it can reach no outside address. Everything is registered in the test's ``Cleanup``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.daemon import public_tmpdir

SSHD = "/usr/sbin/sshd"
LINK_PREFIX = "bmh"  # every link a test host makes (tests/network/conftest.py leaves them alone)
OVERLAID = ("/etc", "/var", "/opt", "/usr")  # the host reads this machine's, and writes to a tmpfs of its own


@dataclass
class TestHost:
    __test__ = False  # not a test class
    name: str
    netns: str
    ip: str  # the host's address, reachable from the runner
    key: str  # the private key sshd lets root in with
    work: str  # the runner-side directory (keys, configs, sshd's log)
    host_key_pub: str

    sshd_pid: int = 0
    mntns: str = ""  # its mount namespace ("mnt:[N]"), read once sshd listens
    mntns_fd: int = -1  # holds that namespace (and so its number) until destroy ends

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` as the host sees itself (its network and mount namespaces), through ssh."""
        return subprocess.run(["ssh", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                               f"root@{self.ip}", script], capture_output=True, text=True, timeout=60)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


RESERVATIONS = "/run/berth-test-mhost-nets"  # one file per /30 in use, across parallel test workers


def _reserve(cleanup: Cleanup) -> tuple[str, str]:
    """A /30 of 10.231.0.0/16 no other test host holds (a file made with O_EXCL) and no link carries."""
    os.makedirs(RESERVATIONS, exist_ok=True)
    for _ in range(200):
        slot = secrets.randbelow(1 << 14)
        a, b = divmod(slot * 4, 256)
        path = f"{RESERVATIONS}/10.231.{a}.{b}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        cleanup.path(path)
        used = subprocess.run(["ip", "-o", "-4", "addr", "show", "to", f"10.231.{a}.{b}/30"], capture_output=True,
                              text=True).stdout
        if not used:
            return f"10.231.{a}.{b + 1}", f"10.231.{a}.{b + 2}"
    raise AssertionError("no free /30 in 10.231.0.0/16 for a test host")


def make_host(cleanup: Cleanup, name: str) -> TestHost:
    if os.geteuid() != 0 or not os.path.exists(SSHD) or not shutil.which("ssh"):
        pytest.skip("needs root, openssh-server and openssh-client")
    tag = secrets.token_hex(2)
    runner_ip, host_ip = _reserve(cleanup)
    ns = cleanup.netns(f"{LINK_PREFIX}{tag}")
    _run("ip", "netns", "add", ns)
    outer, inner = cleanup.link(f"{LINK_PREFIX}{tag}o"), f"{LINK_PREFIX}{tag}i"
    _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", ns)
    _run("ip", "addr", "add", f"{runner_ip}/30", "dev", outer)
    _run("ip", "link", "set", outer, "up")
    _run("ip", "-n", ns, "addr", "add", f"{host_ip}/30", "dev", inner)
    _run("ip", "-n", ns, "link", "set", inner, "up")
    _run("ip", "-n", ns, "link", "set", "lo", "up")
    work = cleanup.path(public_tmpdir("berth-mhost-"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{work}/host_key"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{work}/root_key"], check=True)
    with open(f"{work}/authorized_keys", "w") as f:
        f.write(open(f"{work}/root_key.pub").read())
    with open(f"{work}/sshd_config", "w") as f:
        f.write(f"Port 22\nListenAddress {host_ip}\nHostKey {work}/host_key\nPidFile /run/sshd.pid\n"
                f"AuthorizedKeysFile {work}/authorized_keys\nStrictModes no\nUsePAM no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                "PermitRootLogin prohibit-password\nX11Forwarding no\nAllowTcpForwarding no\n"
                "Subsystem sftp internal-sftp\n")
    overlays = " && ".join(
        f"mkdir -p /run/ovl/{i}/u /run/ovl/{i}/w && mount -t overlay overlay "
        f"-o lowerdir={d},upperdir=/run/ovl/{i}/u,workdir=/run/ovl/{i}/w {d}" for i, d in enumerate(OVERLAID))
    os.makedirs(f"{work}/cg")
    script = (f"mount --rbind /sys/fs/cgroup {work}/cg && mount -t sysfs sysfs /sys && "
              f"mount --rbind {work}/cg /sys/fs/cgroup && umount -l {work}/cg && "
              f"mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd && {overlays} && "
              f"mkdir -p /var/lib/berth && mount -t tmpfs tmpfs /var/lib/berth && "
              f"exec {SSHD} -D -e -f {work}/sshd_config")
    # a mount namespace of its own (slave: this machine's mounts reach it, its own stay inside), in the
    # host's network namespace
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "slave", "nsenter", f"--net=/run/netns/{ns}",
                             "sh", "-c", script], stdout=open(f"{work}/sshd.log", "wb"), stderr=subprocess.STDOUT)
    cleanup.process(proc, f"sshd of test host {name}")
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((host_ip, 22), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("the test host's sshd exited: " + open(f"{work}/sshd.log").read())
            assert time.monotonic() < deadline, "the test host's sshd did not listen"
            time.sleep(0.05)
    host = TestHost(name, ns, host_ip, f"{work}/root_key", work, open(f"{work}/host_key.pub").read().split()[1],
                    proc.pid, *hold_mntns(proc.pid))
    cleanup.add(f"the processes and containers of test host {name}", lambda: destroy(host))
    return host


def hold_mntns(pid: int) -> tuple[str, int]:
    """The mount namespace of ``pid`` as ("mnt:[N]", an fd that keeps it, and its number, alive)."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    return os.readlink(f"/proc/self/fd/{fd}"), fd


def _mntns(pid: str | int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def destroy(host: TestHost) -> None:
    """Everything the host runs, gone: its processes, then its containers (found by their conmon's
    arguments) and their cgroups. The mount namespace goes with its last process and the fd held on it."""
    ns = host.mntns
    if host.mntns_fd < 0:
        return  # not held: its number may be another namespace's by now
    try:
        if not ns or ns == _mntns("self"):
            return
        _kill_all(ns)
    finally:
        os.close(host.mntns_fd)
        host.mntns_fd = -1


def _kill_all(ns: str) -> None:
    ids: set[str] = set()
    for _ in range(3):  # the supervisor may start berthd again between two kills
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _mntns(p) == ns]
        for pid in pids:
            try:
                args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                ids.update(a.decode() for a in args if len(a) == 64 and all(c in b"0123456789abcdef" for c in a))
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        time.sleep(0.1)
    for cid in ids:
        for ctrl in os.listdir("/sys/fs/cgroup"):
            path = f"/sys/fs/cgroup/{ctrl}/berth/{cid}"
            if os.path.isdir(path):
                try:
                    for pid in open(f"{path}/cgroup.procs").read().split():
                        os.kill(int(pid), signal.SIGKILL)
                    time.sleep(0.05)
                    os.rmdir(path)
                except OSError:
                    pass
