"""Runners for the real docker CLI and for berth, with an environment of the test's choosing."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.lib.daemon import BERTH

DOCKER = shutil.which("docker")
_CLEAN = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT", "DOCKER_API_VERSION",
          "DOCKER_TLS")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env.update(extra)
    return env


def docker(*args: str, env: dict[str, str] | None = None, timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed on this machine")
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else base_env(), **kw)  # type: ignore[call-overload]


def berth(*args: str, env: dict[str, str] | None = None, timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("text", True)
    return subprocess.run([BERTH, *args], capture_output=True, timeout=timeout,
                          env=env if env is not None else base_env(), **kw)  # type: ignore[call-overload]


def docker_at(d: Any, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The docker CLI against the daemon ``d`` (a Berthd or a Dockerd: anything with a ``url``)."""
    return docker("-H", d.url, *args, **kw)
