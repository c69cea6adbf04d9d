"""What `berth machine` does on a host, over one SSH session: read what the host is, check it can run
berth, install what is missing (Debian packages through the host's own apt, berth from the
wheelhouse), write the engine's configuration and certificates, and run berthd as a service
(systemd where it runs, ``berth.daemon.supervise`` where it does not).

On the host:
    /opt/berth/venv                          berth, installed from the wheels (``pip --no-index``)
    /usr/local/bin/berth, berthd             links into it (``ssh://`` reaches ``berth system dial-stdio``)
    /etc/berth/daemon.json                   hosts, TLS, labels (the engine options are flags)
    /etc/berth/certs/                        ca.pem, server.pem, server-key.pem (0400), crl.pem
    /etc/berth/berthd.argv.json              berthd's command line (the supervisor reads it)
    /etc/systemd/system/berthd.service       and berthd.service.d/10-machine.conf (the flags)
    /var/log/berth/berthd.log                berthd's output where the supervisor runs it
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from berth.cli.remote import Remote, RemoteError
from berth.errors import InvalidParameter

VENV = "/opt/berth/venv"
BERTHD = f"{VENV}/bin/berthd"
CONF_DIR = "/etc/berth"
CERT_DIR = "/etc/berth/certs"
DAEMON_JSON = f"{CONF_DIR}/daemon.json"
ARGV_FILE = f"{CONF_DIR}/berthd.argv.json"
SUPERVISOR_PID = "/run/berth-supervise.pid"
LOG = "/var/log/berth/berthd.log"
BERTHD_PID = "/var/run/berth.pid"
UNIT = "/etc/systemd/system/berthd.service"
DROPIN = "/etc/systemd/system/berthd.service.d/10-machine.conf"
SOCKET = "unix:///var/run/docker.sock"
# what berthd runs with; python3-venv makes the venv
PACKAGES = ("crun", "conmon", "nftables", "iproute2", "procps", "util-linux", "ca-certificates", "tini",
            "python3", "python3-venv")
KERNEL_MIN = (5, 6)  # openat2, which every path inside a container's root is resolved with
ENGINE_OPT = re.compile(r"^[a-z][a-z0-9-]*\Z")

UNIT_TEXT = """[Unit]
Description=berth: a Docker-compatible container engine (provisioned by berth machine)
After=network-online.target nftables.service
Wants=network-online.target

[Service]
Type=notify
# 10-machine.conf (beside this file) gives the command line: daemon.json and the engine options
ExecStart=/opt/berth/venv/bin/berthd --config-file /etc/berth/daemon.json
ExecReload=/bin/kill -s HUP $MAINPID
# containers are conmon's and survive a berthd restart: only berthd itself is stopped
KillMode=process
Delegate=yes
LimitNOFILE=20000
Restart=always
RestartSec=2
TimeoutStartSec=0

[Install]
WantedBy=multi-user.target
"""


def engine_flags(opts: list[str]) -> list[str]:
    """``--engine-opt k=v`` as berthd's ``--k=v`` (``k`` alone: ``--k``), each checked to be an option name."""
    flags = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not ENGINE_OPT.match(key):
            raise InvalidParameter(f"--engine-opt {opt!r}: expected NAME=VALUE with NAME a berthd option "
                                   "(as dns=10.0.0.2 for --dns 10.0.0.2)")
        flags.append(f"--{key}={value}" if eq else f"--{key}")
    return flags


def dropin_text(engine: Engine) -> str:
    """10-machine.conf, as docker-machine's: the command line, engine options included (quoted for
    systemd, which would otherwise expand ``$VAR`` and ``%`` specifiers in them)."""
    line = shlex.join(engine.argv()).replace("%", "%%").replace("$", "$$")
    return f"[Service]\nExecStart=\nExecStart={line}\n"


def check_labels(labels: list[str]) -> list[str]:
    for label in labels:
        if not re.match(r"^[^=\s]+=", label):
            raise InvalidParameter(f"--engine-label {label!r}: expected KEY=VALUE")
    return labels


@dataclass(frozen=True)
class Engine:
    """The engine a machine runs, as its record says."""
    port: int  # the TLS port; 0: ssh-only (no TCP listener at all)
    flags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    crl: bool = False  # daemon.json names /etc/berth/certs/crl.pem

    def daemon_json(self) -> dict[str, object]:
        cfg: dict[str, object] = {"hosts": [SOCKET, *([f"tcp://0.0.0.0:{self.port}"] if self.port else [])]}
        if self.port:
            cfg.update(tls=True, tlsverify=True, tlscacert=f"{CERT_DIR}/ca.pem", tlscert=f"{CERT_DIR}/server.pem",
                       tlskey=f"{CERT_DIR}/server-key.pem")
            if self.crl:
                cfg["tlscrl"] = f"{CERT_DIR}/crl.pem"
        if self.labels:
            cfg["labels"] = list(self.labels)
        return cfg

    def argv(self) -> list[str]:
        return [BERTHD, "--config-file", DAEMON_JSON, *self.flags]

    def data_roots(self) -> list[str]:
        """What ``rm --purge`` deletes besides berth's own files: the data and exec roots, when they are
        berth's alone (an engine option naming /, /var/lib or a path with .. is not followed)."""
        roots = {"data-root": "/var/lib/berth", "exec-root": "/var/run/berth"}
        for f in self.flags:
            key, _, value = f[2:].partition("=")
            if key in roots and purgeable(value):
                roots[key] = value
        return list(roots.values())


SYSTEM_DIRS = frozenset({"/var/lib", "/var/run", "/var/log", "/var/cache", "/var/spool", "/var/tmp", "/usr/lib",
                         "/usr/local", "/usr/share", "/usr/bin", "/usr/sbin", "/etc/systemd", "/run/user"})


def purgeable(path: str) -> bool:
    """An absolute path of two components or more, no ``..``, not a system directory."""
    parts = path.split("/")
    return (path.startswith("/") and ".." not in parts and "." not in parts[1:]
            and len([p for p in parts if p]) >= 2 and path.rstrip("/") not in SYSTEM_DIRS)


@dataclass
class Facts:
    os_id: str = ""
    os_like: str = ""
    os_name: str = ""
    uid: int = -1
    sudo: bool = False
    kernel: str = ""
    arch: str = ""
    overlay: bool = False
    cgroups: bool = False
    userns: bool = False
    python: str = ""
    systemd: bool = False
    hostnames: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # Debian packages not installed
    berth: str = ""  # the berth version installed, "" when none

    @property
    def service(self) -> str:
        return "systemd" if self.systemd else "supervised"


FACTS_SCRIPT = """
. /etc/os-release 2>/dev/null; echo "os_id=$ID"; echo "os_like=$ID_LIKE"; echo "os_name=$PRETTY_NAME"
echo "uid=$(id -u)"; if sudo -n true 2>/dev/null; then echo sudo=1; fi
echo "kernel=$(uname -r)"; echo "arch=$(uname -m)"
if grep -qw overlay /proc/filesystems || modprobe -n overlay 2>/dev/null; then echo overlay=1; fi
if [ -e /sys/fs/cgroup/cgroup.controllers ] || [ -d /sys/fs/cgroup/memory ]; then echo cgroups=1; fi
if [ -e /proc/self/ns/user ]; then echo userns=1; fi
if command -v python3 >/dev/null; then echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"; fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then echo systemd=1; fi
echo "hostname=$(hostname 2>/dev/null)"; echo "hostname=$(hostname -f 2>/dev/null)"
for p in PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "missing=$p"
done
if [ -x /opt/berth/venv/bin/berthd ]; then echo "berth=$(/opt/berth/venv/bin/python -c 'import berth; print(berth.__version__)')"; fi
""".replace("PACKAGES", " ".join(PACKAGES))


def facts(r: Remote) -> Facts:
    f = parse_facts(r.run(FACTS_SCRIPT, timeout=60).out)
    if f.uid != 0 and f.sudo:
        r.sudo = "sudo -n "
    return f


def parse_facts(out: str) -> Facts:
    """FACTS_SCRIPT's output: the host's words, each checked (a host may say anything)."""
    f = Facts()
    for line in out.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key in ("os_id", "os_like", "os_name", "kernel", "arch", "python", "berth"):
            setattr(f, key, value)
        elif key == "uid" and value.isdigit():
            f.uid = int(value)
        elif key in ("sudo", "overlay", "cgroups", "userns", "systemd"):
            setattr(f, key, True)
        elif key == "hostname" and value and value not in f.hostnames and re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]*\Z", value):
            f.hostnames.append(value)
        elif key == "missing" and value in PACKAGES:  # kept only for a package we asked about
            f.missing.append(value)
    return f


def problems(f: Facts, python: str, arch: str) -> list[str]:
    """What keeps berth from running on the host, each with what to do; empty when nothing does."""
    out = []
    if "debian" not in (f.os_id, *f.os_like.split()):
        out.append(f"the host runs {f.os_name or f.os_id or 'an unknown OS'}: berth machine provisions Debian and "
                   "its derivatives (it installs packages with apt)")
    if f.uid != 0 and not f.sudo:
        out.append("the SSH user is not root and cannot 'sudo -n' (give it passwordless sudo, or log in as root)")
    try:
        kernel = tuple(int(x) for x in re.findall(r"\d+", f.kernel)[:2])
    except ValueError:
        kernel = (0, 0)
    if kernel < KERNEL_MIN:
        out.append(f"the kernel is {f.kernel or 'unknown'}: berth needs {KERNEL_MIN[0]}.{KERNEL_MIN[1]} or later "
                   "(openat2)")
    if not f.overlay:
        out.append("the kernel has no overlay filesystem (modprobe overlay)")
    if not f.cgroups:
        out.append("no cgroup controllers are mounted under /sys/fs/cgroup")
    if f.arch != arch:
        out.append(f"the host is {f.arch or 'of an unknown architecture'} and this CLI's wheels are {arch}")
    if f.python and f.python != python and "python3" not in f.missing:
        out.append(f"the host's python3 is {f.python} and the wheelhouse is for {python}: provision from a CLI "
                   f"running Python {f.python}")
    return out


def install_packages(r: Remote, missing: list[str]) -> None:
    q = " ".join(shlex.quote(p) for p in missing)
    res = r.run("export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && "
                f"apt-get install -y -qq --no-install-recommends {q}", root=True, check=False, timeout=900)
    if res.rc != 0:
        raise RemoteError(f"could not install {', '.join(missing)} with the host's apt (does it reach a Debian "
                          f"mirror? apt said: {(res.err or res.out).strip()[-600:]})")


def install_berth(r: Remote, version: str) -> None:
    """The wheels (already staged) into /opt/berth/venv, and the links in /usr/local/bin."""
    stage = r.staging()
    r.run(f"[ -x {VENV}/bin/python ] || python3 -m venv {VENV}", root=True, timeout=300)
    r.run(f"{VENV}/bin/pip install -q --disable-pip-version-check --no-index --find-links {shlex.quote(stage)} "
          f"--upgrade berth-engine=={shlex.quote(version)} && "
          f"ln -sf {VENV}/bin/berth /usr/local/bin/berth && ln -sf {VENV}/bin/berthd /usr/local/bin/berthd",
          root=True, timeout=900)


def write_config(r: Remote, engine: Engine, service: str) -> None:
    """daemon.json and berthd's command line, checked by berthd itself (``--validate``, dockerd's words for
    a key set both as a flag and in the file) before they replace the ones in use."""
    candidate = f"{DAEMON_JSON}.candidate"
    r.put(json.dumps(engine.daemon_json(), indent=2).encode() + b"\n", candidate, 0o644)
    argv = [*engine.argv()]
    argv[argv.index(DAEMON_JSON)] = candidate
    res = r.run(f"{shlex.join(argv)} --validate", root=True, check=False, timeout=60)
    if res.rc != 0:
        r.run(f"rm -f {candidate}", root=True, check=False)
        raise RemoteError(f"berthd refuses the configuration: {(res.err or res.out).strip()[-600:]}")
    r.run(f"mv -f {candidate} {DAEMON_JSON}", root=True)
    r.put(json.dumps(engine.argv()).encode() + b"\n", ARGV_FILE, 0o644)
    if service == "systemd":
        r.put(UNIT_TEXT.encode(), UNIT, 0o644)
        r.put(dropin_text(engine).encode(), DROPIN, 0o644)


def put_certs(r: Remote, ca: bytes, cert: bytes | None = None, key: bytes | None = None,
              crl: bytes | None = None) -> None:
    r.put(ca, f"{CERT_DIR}/ca.pem", 0o444)
    if cert is not None and key is not None:
        r.put(key, f"{CERT_DIR}/server-key.pem", 0o400)
        r.put(cert, f"{CERT_DIR}/server.pem", 0o444)
    if crl is not None:
        r.put(crl, f"{CERT_DIR}/crl.pem", 0o444)


UNITS = {"systemd": "berthd", "docker": "docker"}  # the services systemd runs (docker: a docker-machine host)


def start(r: Remote, service: str) -> None:
    unit = UNITS.get(service)
    if unit is not None:
        r.run(f"systemctl daemon-reload && systemctl enable -q {unit} && systemctl start {unit}", root=True)
        return
    r.run(f"mkdir -p /var/log/berth && if [ -f {SUPERVISOR_PID} ] && kill -0 $(cat {SUPERVISOR_PID}) 2>/dev/null; "
          f"then exit 0; fi; setsid -f {VENV}/bin/python -m berth.daemon.supervise --argv-file {ARGV_FILE} "
          f"--pidfile {SUPERVISOR_PID} --log {LOG} </dev/null >/dev/null 2>&1", root=True)


def stop(r: Remote, service: str) -> None:
    unit = UNITS.get(service)
    if unit is not None:
        r.run(f"systemctl stop {unit}", root=True)
        return
    # the supervisor stops berthd, then itself; wait for both (berthd has 15 s for its shutdown)
    r.run(f"[ -f {SUPERVISOR_PID} ] || exit 0; pid=$(cat {SUPERVISOR_PID}); kill -TERM $pid 2>/dev/null || "
          f"exit 0; i=0; while kill -0 $pid 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && "
          "{ echo 'the supervisor did not stop in 30 s' >&2; exit 1; }; sleep 0.1; done", root=True, timeout=60)


def reload(r: Remote, service: str) -> None:
    """berthd reads daemon.json and its certificate files again (SIGHUP), keeping every connection."""
    if service == "docker":
        r.run("systemctl reload docker", root=True)
    else:
        r.run(f"kill -HUP $(cat {BERTHD_PID})", root=True)


def purge(r: Remote, engine: Engine, service: str) -> None:
    """Every container and berth itself off the host: the service, the files, the data."""
    r.run("if [ -x /usr/local/bin/berth ]; then ids=$(/usr/local/bin/berth -H " + SOCKET + " ps -aq 2>/dev/null); "
          "[ -z \"$ids\" ] || /usr/local/bin/berth -H " + SOCKET + " rm -f $ids >/dev/null 2>&1; fi; true",
          root=True, check=False, timeout=300)
    stop(r, service)
    if service == "systemd":
        r.run(f"systemctl disable -q berthd; rm -rf {UNIT} {os_dir(DROPIN)} && systemctl daemon-reload",
              root=True, check=False)
    roots = " ".join(shlex.quote(p) for p in engine.data_roots())
    # a data root may be a mount point of its own (as /var/lib/docker often is): emptied, then kept
    r.run(f"for d in {roots}; do grep -o \" $d/[^ ]*\" /proc/self/mounts | sort -r | while read m; do "
          "umount -l \"$m\"; done; if mountpoint -q \"$d\"; then find \"$d\" -mindepth 1 -maxdepth 1 -exec rm -rf {} +; "
          "else rm -rf \"$d\"; fi; done; "
          f"rm -rf /opt/berth {CONF_DIR} /var/log/berth /usr/local/bin/berth /usr/local/bin/berthd",
          root=True, timeout=300)


def os_dir(path: str) -> str:
    return path.rsplit("/", 1)[0]
