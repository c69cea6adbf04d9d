"""A registry of what a test created, undone in reverse order even when the test fails: processes,
paths, users and groups, and the kernel's objects (network namespaces, links, nft tables, mounts).
Every test that makes one registers it here (the ``cleanup`` fixture, or a fixture built on it).

Every undo ignores "already gone"; a failing undo is reported after the others have run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable


class Cleanup:
    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self._undo.append((what, fn))

    def process(self, proc: subprocess.Popen[bytes], what: str = "") -> subprocess.Popen[bytes]:
        def stop() -> None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        self.add(what or f"process {proc.pid}", stop)
        return proc

    def path(self, path: str) -> str:
        def rm() -> None:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

        self.add(f"path {path}", rm)
        return path

    def netns(self, name: str) -> str:
        """A named network namespace (``ip netns add``); its links go with it."""
        self.add(f"netns {name}", lambda: _quiet(["ip", "netns", "del", name]))
        return name

    def link(self, name: str, netns: str | None = None) -> str:
        argv = ["ip", *(["-n", netns] if netns else []), "link", "del", name]
        self.add(f"link {name}", lambda: _quiet(argv))
        return name

    def nft_table(self, family: str, name: str) -> None:
        self.add(f"nft table {family} {name}", lambda: _quiet(["nft", "delete", "table", family, name]))

    def mount(self, path: str) -> str:
        """A mount the test made (lazily unmounted: a process may still use it)."""
        self.add(f"mount {path}", lambda: _quiet(["umount", "-l", path]))
        return path

    def user(self, name: str) -> None:
        self.add(f"user {name}", lambda: _retry(["userdel", name], ok_codes=(0, 6)))

    def group(self, name: str) -> None:
        self.add(f"group {name}", lambda: _retry(["groupdel", name], ok_codes=(0, 6)))

    def run(self) -> None:
        errors = []
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest, report at the end
                errors.append(f"{what}: {exc}")
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))


def _quiet(argv: list[str]) -> None:
    """Undo that may find the object gone already (not an error)."""
    subprocess.run(argv, capture_output=True, timeout=30)


def _retry(argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> None:
    """useradd/userdel take a lock on /etc/passwd; parallel test workers may have to wait for it."""
    for _ in range(50):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode in ok_codes:
            return
        if "lock" not in r.stderr:
            raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
        time.sleep(0.1)
    raise RuntimeError(f"{' '.join(argv)}: /etc/passwd stayed locked")


run_locked = _retry
