"""docker build (the classic builder's protocol) on a real berthd, driven by the docker CLI
(DOCKER_BUILDKIT=0) and docker-py: the steps' output and history in dockerd 20.10's words, the cache,
multi-stage builds, failures, and build contexts that try to reach outside themselves."""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.parse

import docker
import pytest

from tests.lib import rawhttp
from tests.lib.clis import base_env
from tests.lib.clis import docker as docker_cli
from tests.lib.daemon import Berthd

DOCKERFILE = """\
FROM bb
ARG X=1
ENV A=1 B="x y"
LABEL k=v
WORKDIR /app
COPY a.txt .
COPY dir /d/
RUN echo out; echo err >&2; echo made > /made
RUN ["sh", "-c", "echo exec $X"]
EXPOSE 80
USER 1:1
VOLUME /data
CMD ["sh"]
"""


def _context(tmp_path: os.PathLike[str], files: dict[str, str]) -> str:
    for name, text in files.items():
        path = os.path.join(tmp_path, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return str(tmp_path)


def _build(d: Berthd, ctx: str, *args: str) -> tuple[int, str]:
    r = docker_cli("build", *args, ctx, env=base_env(DOCKER_HOST=d.url, DOCKER_BUILDKIT="0"), timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_docker_cli_builds_caches_and_records_history_as_dockerd(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": DOCKERFILE, "a.txt": "hello\n", "dir/f": "x\n",
                              ".dockerignore": "*.log\n", "skip.log": "no\n"})
    code, out = _build(bb, ctx, "-t", "t:1")
    assert code == 0, out
    for line in ("Step 1/13 : FROM bb", "Step 8/13 : RUN echo out; echo err >&2; echo made > /made",
                 " ---> Running in ", "out\n", "err\n", "Removing intermediate container ", "Successfully built ",
                 "Successfully tagged t:1"):
        assert line in out, out
    docker_cli("-H", bb.url, "image", "prune", "-f")  # the steps' images are not dangling: kept, as dockerd
    code, again = _build(bb, ctx, "-t", "t:1")
    assert code == 0 and again.count(" ---> Using cache") == 12, again
    assert out.split("Successfully built ")[1][:12] == again.split("Successfully built ")[1][:12]
    r = docker_cli("-H", bb.url, "run", "--rm", "--network", "none", "t:1", "sh", "-c",
                   "pwd; id -u; cat /app/a.txt /d/f /made; echo $A-$B; ls /app")
    assert r.stdout.split("\n")[:6] == ["/app", "1", "hello", "x", "made", "1-x y"], r.stdout + r.stderr
    inspect = json.loads(docker_cli("-H", bb.url, "image", "inspect", "t:1").stdout)[0]
    cfg = inspect["Config"]
    assert cfg["User"] == "1:1" and cfg["WorkingDir"] == "/app" and cfg["Cmd"] == ["sh"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["Volumes"] == {"/data": {}} and cfg["Labels"] == {"k": "v"}
    history = [h["CreatedBy"] for h in json.loads(rawhttp.request(bb.sock, "GET", "/images/t:1/history").body)]
    assert history[0] == '/bin/sh -c #(nop)  CMD ["sh"]'  # dockerd's two spaces after #(nop)
    assert "/bin/sh -c #(nop)  VOLUME [/data]" in history and "/bin/sh -c #(nop) WORKDIR /app" in history
    assert "|1 X=1 /bin/sh -c echo out; echo err >&2; echo made > /made" in history
    assert "|1 X=1 sh -c echo exec $X" in history
    assert any(h.startswith("/bin/sh -c #(nop) COPY file:") and h.endswith(" in . ") for h in history)
    # a changed source file invalidates its COPY and what follows, not what comes before
    with open(os.path.join(ctx, "dir", "f"), "w") as f:
        f.write("changed\n")
    code, third = _build(bb, ctx, "-t", "t:2")
    assert code == 0 and third.count(" ---> Using cache") == 5, third
    assert "skip.log" not in docker_cli("-H", bb.url, "run", "--rm", "t:2", "ls", "/app").stdout


def test_a_failed_run_ends_in_dockerds_words_and_tags_nothing(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": "FROM bb\nRUN echo before\nRUN exit 3\nRUN echo never\n"})
    code, out = _build(bb, ctx, "-t", "broken:1")
    assert code != 0
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in out, out
    assert "never" not in out
    assert docker_cli("-H", bb.url, "images", "-q", "broken").stdout == ""


def test_multi_stage_with_target_and_copy_from(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": (
        "FROM bb AS builder\nRUN mkdir /out && echo built > /out/artifact\n"
        "FROM bb\nCOPY --from=builder /out/artifact /srv/\nCOPY --chown=7:8 --chmod=640 f.txt /srv/f.txt\n"
        "FROM bb AS never\nRUN exit 1\n"), "f.txt": "f\n"})
    code, out = _build(bb, ctx, "-t", "ms:1", "--target", "builder", "--label", "x=$y")
    assert json.loads(docker_cli("-H", bb.url, "image", "inspect", "ms:1").stdout)[0]["Config"]["Labels"] == \
        {"x": "$y"}  # the request's labels: a LABEL step of their own, never substituted
    assert code == 0 and "Step 3/3 : LABEL x=$y" in out, out
    code, out = _build(bb, ctx, "-t", "ms:2")
    assert code != 0  # the last stage fails: the classic builder builds every stage
    assert docker_cli("-H", bb.url, "ps", "-q").stdout == ""  # nothing of the stages run at once keeps running
    dockerfile = open(os.path.join(ctx, "Dockerfile")).read().replace("FROM bb AS never\nRUN exit 1\n", "")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(dockerfile)
    code, out = _build(bb, ctx, "-t", "ms:3")
    assert code == 0, out
    r = docker_cli("-H", bb.url, "run", "--rm", "ms:3", "sh", "-c",
                   "cat /srv/artifact; stat -c '%u:%g %a' /srv/f.txt")
    assert r.stdout == "built\n7:8 640\n", r.stdout + r.stderr


def test_docker_py_builds_with_buildargs_and_streams_stderr_wrapped(bb: Berthd) -> None:
    client = docker.DockerClient(base_url=bb.url, version="1.41")
    dockerfile = b"FROM bb\nARG WHO\nRUN echo hi $WHO via $http_proxy; echo oops >&2\nCMD [\"echo\", \"done\"]\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tf.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    image, logs = client.images.build(fileobj=buf, custom_context=True, encoding="gzip", tag="py:1",
                                      buildargs={"WHO": "there", "http_proxy": "http://127.0.0.1:9"})
    streams = "".join(m.get("stream", "") for m in logs)
    assert "hi there via http://127.0.0.1:9" in streams and "\x1b[91moops\n\x1b[0m" in streams, streams
    history = [h["CreatedBy"] for h in client.api.history("py:1")]
    assert not any("http_proxy=" in h for h in history), history  # a predefined proxy ARG is not recorded
    assert "py:1" in image.tags
    assert client.containers.run("py:1", remove=True, network_mode="none") == b"done\n"
    with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 2"):
        client.images.build(fileobj=io.BytesIO(b"FROM bb\nRUN exit 2\n"), tag="py:2")


def test_contexts_that_reach_outside_are_refused_and_write_nothing_outside(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # a symlink to the host's /etc/passwd: resolved inside the context, where there is no such file
    ctx = _context(tmp_path / "a", {"Dockerfile": "FROM bb\nCOPY link /got\n"})
    os.symlink("/etc/passwd", os.path.join(ctx, "link"))
    code, out = _build(bb, ctx, "-t", "evil:1")
    assert code != 0 and "file not found in build context" in out, out
    ctx = _context(tmp_path / "b", {"Dockerfile": "FROM bb\nCOPY ../../../../etc/passwd /got\n"})
    code, out = _build(bb, ctx)
    assert code != 0 and "file not found in build context" in out, out
    # a tar whose member climbs out of the context, sent as it is
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM bb\n"), ("../../escaped-by-berth-test", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    r = rawhttp.request(bb.sock, "POST", "/build?t=evil:2", body=buf.getvalue(),
                        headers={"Content-Type": "application/x-tar"})
    assert r.status == 400 and b"'..' component" in r.body, r.body
    assert not any(n.startswith("escaped-by-berth-test") for n in os.listdir("/")), "written outside"
    big = b"FROM bb\n" + b"# padding\n" * (500 << 10)  # about 5 MiB of Dockerfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(big)
        tf.addfile(info, io.BytesIO(big))
    r = rawhttp.request(bb.sock, "POST", "/build", body=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    assert r.status == 400 and b"larger than" in r.body, r.body
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(b"FROM bb\nENV Q=1\n")
        tf.addfile(info, io.BytesIO(b"FROM bb\nENV Q=1\n"))
    r = rawhttp.request(bb.sock, "POST", "/build?q=1&t=quiet:1", body=buf.getvalue())
    lines = [json.loads(x) for x in r.body.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0]["stream"].startswith("sha256:"), lines  # q=1: the ID alone, as dockerd
    assert docker_cli("-H", bb.url, "images", "-q", "quiet:1").stdout.strip() == lines[0]["stream"][7:19]
    r = rawhttp.request(bb.sock, "POST", "/build?version=2", body=b"")
    assert r.status == 501 and b"classic builder" in r.body
    assert os.listdir(os.path.join(bb.root, "data", "build")) == ["files"]  # every build's directory went


def test_the_build_cache_outlives_image_prune_until_builder_prune(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    def dockerfile(version: str) -> str:
        return f"FROM bb\nRUN echo one > /one\nRUN head -c 3000 /dev/zero > /z\nLABEL v={version}\n"

    ctx = _context(tmp_path, {"Dockerfile": dockerfile("1")})
    assert _build(bb, ctx, "-t", "c:1")[0] == 0
    assert "<none>" not in docker_cli("-H", bb.url, "images").stdout  # the steps' images are not listed
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(dockerfile("2"))
    assert _build(bb, ctx, "-t", "c:1")[0] == 0  # v=1's image loses its tag: dangling, but build cache
    assert docker_cli("-H", bb.url, "create", "bb", "true").returncode == 0  # bb itself stays: in use
    r = docker_cli("-H", bb.url, "image", "prune", "-a", "-f")  # dockerd's would take the dangling image
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(dockerfile("1"))
    code, out = _build(bb, ctx, "-t", "c:1")
    assert code == 0 and out.count(" ---> Using cache") == 3, out
    df = json.loads(rawhttp.request(bb.sock, "GET", "/system/df").body)
    assert len(df["BuildCache"]) >= 2 and any(c["Size"] >= 3000 for c in df["BuildCache"]), df["BuildCache"]
    assert all(c["Description"] and c["UsageCount"] >= 1 for c in df["BuildCache"])
    r = docker_cli("-H", bb.url, "builder", "prune", "-f")
    assert r.returncode == 0 and "Total" in r.stdout, r.stdout + r.stderr
    assert json.loads(rawhttp.request(bb.sock, "GET", "/system/df").body)["BuildCache"] == []
    assert os.listdir(os.path.join(bb.root, "data", "build", "files")) == []  # the context files' cache too
    assert docker_cli("-H", bb.url, "run", "--rm", "c:1", "cat", "/one").stdout == "one\n"  # c:1 is whole
    code, out = _build(bb, ctx, "-t", "c:3")
    assert code == 0 and " ---> Using cache" not in out, out


def test_onbuild_triggers_run_in_the_child_build(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = _context(tmp_path / "base", {"Dockerfile": "FROM bb\nONBUILD COPY t.txt /t.txt\nONBUILD RUN echo trig > /trig\n"})
    assert _build(bb, base, "-t", "base:1")[0] == 0
    child = _context(tmp_path / "child", {"Dockerfile": "FROM base:1\nRUN cat /t.txt /trig\n", "t.txt": "from child\n"})
    code, out = _build(bb, child, "-t", "child:1")
    assert code == 0 and "# Executing 2 build triggers" in out and "from child\ntrig\n" in out, out
    cfg = json.loads(docker_cli("-H", bb.url, "image", "inspect", "child:1").stdout)[0]["Config"]
    assert not cfg.get("OnBuild")  # triggers run once, in the first child
    code, out = _build(bb, child, "--platform", "linux/arm64")
    assert code != 0


def _serve(root: str, cleanup) -> str:  # type: ignore[no-untyped-def]
    """A static HTTP server on loopback for ``root`` (a dumb-protocol git repository works from it)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def guess_type(self, path):  # type: ignore[no-untyped-def]
            return "text/plain" if path.endswith("Dockerfile.txt") else super().guess_type(path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cleanup.add("the test HTTP server", server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_remote_contexts_and_add_from_a_url(bb: Berthd, tmp_path, cleanup) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    served = tmp_path / "served"
    served.mkdir()
    (served / "payload.txt").write_text("downloaded\n")
    ctx = _context(tmp_path / "ctx", {"Dockerfile": "FROM bb\nCOPY hello /hello\n", "hello": "from a tarball\n"})
    with tarfile.open(served / "ctx.tar.gz", "w:gz") as tf:
        for name in ("Dockerfile", "hello"):
            tf.add(os.path.join(ctx, name), name)
    (served / "Dockerfile.txt").write_text("FROM bb\nRUN echo from a plain Dockerfile > /plain\n")
    repo = tmp_path / "repo"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    (repo / "sub").mkdir()
    (repo / "sub" / "Dockerfile").write_text("FROM bb\nCOPY f /f\n")
    (repo / "sub" / "f").write_text("from git\n")
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "x"], check=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(repo), str(served / "repo.git")], check=True)
    subprocess.run(["git", "-C", str(served / "repo.git"), "update-server-info"], check=True)
    base = _serve(str(served), cleanup)
    for remote, tag, check in ((f"{base}/ctx.tar.gz", "r:tar", ("cat", "/hello", "from a tarball\n")),
                               (f"{base}/Dockerfile.txt", "r:plain", ("cat", "/plain", "from a plain Dockerfile\n")),
                               (f"{base}/repo.git#main:sub", "r:git", ("cat", "/f", "from git\n"))):
        r = rawhttp.request(bb.sock, "POST", f"/build?t={tag}&remote={urllib.parse.quote(remote, safe='')}")
        assert r.status == 200 and b"Successfully tagged" in r.body, r.body
        assert docker_cli("-H", bb.url, "run", "--rm", tag, *check[:2]).stdout == check[2]
    r = rawhttp.request(bb.sock, "POST", f"/build?remote={base}/repo.git%23--upload-pack=x")
    assert b"invalid git reference" in r.body, r.body  # an option smuggled in as a ref is refused
    ctx = _context(tmp_path / "add", {"Dockerfile": f"FROM bb\nADD {base}/payload.txt /srv/\n"})
    code, out = _build(bb, ctx, "-t", "r:add")
    assert code == 0, out
    r = docker_cli("-H", bb.url, "run", "--rm", "r:add", "sh", "-c", "cat /srv/payload.txt; stat -c %a /srv/payload.txt")
    assert r.stdout == "downloaded\n600\n", r.stdout + r.stderr


def test_independent_stages_run_at_once_and_their_output_stays_in_order(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.lib.daemon import free_port

    # stage a listens on a loopback port of the host's network (--network host) until stage b sends to
    # it: only if the two stages run at once does a receive anything (one after the other, a would
    # give up after 30 s and the build fail)
    port = free_port()
    ctx = _context(tmp_path, {"Dockerfile": (
        f"FROM bb AS a\nRUN timeout 30 nc -l -p {port} > /got && echo a got $(cat /got)\n"
        f"FROM bb AS b\nRUN for i in $(seq 100); do echo hello | nc 127.0.0.1 {port} && break; sleep 0.1; done\n"
        "FROM bb\nCOPY --from=a /got /a\nCOPY --from=b /etc/passwd /b\n")})
    code, out = _build(bb, ctx, "-t", "par:1", "--network", "host")
    assert code == 0, out
    assert "a got hello" in out, out  # (once missing in a full run while the build succeeded: the output tells why)
    assert out.index("a got hello") < out.index("Step 3/7 : FROM bb AS b")  # stage a's output first
    assert [line.split(" :")[0] for line in out.splitlines() if line.startswith("Step ")] == \
        [f"Step {n}/7" for n in range(1, 8)]
    assert docker_cli("-H", bb.url, "run", "--rm", "par:1", "cat", "/a").stdout == "hello\n"


def test_a_context_file_that_changes_only_its_mode_is_copied_with_the_new_mode(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": "FROM bb\nCOPY f /f\n", "f": "same bytes\n"})
    os.chmod(os.path.join(ctx, "f"), 0o644)
    assert _build(bb, ctx, "-t", "mode:1")[0] == 0
    os.chmod(os.path.join(ctx, "f"), 0o600)  # small files come from a cache keyed by content, mode and time
    code, out = _build(bb, ctx, "-t", "mode:2")
    assert code == 0 and "Using cache" not in out.split("COPY f /f")[1], out
    for tag, mode in (("mode:1", "644"), ("mode:2", "600")):
        r = docker_cli("-H", bb.url, "run", "--rm", tag, "sh", "-c", "stat -c %a /f")
        assert r.stdout == mode + "\n", r.stdout + r.stderr


def test_the_docker_clis_default_mode_builds_too(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # without DOCKER_BUILDKIT the CLI asks /_ping's Builder-Version; with no buildx it uses this protocol
    ctx = _context(tmp_path, {"Dockerfile": "FROM bb\nRUN echo default > /mode\n"})
    env = {k: v for k, v in base_env(DOCKER_HOST=bb.url).items() if k != "DOCKER_BUILDKIT"}
    r = docker_cli("build", "-t", "default:1", ctx, env=env, timeout=120)
    assert r.returncode == 0 and "Successfully tagged default:1" in r.stdout, r.stdout + r.stderr
    r = docker_cli("build", "-q", "-t", "default:2", ctx, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("sha256:"), r.stdout + r.stderr  # -q: the ID alone


def test_build_options_reach_the_steps(bb: Berthd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(tmp_path, {"Dockerfile": (
        "# escape=`\n"
        "ARG BASE=bb\n"
        "FROM ${BASE}\n"
        "MAINTAINER someone@example.org\n"
        "RUN grep -q 'berth-test-host' /etc/hosts && (cat /sys/fs/cgroup/memory/memory.limit_in_bytes `\n"
        "    2>/dev/null || cat /sys/fs/cgroup/memory.max) `\n"
        "    && df -k /dev/shm | tail -1\n"
        "RUN exit 7\n")})
    code, out = _build(bb, ctx, "-t", "opts:1", "--add-host", "berth-test-host:10.0.0.1", "--memory", "64m",
                       "--shm-size", "8m", "--force-rm")
    assert code != 0 and "returned a non-zero code: 7" in out, out
    assert str(64 << 20) in out, out  # the memory limit reached the RUN step
    assert " 8192 " in out, out  # and the /dev/shm size
    assert docker_cli("-H", bb.url, "ps", "-aq").stdout == ""  # --force-rm: the failed step's container went
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("ARG BASE=bb\nFROM ${BASE}\nMAINTAINER someone@example.org\n")
    code, out = _build(bb, ctx, "-t", "opts:2")
    assert code == 0, out
    assert json.loads(docker_cli("-H", bb.url, "image", "inspect", "opts:2").stdout)[0]["Author"] == \
        "someone@example.org"
