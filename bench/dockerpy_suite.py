"""docker-py's own integration suite against berthd and against dockerd, side by side (issue #10).

A measurement, not part of `make test`: the suite is not in docker-py's PyPI package. This script

  1. unpacks docker-py's source (``--source DIR``, a checkout; or a clone of ``--ref`` from GitHub)
     and makes a virtualenv for it under bench/.build/dockerpy (pytest, pytest-timeout, paramiko);
  2. makes stand-ins for the images the suite uses (``alpine:3.10``, ``alpine:latest``,
     ``busybox:latest``, and ``hello-world`` for the pull tests) from Debian's busybox-static, loads
     them, and serves them from a Docker Hub mirror on the namespace's loopback (Debian's
     docker-registry, given to both daemons as ``registry-mirrors``): the pull tests pull through
     it, and nothing comes from the internet;
  3. for each daemon, in a network namespace of its own (``unshare --net``: the daemons' bridges and
     firewall rules live and die there, and no test container can reach anything but loopback and
     that namespace's bridges), starts the daemon on a private socket and data root, loads the
     images, runs the suite with JUnit output, and stops the daemon;
  4. prints, per test, what each daemon did, the totals for the whole suite and for the selection
     without the tests that need Docker Hub itself, swarm or managed plugins, and writes
     the comparison as markdown with ``--markdown PATH``.

    Registry tests that need Docker Hub itself (an account for push and login, its search, a
    digest only it has) stay outside the selection.

    python bench/dockerpy_suite.py [--daemon berthd|dockerd|both] [--source DIR] [-k EXPR]
                                   [--markdown PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUILD = os.path.join(HERE, ".build", "dockerpy")
BIN = os.path.dirname(sys.executable)
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DOCKERD = shutil.which("dockerd")

# Why a test is outside the selection: what it needs that has not landed (or is not berth's to do).
EXCLUDED_FILES = {
    "api_swarm_test.py": "swarm", "api_service_test.py": "swarm",
    "api_secret_test.py": "swarm", "api_config_test.py": "swarm", "models_swarm_test.py": "swarm",
    "models_services_test.py": "swarm", "models_nodes_test.py": "swarm", "api_plugin_test.py": "plugin (pulls)",
    "credentials": "credential helpers (gpg, pass), not the engine",
}
EXCLUDED_TESTS: dict[str, str] = {  # fragments of a node id → reason (found by running the suite)
    "::test_push": "registry (Docker Hub account)", "::test_login": "registry (Docker Hub account)",
    "::test_search": "registry (Docker Hub's search)",
    "::test_pull_with_sha": "registry (a digest only Docker Hub has)",
}
# A test whose failure (on either daemon) is a request to these needs what has not landed.
EXCLUDED_REQUESTS = {"/auth": "registry (Docker Hub account)", "/push": "registry (Docker Hub)",
                     "/swarm/init": "swarm"}

# Alpine 3.10's own accounts (the suite execs as `postgres`), and its directories (`/var/opt`)
ALPINE_PASSWD = b"".join(line.encode() + b"\n" for line in (
    "root:x:0:0:root:/root:/bin/ash", "bin:x:1:1:bin:/bin:/sbin/nologin", "daemon:x:2:2:daemon:/sbin:/sbin/nologin",
    "adm:x:3:4:adm:/var/adm:/sbin/nologin", "lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin", "sync:x:5:0:sync:/sbin:/bin/sync",
    "mail:x:8:12:mail:/var/spool/mail:/sbin/nologin", "operator:x:11:0:operator:/root:/bin/sh",
    "cron:x:16:16:cron:/var/spool/cron:/sbin/nologin", "ftp:x:21:21::/var/lib/ftp:/sbin/nologin",
    "sshd:x:22:22:sshd:/dev/null:/sbin/nologin", "games:x:35:35:games:/usr/games:/sbin/nologin",
    "postgres:x:70:70::/var/lib/postgresql:/bin/sh", "ntp:x:123:123:NTP:/var/empty:/sbin/nologin",
    "guest:x:405:100:guest:/dev/null:/sbin/nologin", "nobody:x:65534:65534:nobody:/:/sbin/nologin"))
ALPINE_GROUP = b"".join(line.encode() + b"\n" for line in (
    "root:x:0:root", "bin:x:1:root,bin,daemon", "daemon:x:2:root,bin,daemon", "sys:x:3:root,bin,adm",
    "adm:x:4:root,adm,daemon", "tty:x:5:", "disk:x:6:root,adm", "lp:x:7:lp", "mail:x:12:mail", "cron:x:16:cron",
    "audio:x:18:", "www-data:x:82:", "ftp:x:21:", "sshd:x:22:", "games:x:35:", "postgres:x:70:", "ntp:x:123:",
    "users:x:100:games", "nogroup:x:65533:", "nobody:x:65534:"))
OS_RELEASE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.10.9\nPRETTY_NAME="berth stand-in for Alpine"\n'
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def excluded(nodeid: str, messages: list[str] = []) -> str | None:  # noqa: B006 (never changed)
    for frag, why in EXCLUDED_FILES.items():
        if f"/{frag}" in nodeid:
            return why
    for frag, why in EXCLUDED_TESTS.items():
        if frag in nodeid and why:
            return why
    for frag, why in EXCLUDED_REQUESTS.items():
        if any(frag in m for m in messages):
            return why
    return None


# ---- images ----

def _rootfs_tar(cmd: list[str]) -> tuple[bytes, bytes]:
    """A busybox root with every applet linked where Alpine has it, /etc like Alpine's; (layer, config)."""
    import hashlib

    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    mtime = 1_700_000_000
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
            tf.addfile(info)

        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "etc", "root",
                  "home", "var", "var/log", "var/opt", "var/lib", "var/cache", "var/empty", "var/spool", "var/local",
                  "lib", "mnt", "opt", "srv", "media"):
            add_dir(d, 0o700 if d == "root" else 0o755)
        add_dir("tmp", 0o1777)
        tf.add(BUSYBOX, "bin/busybox")
        for path in applets:
            if path == "bin/busybox":
                continue
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "/bin/busybox", mtime
            tf.addfile(info)
        for name, data in {"etc/passwd": ALPINE_PASSWD, "etc/group": ALPINE_GROUP, "etc/os-release": OS_RELEASE,
                           "etc/shells": b"/bin/sh\n/bin/ash\n"}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tf.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {"Env": [f"PATH={PATH}"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
        "history": [{"created": "2026-01-02T03:04:05Z", "created_by": "berth stand-in from busybox-static"}],
    }).encode()
    return layer, config


def images_archive() -> bytes:
    """One `docker save` archive holding the stand-ins for alpine:3.10, alpine:latest and busybox:latest."""
    from tests.lib.images import docker_archive

    images = []
    for cmd, tags in ((["/bin/sh"], ["alpine:3.10", "alpine:latest"]), (["sh"], ["busybox:latest"])):
        layer, config = _rootfs_tar(cmd)
        images.append((config, [layer], tags))
    return docker_archive(images)


def _mirror(cleanup: object) -> list[str]:
    """A Docker Hub mirror on this namespace's loopback (Debian's docker-registry), holding the
    stand-ins as library/alpine, library/busybox and library/hello-world: the suite's pull tests pull
    through it, on both daemons; [] when docker-registry or skopeo is missing."""
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        return []
    from tests.lib.registry import skopeo, start_registry

    reg = start_registry(cleanup)  # type: ignore[arg-type]
    path = os.path.join(reg.root, "standins.tar")
    with open(path, "wb") as f:
        f.write(images_archive())
    for src, dst in (("alpine:3.10", "library/alpine:3.10"), ("alpine:latest", "library/alpine:latest"),
                     ("busybox:latest", "library/busybox:latest"), ("busybox:latest", "library/hello-world:latest")):
        skopeo("copy", "--quiet", "--dest-tls-verify=false", f"docker-archive:{path}:{src}", f"docker://{reg.host}/{dst}")
    return [f"http://{reg.host}"]


# ---- the suite's checkout and virtualenv ----

def prepare(source: str | None, ref: str) -> tuple[str, str]:
    """(docker-py source directory, its virtualenv's python)."""
    os.makedirs(BUILD, exist_ok=True)
    src = os.path.join(BUILD, f"docker-py-{ref}")
    if not os.path.isdir(os.path.join(src, "tests", "integration")):
        tmp = tempfile.mkdtemp(dir=BUILD)
        if source and os.path.isdir(os.path.join(source, "objects")) or source and source.endswith(".git"):
            archive = subprocess.run(["git", f"--git-dir={source}", "archive", ref], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        elif source:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:
            subprocess.run(["git", "clone", "--depth", "1", "--branch", ref, "https://github.com/docker/docker-py",
                            tmp], check=True)
        os.rename(tmp, src)
    venv = os.path.join(BUILD, "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "pytest", "pytest-timeout", "paramiko", "requests",
                        "urllib3", "websocket-client"], check=True)
    return src, py


# ---- one daemon, inside its own network namespace ----

def inner(kind: str, src: str, py: str, junit: str, extra: list[str]) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sys.path.insert(0, REPO)
    root = tempfile.mkdtemp(prefix=f"berth-dpy-{kind}-", dir="/tmp")
    os.chmod(root, 0o755)
    sock = os.path.join(root, "docker.sock")
    proc = None
    berthd = None
    from tests.lib.cleanup import Cleanup

    cleanup = Cleanup()
    try:
        mirrors = _mirror(cleanup)
        if kind == "berthd":
            from tests.lib.daemon import Berthd

            berthd = Berthd(root=root, hosts=[f"unix://{sock}"], network=True, config={"registry-mirrors": mirrors})
            berthd.start(timeout=60)
        else:
            from tests.lib.daemon import unix_ping

            assert DOCKERD is not None
            from tests.lib.daemon import NO_OUTSIDE

            with open(os.path.join(root, "daemon.json"), "w") as f:
                json.dump({"registry-mirrors": mirrors}, f)
            proc = subprocess.Popen(
                [DOCKERD, "-H", f"unix://{sock}", "--data-root", f"{root}/data", "--exec-root", f"{root}/exec",
                 "--pidfile", f"{root}/pid", "--config-file", f"{root}/daemon.json"],
                stdout=open(f"{root}/dockerd.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **NO_OUTSIDE})
            deadline = time.time() + 90
            while not unix_ping(sock):
                if proc.poll() is not None or time.time() > deadline:
                    print(open(f"{root}/dockerd.log").read()[-3000:], file=sys.stderr)
                    return 2
                time.sleep(0.1)
        import docker

        client = docker.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=120)
        client.images.load(images_archive())
        client.close()
        home = os.path.join(root, "home")  # the suite writes contexts and config.json: not the user's
        os.makedirs(os.path.join(home, ".docker"))
        with open(os.path.join(home, ".docker", "config.json"), "w") as f:
            f.write("{}")  # without one, docker-py keeps contexts in ./contexts (the suite's checkout)
        shutil.rmtree(os.path.join(src, "contexts"), ignore_errors=True)
        tmp = os.path.join(root, "tmp")  # what the suite's tests leave in their temporary files goes with root
        os.makedirs(tmp)
        env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "PYTHONDONTWRITEBYTECODE": "1", "HOME": home,
               "DOCKER_CONFIG": os.path.join(home, ".docker"), "TMPDIR": tmp}
        env.pop("DOCKER_TLS_VERIFY", None)
        env.pop("DOCKER_CERT_PATH", None)
        argv = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout", "180", f"--junitxml={junit}",
                "tests/integration", "--ignore=tests/integration/credentials", *extra]
        return subprocess.run(argv, cwd=src, env=env).returncode
    finally:
        cleanup.run()
        if berthd is not None:
            berthd.cleanup()
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            with open("/proc/mounts") as f:
                mounts = [line.split()[1] for line in f if line.split()[1].startswith(root)]
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# ---- results ----

def results(junit: str) -> dict[str, tuple[str, str]]:
    """nodeid → (outcome: passed/failed/error/skipped, first line of the message)."""
    out: dict[str, tuple[str, str]] = {}
    if not os.path.exists(junit):
        return out
    for case in ET.parse(junit).getroot().iter("testcase"):
        cls = case.get("classname", "")
        mod, _, klass = cls.rpartition(".")
        if not klass[:1].isupper():
            mod, klass = cls, ""
        nodeid = mod.replace(".", "/") + ".py" + (f"::{klass}" if klass else "") + f"::{case.get('name')}"
        outcome, msg = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                msg = (child.get("message") or child.text or "").strip().splitlines()[0][:160] if (
                    child.get("message") or child.text) else ""
                break
        out[nodeid] = (outcome, msg)
    return out


def report(res: dict[str, dict[str, tuple[str, str]]], markdown: str | None, reasons: dict[str, str]) -> None:
    kinds = list(res)
    tests = sorted(set().union(*[set(r) for r in res.values()]))
    sel = [t for t in tests if excluded(t, [res[k][t][1] for k in kinds if t in res[k]]) is None]
    totals = []
    for label, group in (("whole suite", tests), ("selection (no Docker Hub, swarm or plugin)", sel)):
        line = ", ".join(f"{k} {sum(1 for t in group if res[k].get(t, ('',))[0] == 'passed')}" for k in kinds)
        totals.append(f"{label}: {len(group)} tests; passed: {line}")
        print(totals[-1])
    left: dict[str, int] = {}
    for t in tests:
        why = excluded(t, [res[k][t][1] for k in kinds if t in res[k]])
        if why is not None:
            left[why] = left.get(why, 0) + 1
    totals.append("left out of the selection: " + ", ".join(f"{n} {why}" for why, n in sorted(left.items())))
    print(totals[-1])
    rows = []
    for t in sel:
        outcomes = [res[k].get(t, ("absent", ""))[0] for k in kinds]
        if len(set(outcomes)) > 1 or any(o not in ("passed",) for o in outcomes):
            why = reasons.get(t) or next((res[k][t][1] for k in kinds if t in res[k] and res[k][t][0] != "passed"), "")
            rows.append((t, outcomes, why))
    for t, outcomes, why in rows:
        print(f"  {t}: " + ", ".join(f"{k}={o}" for k, o in zip(kinds, outcomes, strict=True)) + (f"  ({why})" if why else ""))
    if markdown:
        with open(markdown, "w") as f:
            f.write("".join(f"- {line}\n" for line in totals) + "\n")
            f.write("| test | " + " | ".join(kinds) + " | reason |\n|---|" + "---|" * len(kinds) + "---|\n")
            for t, outcomes, why in rows:
                f.write(f"| `{t.removeprefix('tests/integration/')}` | " + " | ".join(outcomes)
                        + f" | {why.replace('|', '/')} |\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", choices=["berthd", "dockerd", "both"], default="both")
    ap.add_argument("--source", help="a docker-py checkout or bare git directory (default: clone from GitHub)")
    ap.add_argument("--ref", default="7.1.0", help="the docker-py tag whose suite runs (default 7.1.0)")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    ap.add_argument("--reasons", help="a JSON file: nodeid → why it still fails on berthd")
    ap.add_argument("--report-only", action="store_true", help="compare the results of the last runs, run nothing")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(BUILD, "results"))
    ap.add_argument("-k", dest="keyword")
    args, extra = ap.parse_known_args()
    if args.keyword:
        extra += ["-k", args.keyword]
    src, py = prepare(args.source, args.ref) if not args.report_only else ("", "")
    os.makedirs(args.out, exist_ok=True)
    if args.inner:
        return inner(args.inner, src, py, os.path.join(args.out, f"{args.inner}.xml"), extra)
    if os.geteuid() != 0:
        print("run as root: the daemons need it", file=sys.stderr)
        return 2
    kinds = [] if args.report_only else ["berthd", "dockerd"] if args.daemon == "both" else [args.daemon]
    if "dockerd" in kinds and DOCKERD is None:
        print("dockerd is not installed (Debian package docker.io): measuring berthd only", file=sys.stderr)
        kinds.remove("dockerd")
    res = {}
    for kind in kinds:
        argv = ["unshare", "--net", "--fork", "--", sys.executable, os.path.abspath(__file__), "--inner", kind,
                "--ref", args.ref, "--out", args.out, *(["--source", args.source] if args.source else []), *extra]
        started = time.monotonic()
        subprocess.run(argv)
        print(f"{kind}: suite ran in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for kind in ("berthd", "dockerd"):
        r = results(os.path.join(args.out, f"{kind}.xml"))
        if r:
            res[kind] = r
    reasons = json.load(open(args.reasons)) if args.reasons else {}
    report(res, args.markdown, reasons)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
