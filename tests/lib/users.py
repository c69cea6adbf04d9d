"""Throwaway users and groups for permission tests, removed through the cleanup registry."""

from __future__ import annotations

import grp
import os
import secrets
import subprocess

from tests.lib.cleanup import Cleanup, run_locked
from tests.lib.daemon import public_tmpdir


def make_group(cleanup: Cleanup) -> str:
    name = "bt" + secrets.token_hex(4)
    run_locked(["groupadd", name])
    cleanup.group(name)
    return name


def make_user(cleanup: Cleanup, groups: tuple[str, ...] = ()) -> tuple[str, str]:
    """(name, home); the home is a private temporary directory owned by the user."""
    name = "bt" + secrets.token_hex(4)
    home = public_tmpdir("berth-home-")
    argv = ["useradd", "-M", "-d", home, "-s", "/bin/sh"]
    if groups:
        argv += ["-G", ",".join(groups)]
    run_locked([*argv, name])
    cleanup.user(name)
    cleanup.path(home)
    run_locked(["usermod", "-p", "*", name])  # no password, but not locked (sshd refuses locked accounts)
    uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout)
    os.chown(home, uid, grp.getgrnam(name).gr_gid if _has_group(name) else 0)
    os.chmod(home, 0o700)
    return name, home


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def as_user(name: str, home: str, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``name`` with its groups (runuser calls initgroups), HOME set to ``home``."""
    base = {"HOME": home, "PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_CONFIG": os.path.join(home, ".docker")}
    return subprocess.run(["runuser", "-u", name, "--", "env", *[f"{k}={v}" for k, v in {**base, **(env or {})}.items()],
                           *argv], capture_output=True, text=True, timeout=timeout)
