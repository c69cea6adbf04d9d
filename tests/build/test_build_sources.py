"""Where a build's inputs come from: FROM a private registry (the docker CLI's X-Registry-Config
after `docker login`), the Dockerfile from stdin (-f -) and from outside the context."""

from __future__ import annotations

import os

from tests.lib.clis import base_env, docker
from tests.lib.daemon import Berthd
from tests.lib.registry import Registry
from tests.registry.conftest import locked  # noqa: F401 - the fixture


def test_from_pulls_a_private_image_with_the_clients_credentials(berthd: Berthd, locked: Registry,  # noqa: F811
                                                                 tmp_path) -> None:
    env = base_env(DOCKER_HOST=berthd.url, DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(tmp_path / "cfg"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {locked.host}/app:1\nRUN cat /etc/version > /copied\n")
    r = docker("build", "-t", "private:1", str(ctx), env=env, timeout=120)
    assert r.returncode != 0 and "no basic auth credentials" in r.stdout + r.stderr, r.stdout + r.stderr
    r = docker("login", "-u", "alice", "--password-stdin", locked.host, input="s3cret\n", env=env)
    assert r.returncode == 0, r.stderr
    r = docker("build", "-t", "private:1", str(ctx), env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Pulling from app" in r.stdout or "Pull complete" in r.stdout or "Downloaded" in r.stdout, r.stdout
    assert docker("run", "--rm", "private:1", "cat", "/copied", env=env).stdout == "v1"


def test_the_dockerfile_from_stdin_and_from_outside_the_context(bb: Berthd, tmp_path) -> None:
    env = base_env(DOCKER_HOST=bb.url, DOCKER_BUILDKIT="0")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("in context\n")
    r = docker("build", "-t", "stdin:1", "-f", "-", str(ctx), input="FROM bb\nCOPY f /f\n", env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Dockerfile.app").write_text("FROM bb\nCOPY . /ctx/\n")
    r = docker("build", "-t", "outside:1", "-f", str(elsewhere / "Dockerfile.app"), str(ctx), env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    listing = docker("run", "--rm", "outside:1", "ls", "-a", "/ctx", env=env).stdout.split()
    assert sorted(listing) == [".", "..", "f"], listing  # the CLI's copy of the Dockerfile is not in the context
    assert docker("run", "--rm", "stdin:1", "cat", "/f", env=env).stdout == "in context\n"
    assert not os.path.exists(os.path.join(bb.root, "data", "build", "context"))
